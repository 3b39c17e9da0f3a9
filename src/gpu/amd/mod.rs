//! AMD's GPUs through AMD SMI (`libamd_smi.so`, the library behind `amd-smi`), loaded
//! at run time: the binary has no link-time dependency on ROCm and runs where it is
//! absent.
//!
//! Where the library is looked for: the path given (flag, environment, configuration),
//! else the dynamic loader's search path, else ROCm's own directory
//! (`$ROCM_PATH/lib`, `/opt/rocm/lib`), which ROCm does not always register with the
//! loader. A host without it pays only a look at the loader's cache and two `stat`s.

mod library;
mod records;

use std::path::{Path, PathBuf};

use library::{AmdSmiLibrary, DRIVER_NOT_LOADED, Handle, NO_PERM, OUT_OF_RESOURCES, OpenError};
use library::{ProcessList, SUCCESS, Status};

use super::owner::Owners;
use super::{GpuInfo, GpuProcess, Probe, loader, mib};

pub(super) const LIBRARY_NAME: &str = "libamd_smi.so";

/// Asks AMD SMI about every AMD GPU on this host (each partition of a partitioned GPU
/// is one, as `amd-smi list` shows them). `library_path` is the file, or a directory
/// holding `libamd_smi.so`; a path that does not exist gives [`Probe::NoLibrary`].
pub(super) fn probe(library_path: Option<&Path>) -> Probe {
    let (amd, name) = match open(library_path) {
        Ok(opened) => opened,
        Err(outcome) => return outcome,
    };
    let status = amd.init();
    if status != SUCCESS {
        return Probe::Unavailable(init_failed(&amd, status));
    }
    let outcome = read_all(&amd, &name);
    amd.shut_down();
    // dlclose of a C++ library that may have started helper threads is a known way to
    // crash at exit; a command ends soon, so the library stays mapped until then.
    std::mem::forget(amd);
    outcome
}

/// The library and the name messages give it, or the [`Probe`] to return instead.
fn open(library_path: Option<&Path>) -> Result<(AmdSmiLibrary, String), Probe> {
    if let Some(path) = library_path {
        let file = loader::explicit_file(path, LIBRARY_NAME);
        // An error here (e.g. an unreadable directory) is not proof of absence; let the
        // loader try and explain.
        if let Ok(false) = file.try_exists() {
            return Err(Probe::NoLibrary);
        }
        return open_file(&file);
    }
    if !loader::surely_not_installed(LIBRARY_NAME) {
        match AmdSmiLibrary::open(Path::new(LIBRARY_NAME)) {
            Ok(amd) => return Ok((amd, LIBRARY_NAME.to_string())),
            Err(OpenError::Load(text)) if loader::loader_found_nothing(&text, LIBRARY_NAME) => {}
            Err(err) => return Err(Probe::Unavailable(open_failed(LIBRARY_NAME, err))),
        }
    }
    match rocm_copy() {
        Some(file) => open_file(&file),
        None => Err(Probe::NoLibrary),
    }
}

fn open_file(file: &Path) -> Result<(AmdSmiLibrary, String), Probe> {
    let name = file.display().to_string();
    match AmdSmiLibrary::open(file) {
        Ok(amd) => Ok((amd, name)),
        Err(err) => Err(Probe::Unavailable(open_failed(&name, err))),
    }
}

/// ROCm's own copy, where ROCm did not register its directory with the loader.
fn rocm_copy() -> Option<PathBuf> {
    let rocm = std::env::var_os("ROCM_PATH").filter(|path| !path.is_empty());
    rocm.into_iter()
        .map(PathBuf::from)
        .chain([PathBuf::from("/opt/rocm")])
        .map(|root| root.join("lib").join(LIBRARY_NAME))
        .find(|file| file.exists())
}

fn open_failed(name: &str, err: OpenError) -> String {
    match err {
        OpenError::Load(text) => format!(
            "cannot load {name}: {text}; reinstall ROCm's amd-smi library (amd-smi-lib) or \
             point canhazgpu at a working copy"
        ),
        OpenError::Symbol(symbol) => format!(
            "{name} is not a usable AMD SMI library (it has no {symbol}); ROCm may be too \
             old (canhazgpu needs ROCm 6.0 or later) or the file is not AMD SMI"
        ),
    }
}

fn init_failed(amd: &AmdSmiLibrary, status: Status) -> String {
    match status {
        DRIVER_NOT_LOADED => "the amdgpu driver is not loaded (AMD SMI: driver not loaded); \
             load it (`sudo modprobe amdgpu`) or reinstall it, then check that `amd-smi \
             list` works"
            .to_string(),
        NO_PERM => "AMD SMI has no permission to read the GPUs; check that this user may \
             open /dev/kfd and /dev/dri/renderD* (members of the render and video groups \
             usually may)"
            .to_string(),
        _ => format!(
            "AMD SMI failed to initialise: {}; check that `amd-smi list` works",
            status_text(amd, status)
        ),
    }
}

