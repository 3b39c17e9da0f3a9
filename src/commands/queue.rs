//! `canhazgpu queue`: who waits for GPUs, in the order they will be served; with
//! `--host NAME` or `--all-hosts`, each host's queue under its header.

use crate::cli::QueueArgs;
use crate::commands::gpus::{Gpus, configured_threshold};
use crate::commands::{Context, format_ids};
use crate::duration::format_hms;
use crate::error::Result;
use crate::lab;
use crate::model::{Pool, Timestamp};
use crate::output;
use crate::views::{self, HostView};

/// Returns the exit status (see `status`).
pub fn queue(ctx: &Context, args: &QueueArgs) -> Result<i32> {
    if args.hosts.any() {
        return lab_queue(ctx, args);
    }
    let (pool, now) = ctx.current_pool()?;
    if args.json {
        let views = views::waiter_views(&pool.queue);
        return output::print_json(&views, "the queue", false).map(|()| 0);
    }
    output::print(&queue_lines(&pool, now)).map(|()| 0)
}

fn lab_queue(ctx: &Context, args: &QueueArgs) -> Result<i32> {
    // The queue needs no NVML; the views' states come from what each host published.
    let threshold = configured_threshold(&ctx.config);
    let hosts = lab::read(
        ctx,
        &lab::selection(&args.hosts),
        (Gpus::none(), threshold),
        None,
    )?;
    if args.json {
        let views: Vec<HostView> = hosts.iter().map(lab::HostState::view).collect();
        output::print_json(&views, "the queue", false)?;
        return Ok(lab::exit_status(&hosts));
    }
    let sections = lab::sections(&hosts, |read| queue_lines(&read.pool, read.now));
    output::print(&sections.join("\n"))?;
    Ok(lab::exit_status(&hosts))
}

/// The queue, one waiter a line, or a line saying nobody waits.
fn queue_lines(pool: &Pool, now: Timestamp) -> String {
    if pool.queue.is_empty() {
        return "Nobody is waiting for GPUs\n".to_string();
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
    text
}
