//! The hosts of a lab: their names (config `host`, `CANHAZGPU_HOST`, the `[hosts]` table,
//! `status --host NAME`), where each one's pool lives among a Redis store's keys, and what
//! a host publishes for the others to read (its registration and its NVML facts).
//!
//! Names are checked once, where they enter, so that every key built from one is well
//! formed: a name becomes part of Redis keys (`canhazgpu:{NAME}:gpu:3`), where a brace,
//! colon or space would break the hash tag or the key layout.

use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::gpu::GpuInfo;
use crate::model::{HistoryRecord, Pool, Timestamp};

/// The environment variable that names this host's pool (config `host`).
pub const HOST_ENV: &str = "CANHAZGPU_HOST";

/// As DNS labels: long enough for any host name, short enough for a key and a header.
const MAX_LEN: usize = 63;

/// A checked host name: letters, digits, `.`, `_` and `-`, starting with a letter or a
/// digit, at most 63 characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostName(String);

impl HostName {
    /// `what` names where the name came from, for the message (e.g. "`host`"); empty
    /// where the caller says it already (clap names the option).
    pub fn parse(name: &str, what: &str) -> Result<HostName, String> {
        let Some(why) = problem(name) else {
            return Ok(HostName(name.to_string()));
        };
        let source = if what.is_empty() {
            String::new()
        } else {
            format!("{what}: ")
        };
        Err(format!(
            "{source}{} is not a valid host name ({why}); use letters, digits, '.', '_' \
             and '-', starting with a letter or digit, at most {MAX_LEN} characters, e.g. gpu7",
            quoted(name)
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The hash of every named host sharing a Redis: field the name, value a JSON
/// [`Registration`]. Read by viewers in one command; not in any host's slot.
pub const REGISTRY_KEY: &str = "canhazgpu:hosts";

/// Where one host's pool lives among a Redis store's keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Keyspace {
    /// Upstream canhazgpu's keys (`canhazgpu:gpu_count`, ...): a host without a name,
    /// whose store is its own.
    #[default]
    Upstream,
    /// `canhazgpu:{NAME}:gpu_count`, ...: the braces are a Redis Cluster hash tag, so all
    /// of one host's keys share a slot and WATCH/MULTI/EXEC on them works on a cluster.
    Named(HostName),
}

impl Keyspace {
    /// The pool's key called `name` (`gpu_count`, `gpu:3`, `fifo`, ...).
    pub fn key(&self, name: &str) -> String {
        match self {
            Keyspace::Upstream => format!("canhazgpu:{name}"),
            Keyspace::Named(host) => format!("canhazgpu:{{{host}}}:{name}"),
        }
    }

    pub fn host(&self) -> Option<&HostName> {
        match self {
            Keyspace::Upstream => None,
            Keyspace::Named(host) => Some(host),
        }
    }
}

/// A named host's entry in [`REGISTRY_KEY`]. Decoding tolerates missing and unknown
/// fields, so that later versions may add some.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// `/etc/machine-id` of the machine that owns the name: a second machine claiming it
    /// is refused (see [`held_elsewhere`]).
    pub machine_id: String,
    /// The machine's own host name, so that a refusal can name both machines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_count: Option<u32>,
    /// When the host last wrote its pool, as of the registration's last update (which is
    /// throttled); the pool's own `last_write` key is exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_write: Option<Timestamp>,
}

/// A name's registry `entry` when another machine than `machine_id` holds it; `None`
/// when nobody registered the name yet or this machine did.
pub fn held_elsewhere<'a>(
    entry: Option<&'a Registration>,
    machine_id: &str,
) -> Option<&'a Registration> {
    entry.filter(|entry| entry.machine_id != machine_id)
}

/// The refusal when another machine registered `name`.
pub fn claimed_elsewhere(name: &HostName, theirs: &Registration, store: &str) -> String {
    let machine = |id: &str, hostname: Option<&str>| match hostname {
        Some(hostname) => format!("machine {id} ({hostname})"),
        None => format!("machine {id}"),
    };
    format!(
        "the host name {name} in the {store} belongs to {}, and this is {}; give this host \
         another name (config `host` or CANHAZGPU_HOST), or, if this machine replaces that \
         one, hand the name over with `canhazgpu admin --take-over-host`",
        machine(&theirs.machine_id, theirs.hostname.as_deref()),
        machine(machine_id(), local_hostname().as_deref()),
    )
}

/// This machine's identity for the registry: `/etc/machine-id` (or D-Bus's copy), which
/// survives reboots and renames; where neither exists (some containers), the host name.
/// Read once per process: every read and commit of a named host's pool asks for it.
pub fn machine_id() -> &'static str {
    static MACHINE_ID: OnceLock<String> = OnceLock::new();
    MACHINE_ID.get_or_init(|| {
        ["/etc/machine-id", "/var/lib/dbus/machine-id"]
            .iter()
            .find_map(|path| {
                let id = std::fs::read_to_string(path).ok()?;
                let id = id.trim();
                (!id.is_empty()).then(|| id.to_string())
            })
            .unwrap_or_else(|| format!("hostname:{}", local_hostname().unwrap_or_default()))
    })
}

