//! The host's configuration file (`/etc/canhazgpu/config.toml`) and how it combines with
//! flags and environment: flag > environment > config file > built-in default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ValueEnum;

use crate::cli::VisibleDevices;
use crate::duration;
use crate::error::{Error, Result};
use crate::gpu::Vendor;
use crate::host::{HOST_ENV, HostName, Keyspace};
use crate::liveness::{DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_TIMEOUT};
use crate::store::{Store, StoreOptions};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/canhazgpu/config.toml";
/// The environment variable that chooses the store (the `--store` flag reads it too).
pub const STORE_ENV: &str = "CANHAZGPU_STORE";
/// The seed's default for `reserve`.
const DEFAULT_RESERVATION: Duration = Duration::from_secs(8 * 3600);
const KNOWN_KEYS: [&str; 15] = [
    "admins",
    "store",
    "host",
    "hosts",
    "tls_ca_file",
    "default_duration",
    "allocation_policy",
    "heartbeat_interval",
    "heartbeat_timeout",
    "memory_threshold",
    "nvml_library",
    "visible_devices",
    "gpu_vendor",
    "mig",
    "amd_smi_library",
];

#[derive(Debug, Default)]
pub struct Config {
    /// The file this was read from, for messages about its values.
    pub path: Option<PathBuf>,
    pub store: Option<String>,
    /// How long `reserve` holds GPUs when no --duration is given.
    pub default_duration: Option<Duration>,
    pub allocation_policy: Option<crate::alloc::Policy>,
    pub heartbeat_interval: Option<Duration>,
    pub heartbeat_timeout: Option<Duration>,
    /// MiB of memory in use above which a GPU without reservation is busy.
    pub memory_threshold: Option<u64>,
    /// Absolute path of the NVML library file, or of a directory holding it.
    pub nvml_library: Option<PathBuf>,
    pub visible_devices: Option<VisibleDevices>,
    /// The only vendor whose GPUs this host manages; both are asked when unset.
    pub gpu_vendor: Option<Vendor>,
    /// Whether each MIG instance of a GPU in MIG mode is a GPU of the pool.
    pub mig: Option<bool>,
    /// Absolute path of the AMD SMI library file, or of a directory holding it.
    pub amd_smi_library: Option<PathBuf>,
    /// Who besides root may reinitialize the pool and take back others' GPUs: user
    /// names, and group names after an `@`.
    pub admins: Vec<String>,
    /// This host's pool name on a shared Redis (`CANHAZGPU_HOST` wins, see
    /// [`Config::apply_host_env`]); `None` keeps upstream's keys.
    pub host: Option<HostName>,
    /// Other hosts' stores by name (`[hosts]`), for the lab views. The URLs are checked
    /// when a view reads them, so that a typo here does not stop this host's own work.
    pub hosts: BTreeMap<HostName, String>,
    /// PEM file of the certificate authority that signed a `rediss://` server's
    /// certificate, when it is not one the system trusts.
    pub tls_ca_file: Option<PathBuf>,
}

impl Config {
    /// Reads the file at `path`, or the default path when `None`. A missing default file
    /// is normal (no configuration); a missing explicitly named one is an error.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let (path, explicit) = match path {
            Some(path) => (path.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Config::default());
            }
            Err(e) => {
                return Err(Error::failure(format!(
                    "cannot read the configuration file {}: {e}; \
                     fix it or point --config / CANHAZGPU_CONFIG elsewhere",
                    path.display()
                )));
            }
        };
        let mut config = parse(&text).map_err(|why| {
            Error::failure(format!(
                "configuration file {}: {why}; \
                 fix it or point --config / CANHAZGPU_CONFIG elsewhere",
                path.display()
            ))
        })?;
        config.path = Some(path);
        Ok(config)
    }

    /// `CANHAZGPU_HOST` (`value`), when set and not empty, names this host instead of the
    /// file's `host`.
    pub fn apply_host_env(&mut self, value: Option<&str>) -> Result<()> {
        if let Some(name) = value.filter(|name| !name.is_empty()) {
            self.host = Some(HostName::parse(name, HOST_ENV).map_err(Error::usage)?);
        }
        Ok(())
    }

    /// The configuration file in force, as messages about its values name it: the file
    /// read, else the default path.
    pub fn shown_path(&self) -> std::path::Display<'_> {
        self.path
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_CONFIG_PATH))
            .display()
    }

    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
            .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL)
    }

    pub fn default_duration(&self) -> Duration {
        self.default_duration.unwrap_or(DEFAULT_RESERVATION)
    }

    pub fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout.unwrap_or(DEFAULT_HEARTBEAT_TIMEOUT)
    }

    /// The URL [`Config::open_store`] opens.
    pub fn store_url(&self, flag_or_env: Option<&str>) -> String {
        flag_or_env
            .map(str::to_string)
            .or_else(|| self.store.clone())
            .unwrap_or_else(Store::default_url)
    }

    /// How this host opens its stores: its pool's keys (`host`) and the TLS settings.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            keyspace: self
                .host
                .clone()
                .map_or(Keyspace::Upstream, Keyspace::Named),
            tls_ca_file: self.tls_ca_file.clone(),
            viewing: false,
        }
    }

    pub fn open_store(&self, flag_or_env: Option<&str>) -> Result<Store> {
        let opened = Store::open(&self.store_url(flag_or_env), &self.store_options());
        if flag_or_env.is_some() || self.store.is_none() {
            return opened;
        }
        // A bad URL nobody typed must say where it came from.
        opened.map_err(|e| Error {
            message: format!(
                "configuration file {}: `store`: {}",
                self.shown_path(),
                e.message
            ),
            ..e
        })
    }
}

