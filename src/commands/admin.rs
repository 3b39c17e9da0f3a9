//! `canhazgpu admin`: create or recreate the pool.

use crate::cli::AdminArgs;
use crate::commands::Context;
use crate::commands::gpus::{Gpus, configured_threshold};
use crate::error::{Error, Result};
use crate::model::{MAX_GPUS, Pool};
use crate::output;
use crate::powers;

/// What reinitializing does to the reservations of the pool it replaces, as every
/// message that offers or reports it says.
const WHAT_FORCE_DOES: &str = "every reservation is dropped: manual ones are gone for \
     good, and each running `canhazgpu run` job reserves its GPUs again at its next \
     heartbeat (within a minute) if they are still free";

/// What stood in the store before a reinitialization.
enum Replaced {
    Nothing,
    Pool { gpus: usize, reservations: usize },
    Corrupt,
}

pub fn admin(ctx: &Context, args: &AdminArgs) -> Result<()> {
    powers::require_admin(
        &ctx.config,
        &ctx.store,
        if args.take_over_host {
            "hand this host's name to this machine"
        } else {
            "initialize or reinitialize the pool"
        },
    )?;
    if args.take_over_host {
        take_over_host(ctx)?;
        if args.gpus.is_none() {
            return Ok(());
        }
    }
    let gpus = Gpus::probe(&ctx.config, &args.libraries);
    let count = pool_size(&gpus, args)?;
    ctx.store.prepare_for_admin()?;
    let previous = ctx.store.transact(|pool, now| {
        let previous = match pool.as_ref() {
            Some(pool) => Replaced::Pool {
                gpus: pool.gpus.len(),
                reservations: pool.gpus.len() - pool.free_count(),
            },
            None => Replaced::Nothing,
        };
        if let (Replaced::Pool { gpus, .. }, false) = (&previous, args.force) {
            let again = match args.gpus {
                Some(n) => format!("canhazgpu admin --gpus {n} --force"),
                None => "canhazgpu admin --force".to_string(),
            };
            return Err(Error::failure(format!(
                "the pool is already initialized with {}; use `{again}` to reinitialize it \
                 ({WHAT_FORCE_DOES})",
                gpus_counted(*gpus as u32, "")
            )));
        }
        *pool = Some(Pool::new(count, now));
        Ok(previous)
    });
    let previous = match previous {
        Ok(previous) => previous,
        // A corrupt store cannot be read, but --force must still be able to start over.
        Err(e) if args.force && e.corrupt_store => {
            say!("canhazgpu: warning: {e}");
            ctx.store.overwrite(|now| Pool::new(count, now))?;
            Replaced::Corrupt
        }
        Err(e) => return Err(e),
    };
    let threshold = configured_threshold(&ctx.config);
    ctx.store
        .publish_gpus(|now| gpus.to_publish(now, threshold));
    match previous {
        Replaced::Pool { gpus, reservations } => {
            if reservations > 0 {
                say!("canhazgpu: {reservations} GPU(s) were reserved: {WHAT_FORCE_DOES}");
            }
            output::print(&format!(
                "Force reinitializing: clearing {}...\nReinitialized {}\n",
                gpus_counted(gpus as u32, "existing "),
                describe_pool(count)
            ))
        }
        Replaced::Corrupt => {
            say!("canhazgpu: whatever the unreadable pool held: {WHAT_FORCE_DOES}");
            output::print(&format!(
                "Force reinitializing: clearing a pool the store could not read...\n\
                 Reinitialized {}\n",
                describe_pool(count)
            ))
        }
        Replaced::Nothing => output::println(&format!("Initialized {}", describe_pool(count))),
    }
}

/// `8 GPUs (IDs 0 to 7)`, `1 GPU (ID 0)`.
fn describe_pool(count: u32) -> String {
    match count {
        1 => "1 GPU (ID 0)".to_string(),
        _ => format!("{count} GPUs (IDs 0 to {})", count - 1),
    }
}

/// `1 existing GPU`, `8 existing GPUs`.
fn gpus_counted(count: u32, adjective: &str) -> String {
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {adjective}GPU{plural}")
}

/// `admin --take-over-host`: this machine now owns the name, whoever did before.
fn take_over_host(ctx: &Context) -> Result<()> {
    let Some(name) = &ctx.config.host else {
        return Err(Error::usage(
            "--take-over-host hands this host's name to this machine, but this host has \
             none: set `host` in the configuration (or CANHAZGPU_HOST) first",
        ));
    };
    ctx.store.take_over_host(name)?;
    say!(
        "canhazgpu: this machine ({}) now owns the host name {name} in the {}; its pool \
         and reservations are unchanged",
        crate::host::machine_id(),
        ctx.store.describe()
    );
    Ok(())
}

/// `--gpus`, checked against what the GPU library reports; or its count when not given.
fn pool_size(gpus: &Gpus, args: &AdminArgs) -> Result<u32> {
    let Some(n) = args.gpus else {
        return detected(gpus);
    };
    let Some(devices) = gpus.devices() else {
        gpus.warn(&format!("cannot check --gpus {n} against this host's GPUs"));
        return Ok(n);
    };
    gpus.warn_notes();
    let found = devices.len();
    let wanted = n as usize;
    let library = gpus.library();
    // An admin may hold GPUs back, or the library may miss some: say so and go on.
    if wanted < found {
        say!(
            "canhazgpu: warning: {library} reports {found} GPUs but --gpus is {n}, so the pool \
             leaves out {}",
            gpu_range(wanted, found)
        );
    } else if wanted > found {
        say!(
            "canhazgpu: warning: --gpus is {n} but {library} reports only {found} GPU(s): the \
             driver knows no {}, and jobs handed those ids will find no GPU",
            gpu_range(found, wanted)
        );
    }
    Ok(n)
}

fn detected(gpus: &Gpus) -> Result<u32> {
    let Some(devices) = gpus.devices() else {
        let why = gpus.problem().unwrap_or(
            "no GPU library was found to count them, neither NVIDIA's libnvidia-ml.so.1 nor \
             AMD's libamd_smi.so (use --nvml-library PATH or --amd-smi-library PATH if one \
             is installed outside the loader's search path)",
        );
        return Err(Error::usage(format!(
            "cannot detect this host's GPUs: {why}; pass the pool size as --gpus N"
        )));
    };
    gpus.warn_notes();
    let library = gpus.library();
    if devices.is_empty() {
        return Err(Error::usage(format!(
            "{library} reports no GPUs on this host; pass --gpus N to initialize a pool of N \
             GPUs anyway"
        )));
    }
    if devices.len() > MAX_GPUS as usize {
        return Err(Error::usage(format!(
            "{library} reports {} GPUs, more than the {MAX_GPUS} a pool may have; pass --gpus N",
            devices.len()
        )));
    }
    let driver = gpus
        .driver_version()
        .map(|version| format!(" (driver {version})"))
        .unwrap_or_default();
    let instances = devices.iter().filter(|gpu| gpu.mig.is_some()).count();
    let of_them = match instances {
        0 => String::new(),
        1 => ", 1 of them a MIG instance".to_string(),
        n => format!(", {n} of them MIG instances"),
    };
    output::println(&format!(
        "Detected {} through {library}{driver}{of_them}",
        gpus_counted(devices.len() as u32, "")
    ))?;
    Ok(devices.len() as u32)
}

/// "GPU 7" or "GPUs 4 to 7", for ids `from..to`.
fn gpu_range(from: usize, to: usize) -> String {
    if to - from == 1 {
        format!("GPU {from}")
    } else {
        format!("GPUs {from} to {}", to - 1)
    }
}
