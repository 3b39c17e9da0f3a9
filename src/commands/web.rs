//! `canhazgpu web`: serves the dashboard of [`crate::web`] with the lab read from the
//! configured store, until killed.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cli::{GpuLibraryArgs, WebArgs};
use crate::commands::Context;
use crate::commands::gpus::{Gpus, memory_threshold};
use crate::commands::report::Report;
use crate::error::{Error, Result};
use crate::lab;
use crate::output;
use crate::views::HostView;
use crate::web::{Lab, Limits, Server, Wait};

/// The GPU library (NVML, AMD SMI) is asked at most this often, however many requests
/// come: loading and initializing it is the slow part of a status on a real driver.
const NVML_MAX_AGE: Duration = Duration::from_secs(1);

pub fn web(ctx: Context, args: &WebArgs) -> Result<()> {
    let threshold = memory_threshold(&ctx.config, &args.usage);
    let libraries = &args.usage.libraries;
    let lab = StoreLab {
        ctx,
        nvml_library: libraries.nvml_library.clone(),
        amd_smi_library: libraries.amd_smi_library.clone(),
        threshold,
        gpus: Mutex::new(None),
    };
    lab.gpus().warn("the dashboard shows reservations only");
    if let Some(warning) = exposure_warning(args.listen) {
        say!("{warning}");
    }
    let listener = TcpListener::bind(args.listen).map_err(|e| {
        Error::failure(format!(
            "cannot listen on {}: {e}; choose another address or port with --listen ADDR:PORT",
            args.listen
        ))
    })?;
    let server = Server::start(listener, Arc::new(lab), Limits::default())?;
    // Only information: a closed stdout must not stop the dashboard.
    let _ = output::println(&format!(
        "Serving the dashboard at http://{}/ (read-only; Ctrl-C stops it)",
        server.addr()
    ));
    server.wait()
}

/// What to say when the dashboard is reachable from other machines.
pub fn exposure_warning(listen: SocketAddr) -> Option<String> {
    (!listen.ip().is_loopback()).then(|| {
        format!(
            "canhazgpu: warning: listening on {listen}: the dashboard (user names, notes, \
             usage) is readable by anyone who can reach this address, without a login; \
             use --listen 127.0.0.1:{} to keep it on this machine",
            listen.port()
        )
    })
}

/// The lab as the configured store holds it.
struct StoreLab {
    ctx: Context,
    nvml_library: Option<PathBuf>,
    amd_smi_library: Option<PathBuf>,
    threshold: u64,
    gpus: Mutex<Option<(Instant, Arc<Gpus>)>>,
}

impl StoreLab {
    /// What the GPU library said at most [`NVML_MAX_AGE`] ago.
    fn gpus(&self) -> Arc<Gpus> {
        let mut cached = match self.gpus.lock() {
            Ok(cached) => cached,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((asked, gpus)) = cached.as_ref()
            && asked.elapsed() < NVML_MAX_AGE
        {
            return gpus.clone();
        }
        let args = GpuLibraryArgs {
            nvml_library: self.nvml_library.clone(),
            amd_smi_library: self.amd_smi_library.clone(),
        };
        let gpus = Arc::new(Gpus::probe(&self.ctx.config, &args));
        *cached = Some((Instant::now(), gpus.clone()));
        gpus
    }
}

impl Lab for StoreLab {
    fn hosts(&self) -> Vec<HostView> {
        lab::read_hosts(&self.ctx, &self.gpus(), self.threshold)
    }

    fn report(&self, days: u32) -> Result<Report> {
        lab::local_report(&self.ctx, days)
    }

    fn watch(&self, body: &mut dyn FnMut(&mut Wait)) {
        self.ctx.store.watch_changes(|wait| body(wait));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_go_unwarned() {
        for quiet in ["127.0.0.1:8080", "127.0.0.2:1", "[::1]:8080"] {
            assert_eq!(exposure_warning(quiet.parse().unwrap()), None, "{quiet}");
        }
        for loud in ["0.0.0.0:8080", "[::]:8080", "192.0.2.7:80"] {
            let warning = exposure_warning(loud.parse().unwrap()).unwrap();
            assert!(warning.contains("readable by anyone"), "{warning}");
            assert!(warning.contains(loud), "{warning}");
        }
    }
}