fn status_text(amd: &AmdSmiLibrary, status: Status) -> String {
    match amd.describe(status) {
        Some(text) => format!("{text} (status {status})"),
        None => format!("status {status}"),
    }
}

fn read_all(amd: &AmdSmiLibrary, name: &str) -> Probe {
    let handles = match amd.processors() {
        Ok(handles) => handles,
        Err(status) => {
            return Probe::Unavailable(format!(
                "AMD SMI ({name}) could not list the GPUs: {}; check that `amd-smi list` works",
                status_text(amd, status)
            ));
        }
    };
    let gpus: Vec<Handle> = handles.into_iter().filter(|&h| amd.is_gpu(h)).collect();
    let version = gpus.first().and_then(|&h| amd.driver_version(h));
    let mut owners = Owners::default();
    let mut units = Vec::new();
    for (index, &handle) in gpus.iter().enumerate() {
        let index = index as u32;
        let (total, used) = match amd.vram(handle) {
            Ok(memory) => memory,
            Err(status) => {
                return Probe::Unavailable(format!(
                    "AMD SMI could not read the memory usage of GPU {index}: {}; check \
                     `amd-smi metric --mem-usage`",
                    status_text(amd, status)
                ));
            }
        };
        let processes = processes(amd, handle, total)
            .into_iter()
            .map(|(pid, bytes)| GpuProcess {
                pid,
                used_mib: mib(bytes),
                user: owners.of(pid),
            })
            .collect();
        units.push(GpuInfo {
            index,
            gpu_index: index,
            name: amd
                .market_name(handle)
                .unwrap_or_else(|| "AMD GPU".to_string()),
            uuid: amd.uuid(handle).unwrap_or_default(),
            memory_total_mib: mib(total),
            memory_used_mib: mib(used),
            processes,
            mig: None,
            note: None,
        });
    }
    Probe::Devices {
        version,
        gpus: units,
    }
}

/// `(pid, VRAM bytes)` of the processes on the GPU; empty where the library will not
/// list them or lists them in a way that does not read as valid (the memory figures
/// still show a busy GPU).
fn processes(amd: &AmdSmiLibrary, handle: Handle, total: u64) -> Vec<(u32, u64)> {
    match amd.process_list_kind() {
        Some(ProcessList::Records(list)) => process_records(list, handle, total),
        Some(ProcessList::Pids { list, info }) => process_pids(list, info, handle),
        None => Vec::new(),
    }
}

/// Processes may start between the count and the fill; a few tries catch up.
const TRIES: usize = 3;
/// Headroom for processes started between the count and the fill.
const SPARE: u32 = 8;

fn process_records(list: library::ProcessListFn, handle: Handle, total: u64) -> Vec<(u32, u64)> {
    // SAFETY: a capacity of 0 asks only for the count.
    let (status, mut count) = unsafe { ProcessList::fill(list, handle, 0, &mut []) };
    if status != SUCCESS {
        return Vec::new();
    }
    for _ in 0..TRIES {
        if count == 0 {
            return Vec::new();
        }
        let capacity = count.saturating_add(SPARE);
        let mut room = vec![0u64; capacity as usize * records::MAX_STRIDE / 8];
        // SAFETY: room for `capacity` records of the largest layout.
        let (status, found) = unsafe { ProcessList::fill(list, handle, capacity, &mut room) };
        match status {
            // With NO_PERM the records are there, without the names of others' processes.
            SUCCESS | NO_PERM => {
                let bytes: Vec<u8> = room.iter().flat_map(|word| word.to_ne_bytes()).collect();
                let written = found.min(capacity) as usize;
                return records::parse(&bytes, written, total).unwrap_or_default();
            }
            OUT_OF_RESOURCES => count = found,
            _ => return Vec::new(),
        }
    }
    Vec::new()
}

/// The pids' records hold a 32-byte name, then the pid and `mem`, the process's memory
/// in bytes, in every release that had them.
fn process_pids(
    list: library::ProcessListFn,
    info: library::ProcessInfoFn,
    handle: Handle,
) -> Vec<(u32, u64)> {
    const PID: usize = 32;
    const MEM: usize = 40;
    let capacity = 1024u32;
    let mut room = vec![0u64; capacity as usize / 2];
    // SAFETY: room for `capacity` uint32_t pids.
    let (status, found) = unsafe { ProcessList::fill(list, handle, capacity, &mut room) };
    if status != SUCCESS {
        return Vec::new();
    }
    let bytes: Vec<u8> = room.iter().flat_map(|word| word.to_ne_bytes()).collect();
    let pids = bytes
        .chunks_exact(4)
        .take(found.min(capacity) as usize)
        .filter_map(|chunk| chunk.try_into().ok().map(u32::from_ne_bytes));
    pids.filter_map(|pid| {
        let record = ProcessList::info(info, handle, pid)?;
        let said: [u8; 4] = record.get(PID..PID + 4)?.try_into().ok()?;
        let mem: [u8; 8] = record.get(MEM..MEM + 8)?.try_into().ok()?;
        (u32::from_ne_bytes(said) == pid).then(|| (pid, u64::from_ne_bytes(mem)))
    })
    .collect()
}
