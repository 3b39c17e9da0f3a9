//! Loading and initialising NVML, and turning the ways that fails into a
//! [`Probe`] the user can act on.

use std::path::Path;

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

use crate::gpu::Probe;
use crate::gpu::loader;

pub(crate) const LIBRARY_NAME: &str = "libnvidia-ml.so.1";

/// Initialised NVML, or the [`Probe`] to return instead.
pub(super) fn init(library_path: Option<&Path>) -> Result<Nvml, Probe> {
    let explicit = library_path.map(|path| loader::explicit_file(path, LIBRARY_NAME));
    if explicit.is_none() && loader::surely_not_installed(LIBRARY_NAME) {
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

fn display_name(explicit: Option<&Path>) -> String {
    explicit.map_or_else(|| LIBRARY_NAME.to_owned(), |p| p.display().to_string())
}

fn explain(err: NvmlError, explicit: Option<&Path>) -> Probe {
    let library = display_name(explicit);
    let message = match err {
        NvmlError::LibloadingError(err) => {
            let text = err.to_string();
            if explicit.is_none() && loader::loader_found_nothing(&text, LIBRARY_NAME) {
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
