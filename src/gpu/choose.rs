//! Which vendor's answer stands, when both were asked: a pure decision on the two
//! probes, so that every combination can be tested without a library.
//!
//! - One vendor has GPUs: its answer stands; the other's broken library is a note.
//! - Both have GPUs and the configuration picks neither: a conflict. canhazgpu manages
//!   one kind per host, because exports and busy detection are per vendor.
//! - Neither has GPUs: an answer without GPUs stands (`admin` then says "no GPUs"),
//!   unless the other library is broken, which then is more likely the truth.
//! - A vendor the configuration picks whose library is missing is worth a warning.

use super::{Found, Host, Probe, Vendor};

/// Decides from the probes of the vendors that were asked (`None`: not asked).
pub fn choose(preference: Option<Vendor>, nvidia: Option<Probe>, amd: Option<Probe>) -> Host {
    let answers = [(Vendor::Nvidia, nvidia), (Vendor::Amd, amd)];
    let gpu_counts: Vec<(Vendor, usize)> = answers
        .iter()
        .filter_map(|(vendor, probe)| match probe {
            Some(Probe::Devices { gpus, .. }) if !gpus.is_empty() => Some((*vendor, gpus.len())),
            _ => None,
        })
        .collect();
    if let [(first, n), (second, m)] = gpu_counts[..] {
        return Host {
            conflict: Some(conflict(first, n, second, m)),
            ..Host::default()
        };
    }
    let mut found = None;
    let mut broken = Vec::new();
    for (vendor, probe) in answers {
        // With GPUs on one side only, that side answers; otherwise the first answer.
        let takes = gpu_counts
            .first()
            .is_none_or(|(with_gpus, _)| *with_gpus == vendor);
        match probe {
            Some(Probe::Devices { version, gpus }) if found.is_none() && takes => {
                found = Some(Found {
                    vendor,
                    version,
                    gpus,
                });
            }
            Some(Probe::Unavailable(message)) => broken.push(message),
            Some(Probe::NoLibrary) if preference == Some(vendor) => broken.push(format!(
                "gpu_vendor = \"{}\" in the configuration, but no {} library ({}) was found; \
                 install it, or point canhazgpu at it (see `canhazgpu status --help`)",
                vendor.as_str(),
                vendor.library(),
                vendor.library_file()
            )),
            _ => {}
        }
    }
    let has_gpus = found.as_ref().is_some_and(|f| !f.gpus.is_empty());
    if has_gpus {
        return Host {
            found,
            notes: broken,
            ..Host::default()
        };
    }
    if broken.is_empty() {
        return Host {
            found,
            ..Host::default()
        };
    }
    Host {
        problem: Some(broken.join("; also, ")),
        ..Host::default()
    }
}

fn conflict(first: Vendor, n: usize, second: Vendor, m: usize) -> String {
    format!(
        "this host has GPUs of two vendors ({n} through {}, {m} through {}), and canhazgpu \
         manages one kind per host: set gpu_vendor = \"{}\" or gpu_vendor = \"{}\" in the \
         configuration file (/etc/canhazgpu/config.toml)",
        first.library(),
        second.library(),
        first.as_str(),
        second.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::GpuInfo;

    fn gpus(n: u32) -> Probe {
        Probe::Devices {
            version: Some("1".into()),
            gpus: (0..n)
                .map(|index| GpuInfo {
                    index,
                    gpu_index: index,
                    name: "G".into(),
                    uuid: String::new(),
                    memory_total_mib: 1,
                    memory_used_mib: 0,
                    processes: Vec::new(),
                    mig: None,
                    note: None,
                })
                .collect(),
        }
    }

    fn broken(what: &str) -> Probe {
        Probe::Unavailable(what.to_string())
    }

    fn vendor(host: &Host) -> Option<Vendor> {
        host.found.as_ref().map(|found| found.vendor)
    }

    #[test]
    fn the_vendor_with_gpus_answers() {
        let host = choose(None, Some(Probe::NoLibrary), Some(gpus(4)));
        assert_eq!(vendor(&host), Some(Vendor::Amd));
        assert_eq!(host.found.unwrap().gpus.len(), 4);
        assert_eq!(
            (host.problem, host.notes, host.conflict),
            (None, vec![], None)
        );

        // An NVIDIA driver without GPUs (a stale install) does not hide AMD's.
        let host = choose(None, Some(gpus(0)), Some(gpus(2)));
        assert_eq!(vendor(&host), Some(Vendor::Amd));
        // The other vendor's broken library is worth a note, not a failure.
        let host = choose(None, Some(gpus(2)), Some(broken("amd broke")));
        assert_eq!(vendor(&host), Some(Vendor::Nvidia));
        assert_eq!(host.notes, ["amd broke"]);
        assert_eq!(host.problem, None);
    }

    #[test]
    fn both_with_gpus_conflict_unless_one_is_picked() {
        let host = choose(None, Some(gpus(2)), Some(gpus(8)));
        assert_eq!(vendor(&host), None);
        let conflict = host.conflict.unwrap();
        assert!(
            conflict.contains("2 through NVML, 8 through AMD SMI"),
            "{conflict}"
        );
        assert!(conflict.contains("gpu_vendor = \"nvidia\""), "{conflict}");
        // The configuration picks one: only that one is asked.
        let host = choose(Some(Vendor::Amd), None, Some(gpus(8)));
        assert_eq!(vendor(&host), Some(Vendor::Amd));
        assert_eq!(host.conflict, None);
    }

    #[test]
    fn nothing_found_is_silent_and_broken_libraries_are_not() {
        assert_eq!(
            choose(None, Some(Probe::NoLibrary), Some(Probe::NoLibrary)),
            Host::default()
        );
        let host = choose(None, Some(broken("nvml broke")), Some(Probe::NoLibrary));
        assert_eq!(host.problem.as_deref(), Some("nvml broke"));
        let host = choose(None, Some(broken("a")), Some(broken("b")));
        assert_eq!(host.problem.as_deref(), Some("a; also, b"));
        // A library without GPUs beside a broken one: the broken one likely has them.
        let host = choose(None, Some(gpus(0)), Some(broken("amd broke")));
        assert_eq!(
            (vendor(&host), host.problem.as_deref()),
            (None, Some("amd broke"))
        );
        // Without GPUs anywhere, the answer stands (admin says there are none).
        let host = choose(None, Some(gpus(0)), Some(Probe::NoLibrary));
        assert_eq!(vendor(&host), Some(Vendor::Nvidia));
    }

    #[test]
    fn a_picked_vendor_without_its_library_is_reported() {
        let host = choose(Some(Vendor::Amd), None, Some(Probe::NoLibrary));
        let problem = host.problem.unwrap();
        assert!(problem.contains("gpu_vendor = \"amd\""), "{problem}");
        assert!(problem.contains("libamd_smi.so"), "{problem}");
        // Unpicked, a missing library is normal.
        assert_eq!(choose(None, None, Some(Probe::NoLibrary)), Host::default());
    }
}
