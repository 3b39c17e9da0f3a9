//! Signals the caller ignored stay ignored, for this process and for the command `run`
//! starts.
//!
//! `nohup canhazgpu run -- job` ignores SIGHUP, and a script's background jobs ignore
//! SIGINT; the job must then survive a dropped SSH session or a Ctrl-C meant for the
//! foreground, as a plain `nohup job` does. Installing a handler would un-ignore the
//! signal, and exec resets handled signals to their default action in the command, so
//! canhazgpu handles only the signals that were not ignored when it started.
//!
//! SIGPIPE needs a look before `main`: Rust's runtime sets it to ignored at start-up, and
//! `std::process::Command` resets it to the default in every child. Its disposition is
//! read by a constructor that runs before the runtime does, so that `run` can give the
//! command the disposition the caller gave us.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::libc::{self, c_int};

static SIGPIPE_IGNORED_AT_START: AtomicBool = AtomicBool::new(false);

// The C runtime calls the functions of `.init_array` before `main`, which is where Rust's
// runtime changes SIGPIPE; only an async-signal-safe libc call happens in it.
#[used]
#[unsafe(link_section = ".init_array")]
static RECORD_SIGPIPE_AT_START: extern "C" fn() = record_sigpipe_at_start;

extern "C" fn record_sigpipe_at_start() {
    SIGPIPE_IGNORED_AT_START.store(is_ignored(libc::SIGPIPE), Ordering::Relaxed);
}

/// Whether `signal`'s disposition is "ignore" right now.
fn is_ignored(signal: c_int) -> bool {
    let mut current = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: with a null new action, sigaction only writes the current one into
    // `current`, which is valid for writes.
    let read = unsafe { libc::sigaction(signal, std::ptr::null(), current.as_mut_ptr()) };
    // SAFETY: zeroed is a valid sigaction, and on success the kernel filled it in.
    read == 0 && unsafe { current.assume_init() }.sa_sigaction == libc::SIG_IGN
}

/// Whether the caller started us with `signal` ignored. Call before installing any
/// handler for it (a handler replaces the disposition this reads).
pub fn ignored_by_caller(signal: c_int) -> bool {
    if signal == libc::SIGPIPE {
        return SIGPIPE_IGNORED_AT_START.load(Ordering::Relaxed);
    }
    is_ignored(signal)
}

/// Of `signals`, those the caller did not ignore: the ones canhazgpu may handle.
pub fn not_ignored(signals: &[c_int]) -> Vec<c_int> {
    signals
        .iter()
        .copied()
        .filter(|&signal| !ignored_by_caller(signal))
        .collect()
}

/// For a command about to be exec'd: ignore SIGPIPE again if our caller ignored it
/// (std's spawn resets it to the default). Runs between fork and exec, so it only makes
/// an async-signal-safe call.
pub fn restore_sigpipe_in_child() -> std::io::Result<()> {
    // SAFETY: signal() is async-signal-safe and SIG_IGN is a valid disposition.
    if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dispositions() {
        // The test harness's own: Rust ignores SIGPIPE, nobody ignores SIGUSR2.
        assert!(is_ignored(libc::SIGPIPE));
        assert!(!is_ignored(libc::SIGUSR2));
        assert_eq!(not_ignored(&[libc::SIGUSR2]), [libc::SIGUSR2]);
    }
}
