//! `canhazgpu queue`: who waits for GPUs, in the order they will be served.

use crate::cli::QueueArgs;
use crate::commands::{Context, format_ids};
use crate::duration::format_hms;
use crate::error::{Error, Result};
use crate::output;
use crate::views;

pub fn queue(ctx: &Context, args: &QueueArgs) -> Result<()> {
    let (pool, now) = ctx.current_pool()?;
    if args.json {
        let text = serde_json::to_string(&views::waiter_views(&pool.queue))
            .map_err(|e| Error::failure(format!("cannot encode the queue as JSON: {e}")))?;
        return output::println(&text);
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
