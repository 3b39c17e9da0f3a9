//! `canhazgpu queue`: who waits for GPUs, in the order they will be served.

use serde_json::json;

use crate::cli::QueueArgs;
use crate::commands::{Context, format_ids, now};
use crate::duration::format_hms;
use crate::error::Result;
use crate::output;

pub fn queue(ctx: &Context, args: &QueueArgs) -> Result<()> {
    let now = now();
    let pool = ctx.current_pool(now)?;
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
        return output::println(&serde_json::Value::Array(entries).to_string());
    }
    if pool.queue.is_empty() {
        return output::println("Nobody is waiting for GPUs");
    }
    let mut text = String::new();
    for (index, waiter) in pool.queue.iter().enumerate() {
        let wants = match &waiter.gpu_ids {
            Some(ids) => format!("GPU(s) {}", format_ids(ids)),
            None => format!("{} GPU(s)", waiter.count),
        };
        let until = waiter
            .deadline
            .map(|deadline| format!(", gives up in {}", format_hms(deadline - now)))
            .unwrap_or_default();
        text.push_str(&format!(
            "{}. {} wants {wants} ({}), waiting for {}{until}\n",
            index + 1,
            waiter.user,
            waiter.kind,
            format_hms(now - waiter.enqueued_at)
        ));
    }
    output::print(&text)
}