fn parse(text: &str) -> std::result::Result<Config, String> {
    let table: toml::Table = text.parse().map_err(|e| format!("not valid TOML ({e})"))?;
    let mut config = Config::default();
    for (key, value) in &table {
        let as_str = || {
            value
                .as_str()
                .ok_or_else(|| format!("`{key}` must be a string"))
        };
        let as_duration = || {
            as_str().and_then(|text| {
                duration::parse_whole_seconds(text).map_err(|e| format!("`{key}`: {e}"))
            })
        };
        match key.as_str() {
            "admins" => config.admins = parse_admins(value)?,
            "host" => config.host = Some(HostName::parse(as_str()?, "`host`")?),
            "hosts" => config.hosts = parse_hosts(value)?,
            "tls_ca_file" => {
                let path = absolute_path(key, as_str()?, "/etc/canhazgpu/lab-ca.pem")?;
                config.tls_ca_file = Some(path);
            }
            "store" => config.store = Some(as_str()?.to_string()),
            "heartbeat_interval" => config.heartbeat_interval = Some(as_duration()?),
            "heartbeat_timeout" => config.heartbeat_timeout = Some(as_duration()?),
            "memory_threshold" => {
                let mib = value
                    .as_integer()
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| {
                        format!(
                            "`{key}` must be a whole number of MiB, e.g. memory_threshold = 1024"
                        )
                    })?;
                config.memory_threshold = Some(mib);
            }
            "nvml_library" => {
                let example = "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1";
                config.nvml_library = Some(absolute_path(key, as_str()?, example)?);
            }
            "amd_smi_library" => {
                let example = "/opt/rocm/lib/libamd_smi.so";
                config.amd_smi_library = Some(absolute_path(key, as_str()?, example)?);
            }
            "gpu_vendor" => {
                let vendor = Vendor::parse(as_str()?)
                    .ok_or_else(|| format!("`{key}` must be \"nvidia\" or \"amd\""))?;
                config.gpu_vendor = Some(vendor);
            }
            "mig" => {
                let on = value
                    .as_bool()
                    .ok_or_else(|| format!("`{key}` must be true or false, e.g. mig = true"))?;
                config.mig = Some(on);
            }
            "default_duration" => config.default_duration = Some(as_duration()?),
            "allocation_policy" => {
                let policy = crate::alloc::Policy::from_str(as_str()?, false)
                    .map_err(|_| format!("`{key}` must be \"lru\" or \"sticky\""))?;
                config.allocation_policy = Some(policy);
            }
            "visible_devices" => {
                let mode = VisibleDevices::from_str(as_str()?, false)
                    .map_err(|_| format!("`{key}` must be \"index\" or \"uuid\""))?;
                config.visible_devices = Some(mode);
            }
            _ => say!(
                "canhazgpu: warning: unknown key `{key}` in the configuration file ignored \
                 (known: {})",
                KNOWN_KEYS.join(", ")
            ),
        }
    }
    Ok(config)
}

/// `[hosts]` with `gpu3 = "redis://gpu3.lab:6379/0"` lines (or `hosts = { ... }`).
fn parse_hosts(value: &toml::Value) -> std::result::Result<BTreeMap<HostName, String>, String> {
    let example = "e.g. [hosts] with a line gpu3 = \"redis://gpu3.lab:6379/0\"";
    let table = value.as_table().ok_or_else(|| {
        format!("`hosts` must be a table of host names and store URLs, {example}")
    })?;
    table
        .iter()
        .map(|(name, url)| {
            let host = HostName::parse(name, "a name in `[hosts]`")?;
            let url = url.as_str().ok_or_else(|| {
                format!("`[hosts]` entry `{host}` must be a store URL in quotes, {example}")
            })?;
            Ok((host, url.to_string()))
        })
        .collect()
}

