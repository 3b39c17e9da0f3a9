//! Loading and initialising NVML, and turning the ways that fails into a
//! [`Probe`] the user can act on.

use std::path::{Path, PathBuf};

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

use super::Probe;

const LIBRARY_NAME: &str = "libnvidia-ml.so.1";

/// Initialised NVML, or the [`Probe`] to return instead.
pub(super) fn init(library_path: Option<&Path>) -> Result<Nvml, Probe> {
    let explicit = library_path.map(explicit_file);
    if explicit.is_none() && surely_not_installed() {
        return Err(Probe::NoLibrary);
    }
    if let Some(file) = &explicit {
        // An error here (e.g. an unreadable directory) is not proof of
        // absence; let the loader try and explain.
        if let Ok(false) = file.try_exists() {
            return Err(Probe::NoLibrary);
        }
    }

    let mut builder = Nvml::builder();
    if let Some(file) = &explicit {
        builder.lib_path(file.as_os_str());
    }
    let nvml = builder
        .init()
        .map_err(|err| explain(err, explicit.as_deref()))?;

    if let Err(err) = &nvml.lib().nvmlShutdown {
        let message = format!(
            "{} lacks nvmlShutdown ({err}), so it is not a working NVML library; \
             reinstall the NVIDIA driver",
            display_name(explicit.as_deref())
        );
        // nvml-wrapper's Drop calls nvmlShutdown unconditionally and panics
        // when it is missing. Leaking one library handle for the rest of a
        // short-lived command is the lesser evil.
        std::mem::forget(nvml);
        return Err(Probe::Unavailable(message));
    }
    Ok(nvml)
}

/// Whether the dynamic loader certainly cannot find the library, judged from its cache
/// and the directories it falls back to. A failed dlopen walks dozens of directories:
/// about 0.3 ms, a fifth of `status`, on every host without the NVIDIA driver. Anything
/// unusual (LD_LIBRARY_PATH set, no readable cache) leaves the answer to dlopen.
fn surely_not_installed() -> bool {
    if std::env::var_os("LD_LIBRARY_PATH").is_some_and(|paths| !paths.is_empty()) {
        return false;
    }
    let Ok(cache) = std::fs::read("/etc/ld.so.cache") else {
        return false;
    };
    let name = LIBRARY_NAME.as_bytes();
    if cache.windows(name.len()).any(|window| window == name) {
        return false;
    }
    // glibc also looks in its trusted directories for names ldconfig has not cached.
    let multiarch = format!("{}-linux-gnu", std::env::consts::ARCH);
    let trusted = [
        format!("/lib/{multiarch}"),
        format!("/usr/lib/{multiarch}"),
        "/lib64".to_owned(),
        "/usr/lib64".to_owned(),
        "/lib".to_owned(),
        "/usr/lib".to_owned(),
    ];
    !trusted
        .iter()
        .any(|dir| Path::new(dir).join(LIBRARY_NAME).exists())
}

fn explicit_file(path: &Path) -> PathBuf {
    let file = if path.is_dir() {
        path.join(LIBRARY_NAME)
    } else {
        path.to_path_buf()
    };
    // dlopen searches the loader path for a name without a slash; an
    // explicit path must mean that file and nothing else.
    if file.is_relative() {
        Path::new(".").join(file)
    } else {
        file
    }
}

fn display_name(explicit: Option<&Path>) -> String {
    explicit.map_or_else(|| LIBRARY_NAME.to_owned(), |p| p.display().to_string())
}

fn explain(err: NvmlError, explicit: Option<&Path>) -> Probe {
    let library = display_name(explicit);
    let message = match err {
        NvmlError::LibloadingError(err) => {
            let text = err.to_string();
            if explicit.is_none() && loader_found_nothing(&text) {
                return Probe::NoLibrary;
            }
            format!(
                "cannot load {library}: {text}; reinstall the NVIDIA driver's libraries \
                 or point canhazgpu at a working copy"
            )
        }
        NvmlError::FailedToLoadSymbol(detail) => format!(
            "{library} is not a usable NVML library ({detail}); \
             the NVIDIA driver may be too old or the file is not NVML"
        ),
        NvmlError::DriverNotLoaded => "the NVIDIA driver is not loaded (NVML: driver not loaded); \
             load the nvidia kernel module (`sudo modprobe nvidia`) or reinstall the driver, \
             then check that `nvidia-smi` works"
            .to_owned(),
        NvmlError::NoPermission => "NVML has no permission to talk to the NVIDIA driver; \
             check that this user may open /dev/nvidiactl and /dev/nvidia*"
            .to_owned(),
        NvmlError::LibRmVersionMismatch => {
            "the NVIDIA driver's libraries do not match its loaded kernel module \
             (was the driver updated without a reboot?); reboot or reload the nvidia module"
                .to_owned()
        }
        other => format!("NVML failed to initialise: {other}; check that `nvidia-smi` works"),
    };
    Probe::Unavailable(message)
}

/// Whether a dlopen error for the bare library name means "not installed".
///
/// libloading only hands over the loader's message, so this matches text;
/// Rust programs never call setlocale, so the message is untranslated.
/// Both loaders name the file they could not find first: if the library
/// itself was found but one of its dependencies was not, the message starts
/// with the dependency, and a broken install deserves a warning.
pub(super) fn loader_found_nothing(message: &str) -> bool {
    // glibc
    message
        .strip_prefix(LIBRARY_NAME)
        .is_some_and(|rest| rest.starts_with(": cannot open shared object file: No such file"))
        // musl
        || message
            .strip_prefix("Error loading shared library ")
            .and_then(|rest| rest.strip_prefix(LIBRARY_NAME))
            .is_some_and(|rest| rest.starts_with(": No such file"))
}
