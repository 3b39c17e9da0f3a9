//! `canhazgpu admin`: create or recreate the pool.

use crate::cli::AdminArgs;
use crate::commands::Context;
use crate::commands::gpus::Gpus;
use crate::error::{Error, Result};
use crate::model::{MAX_GPUS, Pool};

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
    let count = pool_size(ctx, args)?;
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
                "the pool is already initialized with {gpus} GPUs; use `{again}` to \
                 reinitialize it ({WHAT_FORCE_DOES})"
            )));
        }
        *pool = Some(Pool::new(count, now));
        Ok(previous)
    });
    let previous = match previous {
        Ok(previous) => previous,
        // A corrupt store cannot be read, but --force must still be able to start over.
        Err(e) if args.force && e.corrupt_store => {
            eprintln!("canhazgpu: warning: {e}");
            ctx.store.overwrite(|now| Pool::new(count, now))?;
            Replaced::Corrupt
        }
        Err(e) => return Err(e),
    };
    let last = count - 1;
    match previous {
        Replaced::Pool { gpus, reservations } => {
            println!("Force reinitializing: clearing {gpus} existing GPUs...");
            println!("Reinitialized {count} GPUs (IDs 0 to {last})");
            if reservations > 0 {
                eprintln!("canhazgpu: {reservations} GPU(s) were reserved: {WHAT_FORCE_DOES}");
            }
        }
        Replaced::Corrupt => {
            println!("Force reinitializing: clearing a pool the store could not read...");
            println!("Reinitialized {count} GPUs (IDs 0 to {last})");
            eprintln!("canhazgpu: whatever it held: {WHAT_FORCE_DOES}");
        }
        Replaced::Nothing => println!("Initialized {count} GPUs (IDs 0 to {last})"),
    }
    Ok(())
}

/// `--gpus`, checked against what NVML reports; or NVML's count when not given.
fn pool_size(ctx: &Context, args: &AdminArgs) -> Result<u32> {
    let gpus = Gpus::probe(&ctx.config, &args.nvml);
    let Some(n) = args.gpus else {
        return detected(&gpus);
    };
    let Some(devices) = gpus.devices() else {
        gpus.warn(&format!("cannot check --gpus {n} against this host's GPUs"));
        return Ok(n);
    };
    let found = devices.len();
    let wanted = n as usize;
    // An admin may hold GPUs back, or NVML may miss some: say so and go on.
    if wanted < found {
        eprintln!(
            "canhazgpu: warning: NVML reports {found} GPUs but --gpus is {n}, so the pool leaves out {}",
            gpu_range(wanted, found)
        );
    } else if wanted > found {
        eprintln!(
            "canhazgpu: warning: --gpus is {n} but NVML reports only {found} GPU(s): the driver knows no {}, and jobs handed those ids will find no GPU",
            gpu_range(found, wanted)
        );
    }
    Ok(n)
}

fn detected(gpus: &Gpus) -> Result<u32> {
    let Some(devices) = gpus.devices() else {
        let why = gpus.problem().unwrap_or(
            "no NVIDIA library (libnvidia-ml.so.1) was found to count them (use --nvml-library PATH if it is installed outside the loader's search path)",
        );
        return Err(Error::usage(format!(
            "cannot detect this host's GPUs: {why}; pass the pool size as --gpus N"
        )));
    };
    if devices.is_empty() {
        return Err(Error::usage(
            "NVML reports no GPUs on this host; pass --gpus N to initialize a pool of N GPUs anyway",
        ));
    }
    if devices.len() > MAX_GPUS as usize {
        return Err(Error::usage(format!(
            "NVML reports {} GPUs, more than the {MAX_GPUS} a pool may have; pass --gpus N",
            devices.len()
        )));
    }
    let driver = gpus
        .driver_version()
        .map(|version| format!(" (driver {version})"))
        .unwrap_or_default();
    println!("Detected {} GPUs through NVML{driver}", devices.len());
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
