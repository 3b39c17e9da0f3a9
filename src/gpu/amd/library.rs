//! The AMD SMI C library (`libamd_smi.so`), opened with dlopen (libloading) and called
//! through the handful of entry points canhazgpu needs.
//!
//! Names, enums and struct layouts follow ROCm's `amd_smi/amdsmi.h`. Structs whose
//! layout changed between ROCm releases are never declared here: the library writes
//! them into a zeroed buffer larger than any release's struct, and only fields whose
//! place never moved are read (strings at offset 0; the process records, see
//! `records`).

use std::ffi::{CStr, c_char, c_uint, c_void};
use std::path::Path;

use libloading::Library;

/// `amdsmi_status_t`.
pub(super) type Status = u32;
/// `amdsmi_socket_handle`, `amdsmi_processor_handle`.
pub(super) type Handle = *mut c_void;

pub(super) const SUCCESS: Status = 0;
pub(super) const NO_PERM: Status = 10;
/// The array given was too small; the count now says how many there are.
pub(super) const OUT_OF_RESOURCES: Status = 15;
pub(super) const DRIVER_NOT_LOADED: Status = 34;

/// `AMDSMI_INIT_AMD_GPUS`.
const INIT_AMD_GPUS: u64 = 1 << 1;
/// `AMDSMI_PROCESSOR_TYPE_AMD_GPU`.
pub(super) const PROCESSOR_TYPE_AMD_GPU: u32 = 1;
/// `AMDSMI_MEM_TYPE_VRAM`.
const MEM_TYPE_VRAM: u32 = 0;
/// Bigger than any release's `amdsmi_asic_info_t` or `amdsmi_driver_info_t`.
const STRUCT_ROOM: usize = 16 * 1024;
/// The longest string field read (`AMDSMI_MAX_STRING_LENGTH` since ROCm 6.4).
const MAX_STRING: usize = 256;

type InitFn = unsafe extern "C" fn(u64) -> Status;
type ShutDownFn = unsafe extern "C" fn() -> Status;
type SocketHandlesFn = unsafe extern "C" fn(*mut u32, *mut Handle) -> Status;
type ProcessorHandlesFn = unsafe extern "C" fn(Handle, *mut u32, *mut Handle) -> Status;
type ProcessorTypeFn = unsafe extern "C" fn(Handle, *mut u32) -> Status;
type StructFn = unsafe extern "C" fn(Handle, *mut u8) -> Status;
type UuidFn = unsafe extern "C" fn(Handle, *mut c_uint, *mut c_char) -> Status;
type MemoryFn = unsafe extern "C" fn(Handle, u32, *mut u64) -> Status;
pub(super) type ProcessListFn = unsafe extern "C" fn(Handle, *mut u32, *mut u8) -> Status;
pub(super) type ProcessInfoFn = unsafe extern "C" fn(Handle, u32, *mut u8) -> Status;
type StatusStringFn = unsafe extern "C" fn(Status, *mut *const c_char) -> Status;

/// The library with its entry points looked up. Optional ones are `None` where a
/// release lacks them.
pub(super) struct AmdSmiLibrary {
    init: InitFn,
    shut_down: ShutDownFn,
    socket_handles: SocketHandlesFn,
    processor_handles: ProcessorHandlesFn,
    memory_total: MemoryFn,
    memory_usage: MemoryFn,
    processor_type: Option<ProcessorTypeFn>,
    asic_info: Option<StructFn>,
    driver_info: Option<StructFn>,
    uuid: Option<UuidFn>,
    process_list: Option<ProcessListFn>,
    /// Only in releases before ROCm 6.1, whose process list holds bare pids.
    process_info: Option<ProcessInfoFn>,
    status_string: Option<StatusStringFn>,
    // Last: the function pointers above point into it.
    _library: Library,
}