/// The kernel's host name, if it has one.
pub fn local_hostname() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
}

/// What a named host publishes of its GPU library's answer (NVML or AMD SMI), at most every
/// [`PUBLISH_INTERVAL_SECONDS`], so that other hosts' views can show models, memory and
/// processes without an agent on every host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublishedGpus {
    /// When NVML was asked, by the publishing host's clock.
    pub probed_at: Timestamp,
    /// The publisher's threshold for "in use without reservation".
    pub memory_threshold_mib: u64,
    /// `nvidia` or `amd`.
    pub vendor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    pub gpus: Vec<GpuInfo>,
}

/// Seconds between two publications of a host's NVML facts.
pub const PUBLISH_INTERVAL_SECONDS: Timestamp = 30;

/// What a viewer reads of one host's pool: never locked, never written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolRead {
    /// `None` when the pool is not initialized.
    pub pool: Option<Pool>,
    /// When the host last committed a change to its pool (named hosts on Redis only).
    pub last_write: Option<Timestamp>,
    pub published: Option<PublishedGpus>,
    /// Finished reservations since the time asked for, when asked (`report`).
    pub history: Option<Vec<HistoryRecord>>,
}

/// What is wrong with `name`, if anything.
fn problem(name: &str) -> Option<String> {
    let Some(first) = name.chars().next() else {
        return Some("it is empty".to_string());
    };
    if name.len() > MAX_LEN {
        return Some(format!("it has {} characters", name.chars().count()));
    }
    if !first.is_ascii_alphanumeric() {
        return Some(format!("it starts with {}", quoted(&first.to_string())));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    name.chars()
        .find(|&c| !allowed(c))
        .map(|c| format!("it contains {}", quoted(&c.to_string())))
}

/// The name as a message shows it: control characters escaped, so that a name with a
/// newline or an escape sequence cannot forge lines on the terminal.
fn quoted(text: &str) -> String {
    format!("{text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for name in ["gpu7", "a", "7", "gpu-7.lab_b", &"x".repeat(63)] {
            assert_eq!(HostName::parse(name, "test").unwrap().as_str(), name);
        }
    }

    #[test]
    fn refuses_with_the_reason() {
        let cases = [
            ("", "empty"),
            ("-gpu", "starts with \"-\""),
            (".gpu", "starts with"),
            ("gpu{7}", "contains \"{\""),
            ("gpu:7", "contains \":\""),
            ("gpu 7", "contains \" \""),
            ("gpu\n7", "contains \"\\n\""),
            ("gpü", "contains \"ü\""),
        ];
        for (name, why) in cases {
            let message = HostName::parse(name, "`host`").unwrap_err();
            assert!(message.contains(why), "{name:?}: {message}");
            assert!(message.starts_with("`host`: "), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
        let long = HostName::parse(&"x".repeat(64), "t").unwrap_err();
        assert!(long.contains("64 characters"), "{long}");
    }

    #[test]
    fn keys_of_named_hosts_share_a_hash_tag_and_upstream_keys_stay() {
        let named = Keyspace::Named(HostName::parse("gpu7", "t").unwrap());
        assert_eq!(named.key("gpu:3"), "canhazgpu:{gpu7}:gpu:3");
        assert_eq!(named.key("gpu_count"), "canhazgpu:{gpu7}:gpu_count");
        assert_eq!(Keyspace::Upstream.key("gpu:3"), "canhazgpu:gpu:3");
        assert_eq!(Keyspace::Upstream.key("gpu_count"), "canhazgpu:gpu_count");
    }

    #[test]
    fn claims() {
        let entry = Registration {
            machine_id: "m1".into(),
            hostname: Some("gpu7.lab".into()),
            gpu_count: Some(8),
            last_write: None,
        };
        assert_eq!(held_elsewhere(None, "m1"), None);
        assert_eq!(held_elsewhere(Some(&entry), "m1"), None);
        assert_eq!(held_elsewhere(Some(&entry), "m2"), Some(&entry));
        let name = HostName::parse("gpu7", "t").unwrap();
        let message = claimed_elsewhere(&name, &entry, "Redis at redis://lab/0");
        assert!(
            message.starts_with(
                "the host name gpu7 in the Redis at redis://lab/0 belongs to machine m1 \
                 (gpu7.lab), and this is machine "
            ),
            "{message}"
        );
        assert!(message.contains("--take-over-host"), "{message}");
    }

    #[test]
    fn registrations_tolerate_other_versions() {
        let entry: Registration = serde_json::from_str(r#"{"machine_id":"m","future":1}"#).unwrap();
        assert_eq!(entry.gpu_count, None);
        let text = serde_json::to_string(&entry).unwrap();
        assert_eq!(text, r#"{"machine_id":"m"}"#, "no nulls written");
    }

    proptest! {
        #[test]
        fn a_valid_name_never_holds_key_syntax(name in "\\PC{0,70}") {
            if let Ok(host) = HostName::parse(&name, "t") {
                let key_syntax = ['{', '}', ':', ' ', '*', '?', '['];
                prop_assert!(!host.as_str().contains(key_syntax), "{}", host);
                prop_assert!(host.as_str().len() <= 63 && !host.as_str().is_empty());
            }
        }
    }
}