/// A path (a library, a CA file): absolute, since a relative one would mean something different in
/// every user's working directory.
fn absolute_path(key: &str, text: &str, example: &str) -> std::result::Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(format!("`{key}` must be an absolute path, e.g. {example}"))
    }
}

/// `admins = ["alice", "@gpu-admins"]`.
fn parse_admins(value: &toml::Value) -> std::result::Result<Vec<String>, String> {
    let invalid = || {
        "`admins` must be a list of user names and @group names, \
         e.g. admins = [\"alice\", \"@gpu-admins\"]"
            .to_string()
    };
    let list = value.as_array().ok_or_else(invalid)?;
    list.iter()
        .map(|entry| {
            let name = entry.as_str().ok_or_else(invalid)?;
            let bare = name.strip_prefix('@').unwrap_or(name);
            if bare.is_empty() || bare.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid());
            }
            Ok(name.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_known_keys() {
        let config = parse(
            "store = \"redis://127.0.0.1:6379/0\"\nheartbeat_interval = \"10s\"\nbogus = 1\n",
        )
        .unwrap();
        assert_eq!(config.store.as_deref(), Some("redis://127.0.0.1:6379/0"));
        assert_eq!(config.heartbeat_interval(), Duration::from_secs(10));
        assert_eq!(config.heartbeat_timeout(), DEFAULT_HEARTBEAT_TIMEOUT);
    }

    #[test]
    fn rejects_bad_values() {
        assert!(parse("store = 5").unwrap_err().contains("string"));
        assert!(parse("heartbeat_timeout = \"soon\"").is_err());
        assert!(parse("[[[").is_err());
        assert!(parse("memory_threshold = -1").unwrap_err().contains("MiB"));
        assert!(parse("memory_threshold = \"1G\"").is_err());
        assert!(
            parse("nvml_library = \"lib\"")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(
            parse("visible_devices = \"name\"")
                .unwrap_err()
                .contains("uuid")
        );
    }

    /// The commented configuration that the Debian package installs as a conffile.
    const PACKAGED: &str = include_str!("../packaging/deb/config.toml");

    /// The packaged file's `# key = value` lines, uncommented, by key.
    fn packaged_settings() -> Vec<(&'static str, &'static str)> {
        PACKAGED
            .lines()
            .filter_map(|line| line.strip_prefix("# ")?.split_once(" = "))
            .filter(|(key, _)| !key.contains(' '))
            .collect()
    }

    #[test]
    fn the_packaged_config_explains_every_key_and_changes_nothing() {
        let keys: Vec<&str> = packaged_settings().iter().map(|(key, _)| *key).collect();
        for key in KNOWN_KEYS {
            assert!(
                keys.contains(&key),
                "packaging/deb/config.toml has no `# {key} = ...` line explaining `{key}`"
            );
        }
        assert_eq!(
            keys.len(),
            KNOWN_KEYS.len(),
            "unknown or repeated keys: {keys:?}"
        );
        assert!(
            PACKAGED.lines().all(|l| l.is_empty() || l.starts_with('#')),
            "as installed, every line must be commented out"
        );
    }

    #[test]
    fn the_packaged_config_shows_the_defaults() {
        let settings: Vec<String> = packaged_settings()
            .iter()
            .map(|(key, value)| format!("{key} = {value}"))
            .collect();
        let config = parse(&settings.join("\n")).unwrap();
        assert_eq!(config.store, Some(Store::default_url()));
        assert_eq!(config.default_duration, Some(DEFAULT_RESERVATION));
        assert_eq!(
            config.allocation_policy,
            Some(crate::alloc::Policy::default())
        );
        assert_eq!(config.heartbeat_interval, Some(DEFAULT_HEARTBEAT_INTERVAL));
        assert_eq!(config.heartbeat_timeout, Some(DEFAULT_HEARTBEAT_TIMEOUT));
        assert_eq!(
            config.memory_threshold,
            Some(crate::commands::gpus::DEFAULT_MEMORY_THRESHOLD_MIB)
        );
        assert_eq!(config.visible_devices, Some(VisibleDevices::default()));
        assert!(config.admins.is_empty());
        assert!(config.hosts.is_empty());
        // No default path exists (the loader searches), no default name (upstream's
        // keys) and no default CA (the system's): the file shows examples.
        assert!(config.nvml_library.is_some());
        assert!(config.host.is_some());
        assert!(config.tls_ca_file.is_some());
        assert!(config.amd_smi_library.is_some());
        assert_eq!(config.mig, Some(false));
        // Both vendors are asked by default; the file shows one way to pick.
        assert!(config.gpu_vendor.is_some());
    }

    #[test]
    fn reads_the_lab_keys() {
        let config = parse(
            "host = \"gpu7\"\ntls_ca_file = \"/etc/ca.pem\"\n\
             [hosts]\ngpu3 = \"redis://gpu3.lab:6379/0\"\n\"gpu-4\" = \"bogus\"\n",
        )
        .unwrap();
        assert_eq!(config.host.as_ref().map(HostName::as_str), Some("gpu7"));
        assert_eq!(config.tls_ca_file, Some(PathBuf::from("/etc/ca.pem")));
        let hosts: Vec<(&str, &str)> = config
            .hosts
            .iter()
            .map(|(name, url)| (name.as_str(), url.as_str()))
            .collect();
        // A bad URL is the view's to report, not the loader's.
        assert_eq!(
            hosts,
            [("gpu-4", "bogus"), ("gpu3", "redis://gpu3.lab:6379/0")]
        );
    }

    #[test]
    fn refuses_bad_lab_keys() {
        for (text, why) in [
            (
                "host = \"gpu 7\"",
                "`host`: \"gpu 7\" is not a valid host name",
            ),
            ("host = 7", "`host` must be a string"),
            ("hosts = \"gpu3\"", "`hosts` must be a table"),
            (
                "[hosts]\n\"-x\" = \"redis://x/0\"",
                "a name in `[hosts]`: \"-x\"",
            ),
            (
                "[hosts]\ngpu3 = 3",
                "`[hosts]` entry `gpu3` must be a store URL",
            ),
            ("tls_ca_file = \"ca.pem\"", "absolute"),
        ] {
            let message = parse(text).unwrap_err();
            assert!(message.contains(why), "{text}: {message}");
        }
    }

    #[test]
    fn the_environment_names_the_host() {
        let mut config = parse("host = \"gpu7\"").unwrap();
        config.apply_host_env(Some("")).unwrap();
        assert_eq!(config.host.as_ref().map(HostName::as_str), Some("gpu7"));
        config.apply_host_env(Some("b")).unwrap();
        assert_eq!(config.host.as_ref().map(HostName::as_str), Some("b"));
        let e = config.apply_host_env(Some("b{x}")).unwrap_err();
        assert!(
            e.message.starts_with("CANHAZGPU_HOST: \"b{x}\""),
            "{}",
            e.message
        );
        assert_eq!(e.exit_code, crate::error::EXIT_USAGE);
    }

    #[test]
    fn reads_admins() {
        let config = parse("admins = [\"alice\", \"@gpu-admins\"]").unwrap();
        assert_eq!(config.admins, ["alice", "@gpu-admins"]);
        assert!(parse("").unwrap().admins.is_empty());
        for bad in [
            "admins = \"alice\"",
            "admins = [1]",
            "admins = [\"@\"]",
            "admins = [\"a b\"]",
        ] {
            assert!(parse(bad).unwrap_err().contains("@group"), "{bad}");
        }
    }

    #[test]
    fn reads_nvml_keys() {
        let config = parse(
            "memory_threshold = 2048\nnvml_library = \"/opt/nvidia/lib\"\n\
             visible_devices = \"uuid\"\n",
        )
        .unwrap();
        assert_eq!(config.memory_threshold, Some(2048));
        assert_eq!(config.nvml_library, Some(PathBuf::from("/opt/nvidia/lib")));
        assert_eq!(config.visible_devices, Some(VisibleDevices::Uuid));
    }

    #[test]
    fn reads_vendor_and_mig_keys() {
        let config =
            parse("gpu_vendor = \"amd\"\nmig = true\namd_smi_library = \"/opt/rocm/lib\"\n")
                .unwrap();
        assert_eq!(config.gpu_vendor, Some(Vendor::Amd));
        assert_eq!(config.mig, Some(true));
        assert_eq!(config.amd_smi_library, Some(PathBuf::from("/opt/rocm/lib")));
        assert_eq!(parse("").unwrap().gpu_vendor, None);
        assert!(
            parse("gpu_vendor = \"intel\"")
                .unwrap_err()
                .contains("\"amd\"")
        );
        assert!(
            parse("mig = \"yes\"")
                .unwrap_err()
                .contains("true or false")
        );
        assert!(parse("mig = 1").is_err());
        assert!(
            parse("amd_smi_library = \"lib\"")
                .unwrap_err()
                .contains("absolute")
        );
    }
}