impl AmdSmiLibrary {
    /// Opens `file` (a path, or a bare name for the dynamic loader to find). `Err` has
    /// the loader's message, or the name of a required entry point that is missing.
    pub(super) fn open(file: &Path) -> Result<AmdSmiLibrary, OpenError> {
        // SAFETY: loading runs the library's initialisers; AMD SMI's only set up its
        // own state. canhazgpu opens nothing but the file it was pointed at or the
        // name every ROCm program uses.
        let library = unsafe { Library::new(file) }.map_err(|e| OpenError::Load(e.to_string()))?;
        macro_rules! required {
            ($name:literal) => {
                // SAFETY: the type is the function's signature in amdsmi.h.
                *unsafe { library.get(concat!($name, "\0").as_bytes()) }
                    .map_err(|_| OpenError::Symbol($name))?
            };
        }
        macro_rules! optional {
            ($name:literal) => {
                // SAFETY: as above.
                unsafe { library.get(concat!($name, "\0").as_bytes()) }
                    .ok()
                    .map(|symbol| *symbol)
            };
        }
        Ok(AmdSmiLibrary {
            init: required!("amdsmi_init"),
            shut_down: required!("amdsmi_shut_down"),
            socket_handles: required!("amdsmi_get_socket_handles"),
            processor_handles: required!("amdsmi_get_processor_handles"),
            memory_total: required!("amdsmi_get_gpu_memory_total"),
            memory_usage: required!("amdsmi_get_gpu_memory_usage"),
            processor_type: optional!("amdsmi_get_processor_type"),
            asic_info: optional!("amdsmi_get_gpu_asic_info"),
            driver_info: optional!("amdsmi_get_gpu_driver_info"),
            uuid: optional!("amdsmi_get_gpu_device_uuid"),
            process_list: optional!("amdsmi_get_gpu_process_list"),
            process_info: optional!("amdsmi_get_gpu_process_info"),
            status_string: optional!("amdsmi_status_code_to_string"),
            _library: library,
        })
    }

    pub(super) fn init(&self) -> Status {
        // SAFETY: amdsmi_init(uint64_t init_flags).
        unsafe { (self.init)(INIT_AMD_GPUS) }
    }

    pub(super) fn shut_down(&self) {
        // SAFETY: amdsmi_shut_down(void), after a successful init.
        unsafe { (self.shut_down)() };
    }

    /// The library's words for `status`, if it has them.
    pub(super) fn describe(&self, status: Status) -> Option<String> {
        let to_string = self.status_string?;
        let mut text: *const c_char = std::ptr::null();
        // SAFETY: amdsmi_status_code_to_string(status, const char **); the library
        // points `text` at a static string.
        let code = unsafe { to_string(status, &mut text) };
        if code != SUCCESS || text.is_null() {
            return None;
        }
        // SAFETY: non-null, NUL-terminated, static.
        Some(
            unsafe { CStr::from_ptr(text) }
                .to_string_lossy()
                .into_owned(),
        )
    }

    /// Every processor handle, socket by socket, in the library's order (the order
    /// `amd-smi list` numbers GPUs in).
    pub(super) fn processors(&self) -> Result<Vec<Handle>, Status> {
        // SAFETY: amdsmi_get_socket_handles(uint32_t *count, amdsmi_socket_handle *);
        // with a NULL array it only writes the count.
        let sockets = unsafe { list(|count, handles| (self.socket_handles)(count, handles)) }?;
        let mut processors = Vec::new();
        for socket in sockets {
            // SAFETY: amdsmi_get_processor_handles(socket, uint32_t *count,
            // amdsmi_processor_handle *), the same contract.
            let handles =
                unsafe { list(|count, handles| (self.processor_handles)(socket, count, handles)) }?;
            processors.extend(handles);
        }
        Ok(processors)
    }

    /// Whether `handle` is an AMD GPU (all are, with the GPU-only init, where the
    /// library cannot tell).
    pub(super) fn is_gpu(&self, handle: Handle) -> bool {
        let Some(processor_type) = self.processor_type else {
            return true;
        };
        let mut kind = 0u32;
        // SAFETY: amdsmi_get_processor_type(handle, processor_type_t *), an int enum.
        let status = unsafe { processor_type(handle, &mut kind) };
        status != SUCCESS || kind == PROCESSOR_TYPE_AMD_GPU
    }

    /// `amdsmi_get_gpu_asic_info`'s `market_name`, its first field in every release.
    pub(super) fn market_name(&self, handle: Handle) -> Option<String> {
        self.leading_string(self.asic_info?, handle)
    }

    /// `amdsmi_get_gpu_driver_info`'s `driver_version`, its first field.
    pub(super) fn driver_version(&self, handle: Handle) -> Option<String> {
        self.leading_string(self.driver_info?, handle)
    }

    fn leading_string(&self, query: StructFn, handle: Handle) -> Option<String> {
        let mut room = vec![0u64; STRUCT_ROOM / 8];
        // SAFETY: the struct the library writes is smaller than the zeroed room.
        let status = unsafe { query(handle, room.as_mut_ptr().cast()) };
        if status != SUCCESS {
            return None;
        }
        let bytes: Vec<u8> = room.iter().flat_map(|word| word.to_ne_bytes()).collect();
        text(&bytes[..MAX_STRING])
    }

