//! `canhazgpu queue`: who waits for GPUs, in the order they will be served.

use serde_json::json;

use crate::cli::QueueArgs;
use crate::commands::{Context, format_ids};
use crate::duration::format_hms;
use crate::error::Result;

pub fn queue(ctx: &Context, args: &QueueArgs) -> Result<()> {
    let (pool, now) = ctx.current_pool()?;
    if args.json {
        let entries: Vec<_> = pool
            .queue
            .iter()
            .enumerate()
            .map(|(index, waiter)| {
                json!({
                    "position": index + 1,
                    "user": waiter.user,
                    "actual_user": waiter.actual_user,
                    "gpus": waiter.count,
                    "gpu_ids": waiter.gpu_ids,
                    "kind": waiter.kind,
                    "since": waiter.enqueued_at,
                    "deadline": waiter.deadline,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(entries));
        return Ok(());
    }
    if pool.queue.is_empty() {
        println!("Nobody is waiting for GPUs");
        return Ok(());
    }
    for (index, waiter) in pool.queue.iter().enumerate() {
        let wants = match &waiter.gpu_ids {
            Some(ids) => format!("GPU(s) {}", format_ids(ids)),
            None => format!("{} GPU(s)", waiter.count),
        };
        let until = waiter
            .deadline
            .map(|deadline| format!(", gives up in {}", format_hms(deadline - now)))
            .unwrap_or_default();
        println!(
            "{}. {} wants {wants} ({}), waiting for {}{until}",
            index + 1,
            waiter.user,
            waiter.kind,
            format_hms(now - waiter.enqueued_at)
        );
    }
    Ok(())
}
