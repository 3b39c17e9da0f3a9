//! `canhazgpu admin`: create or recreate the pool.

use crate::cli::AdminArgs;
use crate::commands::{Context, now};
use crate::error::{Error, Result};
use crate::model::Pool;

pub fn admin(ctx: &Context, args: &AdminArgs) -> Result<()> {
    ctx.store.prepare_for_admin()?;
    let fresh = Pool::new(args.gpus, now());
    let previous = ctx.store.transact(|pool| {
        let previous = pool.as_ref().map(|p| p.gpus.len());
        if let Some(count) = previous
            && !args.force
        {
            return Err(Error::failure(format!(
                "the pool is already initialized with {count} GPUs; use `canhazgpu admin --gpus {} --force` to reinitialize it (this drops every current reservation)",
                args.gpus
            )));
        }
        *pool = Some(fresh.clone());
        Ok(previous)
    });
    let previous = match previous {
        Ok(previous) => previous,
        // A corrupt store cannot be read, but --force must still be able to start over.
        Err(e) if args.force && e.corrupt_store => {
            eprintln!("canhazgpu: warning: {e}");
            ctx.store.overwrite(&fresh)?;
            Some(0)
        }
        Err(e) => return Err(e),
    };
    let last = args.gpus - 1;
    match previous {
        Some(count) => {
            println!("Force reinitializing: clearing {count} existing GPUs...");
            println!("Reinitialized {} GPUs (IDs 0 to {last})", args.gpus);
        }
        None => println!("Initialized {} GPUs (IDs 0 to {last})", args.gpus),
    }
    Ok(())
}