    pub(super) fn uuid(&self, handle: Handle) -> Option<String> {
        let query = self.uuid?;
        let mut room = [0 as c_char; 128];
        let mut length = (room.len() - 1) as c_uint;
        // SAFETY: amdsmi_get_gpu_device_uuid(handle, unsigned int *length, char *uuid)
        // with `length` bytes of room (it needs AMDSMI_GPU_UUID_SIZE, 38).
        let status = unsafe { query(handle, &mut length, room.as_mut_ptr()) };
        if status != SUCCESS {
            return None;
        }
        let bytes: Vec<u8> = room.iter().map(|&c| c as u8).collect();
        text(&bytes)
    }

    /// Total and used VRAM in bytes.
    pub(super) fn vram(&self, handle: Handle) -> Result<(u64, u64), Status> {
        let mut total = 0u64;
        let mut used = 0u64;
        // SAFETY: amdsmi_get_gpu_memory_{total,usage}(handle, amdsmi_memory_type_t,
        // uint64_t *).
        let status = unsafe { (self.memory_total)(handle, MEM_TYPE_VRAM, &mut total) };
        if status != SUCCESS {
            return Err(status);
        }
        // SAFETY: as above.
        let status = unsafe { (self.memory_usage)(handle, MEM_TYPE_VRAM, &mut used) };
        if status != SUCCESS {
            return Err(status);
        }
        Ok((total, used))
    }

    /// The process list, and how to read it; `None` where the release has none.
    pub(super) fn process_list_kind(&self) -> Option<ProcessList> {
        let list = self.process_list?;
        Some(match self.process_info {
            Some(info) => ProcessList::Pids { list, info },
            None => ProcessList::Records(list),
        })
    }
}

/// The two generations of `amdsmi_get_gpu_process_list`.
#[derive(Clone, Copy)]
pub(super) enum ProcessList {
    /// ROCm 6.1 and later: an array of `amdsmi_proc_info_t`.
    Records(ProcessListFn),
    /// Before: an array of pids, each then asked with `amdsmi_get_gpu_process_info`.
    Pids {
        list: ProcessListFn,
        info: ProcessInfoFn,
    },
}

impl ProcessList {
    /// Calls the list function into `room` bytes (8-byte aligned, zeroed) with room for
    /// `capacity` entries; the status and how many entries there are.
    ///
    /// # Safety
    /// `room` must hold `capacity` entries of the size the release writes.
    pub(super) unsafe fn fill(
        list: ProcessListFn,
        handle: Handle,
        capacity: u32,
        room: &mut [u64],
    ) -> (Status, u32) {
        let mut count = capacity;
        let buffer = if capacity == 0 {
            std::ptr::null_mut()
        } else {
            room.as_mut_ptr().cast()
        };
        // SAFETY: per the caller.
        let status = unsafe { list(handle, &mut count, buffer) };
        (status, count)
    }

    /// `amdsmi_get_gpu_process_info` for `pid` into a zeroed struct-sized room.
    pub(super) fn info(info: ProcessInfoFn, handle: Handle, pid: u32) -> Option<Vec<u8>> {
        let mut room = vec![0u64; STRUCT_ROOM / 8];
        // SAFETY: the struct is smaller than the room.
        let status = unsafe { info(handle, pid, room.as_mut_ptr().cast()) };
        (status == SUCCESS).then(|| room.iter().flat_map(|word| word.to_ne_bytes()).collect())
    }
}

/// Why the library could not be opened.
pub(super) enum OpenError {
    /// The loader's message.
    Load(String),
    /// A required entry point is missing.
    Symbol(&'static str),
}

/// The NUL-terminated text at the start of `bytes`, trimmed; `None` when empty.
fn text(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let text = String::from_utf8_lossy(&bytes[..end]).trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// Runs a count-then-fill query of handles: first with a NULL array for the count, then
/// into an array of that size.
///
/// # Safety
/// `query` must follow that contract.
unsafe fn list(
    mut query: impl FnMut(*mut u32, *mut Handle) -> Status,
) -> Result<Vec<Handle>, Status> {
    let mut count = 0u32;
    let status = query(&mut count, std::ptr::null_mut());
    if status != SUCCESS {
        return Err(status);
    }
    let mut handles: Vec<Handle> = vec![std::ptr::null_mut(); count as usize];
    if count == 0 {
        return Ok(handles);
    }
    let status = query(&mut count, handles.as_mut_ptr());
    if status != SUCCESS {
        return Err(status);
    }
    handles.truncate(count as usize);
    Ok(handles)
}
