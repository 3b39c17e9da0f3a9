//! One module per subcommand, and what they share: who is asking, what time it is, and
//! the liveness rules in force.

pub mod acquire;
pub mod admin;
pub mod completions;
pub mod gpus;
pub mod init;
pub mod prompt;
pub mod queue;
pub mod release;
pub mod report;
pub mod reserve;
pub mod run;
pub mod status;
pub mod web;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::liveness::{self, ProcView, Rules};
use crate::model::{Owner, Pool, Timestamp};
use crate::store::Store;

pub struct Context {
    pub store: Store,
    pub config: Config,
    pub view: ProcView,
}

impl Context {
    pub fn rules(&self) -> Rules {
        Rules {
            heartbeat_timeout: self.config.heartbeat_timeout(),
        }
    }

    /// The pool as it is now, for commands that only look: the cheap unlocked read is
    /// the truth unless something has ended since the last commit; then the sweep is
    /// committed, so that what is shown is what the store holds.
    /// Returns the store's time of the read along with the pool.
    pub fn current_pool(&self) -> Result<(Pool, Timestamp)> {
        let (mut pool, now) = self.store.snapshot_pool()?;
        if self.sweep(&mut pool, now) {
            return self.store.update(|pool, now| {
                self.sweep(pool, now);
                Ok((pool.clone(), now))
            });
        }
        Ok((pool, now))
    }

    /// This process as a reservation or queue owner.
    pub fn own_identity(&self) -> Result<Owner> {
        self.view.owner(std::process::id()).ok_or_else(|| {
            Error::failure(
                "cannot read this process's own entry in /proc, which liveness checks need; is /proc mounted?",
            )
        })
    }

    /// Frees whatever has ended; every transaction starts with this.
    pub fn sweep(&self, pool: &mut Pool, now: Timestamp) -> bool {
        liveness::sweep(pool, now, &self.rules(), &self.view)
    }
}

pub use crate::model::local_now as now;

/// The account of the real uid, from the password database: `$USER` can be set to anything.
pub fn current_user() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        // Containers often run uids without a passwd entry; the number still identifies.
        _ => uid.to_string(),
    }
}

pub fn format_ids(ids: &[u32]) -> String {
    let list: Vec<String> = ids.iter().map(u32::to_string).collect();
    format!("[{}]", list.join(", "))
}

pub fn cuda_list(ids: &[u32]) -> String {
    let list: Vec<String> = ids.iter().map(u32::to_string).collect();
    list.join(",")
}

/// The environment a job needs to use `devices` (a CUDA_VISIBLE_DEVICES list).
pub fn device_env(devices: &str) -> [(&'static str, String); 3] {
    [
        ("CUDA_VISIBLE_DEVICES", devices.to_string()),
        // Container runtimes (nvidia-container-toolkit) read this one instead.
        ("NVIDIA_VISIBLE_DEVICES", devices.to_string()),
        // Ids mean NVML's and nvidia-smi's numbering, not CUDA's fastest-first order.
        ("CUDA_DEVICE_ORDER", "PCI_BUS_ID".to_string()),
    ]
}

/// `export NAME=value ...` for POSIX shells (and fish's `export`) to eval.
pub fn export_line(devices: &str) -> String {
    let assignments: Vec<String> = device_env(devices)
        .iter()
        .map(|(name, value)| format!("{name}={}", sh_quote(value)))
        .collect();
    format!("export {}", assignments.join(" "))
}

/// Quotes `value` for a shell where needed: UUIDs come from the driver, and eval must
/// not run whatever a broken one returns.
fn sh_quote(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || ",._-:/+@%".contains(c);
    if !value.is_empty() && value.chars().all(plain) {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_line_quotes_odd_values() {
        assert_eq!(
            export_line("0,1"),
            "export CUDA_VISIBLE_DEVICES=0,1 NVIDIA_VISIBLE_DEVICES=0,1 CUDA_DEVICE_ORDER=PCI_BUS_ID"
        );
        assert_eq!(sh_quote("GPU-ab12-cd"), "GPU-ab12-cd");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("x'$(rm -rf ~)"), "'x'\\''$(rm -rf ~)'");
        assert_eq!(sh_quote(""), "''");
    }
}
