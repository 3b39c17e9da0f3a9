//! The environment a holder of GPUs gets: which variables, with which values.
//!
//! Every path that hands GPUs to a process decides here and nowhere else: `run` (its
//! child's environment), plain `reserve` (the export line it prints), the shell
//! integration (the variables of a shell's layer, see `shell::vars`) and release (what
//! a shell gets back). Callers deal in [`Device`]s and variable names they get from
//! here.
//!
//! The rules:
//! - NVIDIA ([`Scheme::Cuda`]): `CUDA_VISIBLE_DEVICES` and `NVIDIA_VISIBLE_DEVICES` name
//!   the held devices (NVML index, GPU UUID, or the `MIG-` UUID of a MIG instance), and
//!   `CUDA_DEVICE_ORDER` is `PCI_BUS_ID` while GPUs are held, whatever it was. NVML,
//!   `nvidia-smi` and the pool number GPUs in PCI order; CUDA's default numbers them
//!   fastest first, and then `CUDA_VISIBLE_DEVICES=1` would select some GPU other than
//!   the one reserved. A value the user had comes back when the GPUs go.
//! - AMD ([`Scheme::Rocm`]): `ROCR_VISIBLE_DEVICES` names the held GPUs by their AMD SMI
//!   index; `HIP_VISIBLE_DEVICES` and `CUDA_VISIBLE_DEVICES` (which HIP reads too) count
//!   within what ROCr shows, from 0. HIP applies its list after ROCr's and renumbers,
//!   so the same indices in both would select other GPUs, or none.
//! - Each list follows the order the holder got its devices in. A shell that already
//!   holds GPUs and gets more keeps its lists as the user left them (narrowed,
//!   reordered): ended devices are taken out, new ones appended, so `cuda:0` keeps
//!   meaning the same GPU.

use crate::admission::format_ids;
use crate::cli::VisibleDevices;

pub const CUDA_VISIBLE_DEVICES: &str = "CUDA_VISIBLE_DEVICES";
/// What container runtimes (nvidia-container-toolkit) read instead.
pub const NVIDIA_VISIBLE_DEVICES: &str = "NVIDIA_VISIBLE_DEVICES";
pub const CUDA_DEVICE_ORDER: &str = "CUDA_DEVICE_ORDER";
/// NVML and nvidia-smi number GPUs in PCI order; CUDA's default is fastest first.
pub const PCI_BUS_ID: &str = "PCI_BUS_ID";
/// The HIP runtime's list, applied within what ROCr shows.
pub const HIP_VISIBLE_DEVICES: &str = "HIP_VISIBLE_DEVICES";
/// The ROCm runtime's (ROCr) list, which every ROCm program goes through.
pub const ROCR_VISIBLE_DEVICES: &str = "ROCR_VISIBLE_DEVICES";

/// Every variable this module sets for some vendor; a shell's layer saves and restores
/// them all.
pub const VARIABLES: [&str; 5] = [
    CUDA_VISIBLE_DEVICES,
    NVIDIA_VISIBLE_DEVICES,
    CUDA_DEVICE_ORDER,
    HIP_VISIBLE_DEVICES,
    ROCR_VISIBLE_DEVICES,
];

/// How a vendor's runtimes are told which GPUs to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scheme {
    /// NVIDIA: CUDA and the container toolkit.
    #[default]
    Cuda,
    /// AMD: ROCr, and HIP on top of it.
    Rocm,
}

impl Scheme {
    /// The lists that name the devices; the first is the one the others count within.
    fn named_lists(self) -> &'static [&'static str] {
        match self {
            Scheme::Cuda => &[CUDA_VISIBLE_DEVICES, NVIDIA_VISIBLE_DEVICES],
            Scheme::Rocm => &[ROCR_VISIBLE_DEVICES],
        }
    }

    /// The lists that count from 0 within the first named list.
    fn counted_lists(self) -> &'static [&'static str] {
        match self {
            Scheme::Cuda => &[],
            Scheme::Rocm => &[HIP_VISIBLE_DEVICES, CUDA_VISIBLE_DEVICES],
        }
    }

    /// Variables with one value whenever GPUs are held.
    fn fixed(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Scheme::Cuda => &[(CUDA_DEVICE_ORDER, PCI_BUS_ID)],
            Scheme::Rocm => &[],
        }
    }
}

/// One reserved GPU (or MIG instance) as the programs that use it will name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// The pool's id.
    pub id: u32,
    /// What the naming lists hold for it: an index, a GPU UUID or a MIG UUID.
    pub name: String,
    /// The vendor's index of the GPU, which a user may write in a list instead of its
    /// UUID (they mean the same GPU under PCI_BUS_ID); `None` for a MIG instance.
    pub index: Option<u32>,
    pub scheme: Scheme,
}

impl Device {
    /// Named by the pool's id, which is the NVML index where no MIG instance is in the
    /// pool: what every path did before the GPU library was asked.
    pub fn by_index(id: u32) -> Device {
        Device {
            id,
            name: id.to_string(),
            index: Some(id),
            scheme: Scheme::Cuda,
        }
    }

    /// Whether an entry of a naming list means this device.
    fn is_named_by(&self, entry: &str) -> bool {
        let entry = entry.trim();
        entry == self.name || self.index.is_some_and(|index| entry == index.to_string())
    }

    fn is_mig(&self) -> bool {
        self.name.starts_with("MIG-")
    }

    /// `name`, or `name=index` when the name alone would not say the index (see
    /// [`decode_names`]).
    fn record(&self) -> String {
        match self.index {
            Some(index) if inferred_index(self.id, &self.name) != Some(index) => {
                format!("{}={index}", self.name)
            }
            _ => self.name.clone(),
        }
    }
}

/// What the GPU library says about a pool id, to name it by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    /// The vendor's index of the (parent) GPU.
    pub index: u32,
    /// The GPU's UUID, or the MIG instance's `MIG-` UUID.
    pub uuid: String,
    pub mig: bool,
}

/// Names `ids` as `mode` asks (`visible_devices`), from what the GPU library knows
/// (`known`; `detected` GPUs, `None` without a library). A MIG instance has only its
/// UUID. A whole GPU goes by its index, or by UUID on NVIDIA in uuid mode; without a
/// UUID for every GPU all go by index, which names the same GPUs under PCI_BUS_ID:
/// refusing every job while the driver is unwell would help nobody. AMD's runtimes do
/// not take the UUIDs AMD SMI reports, so AMD GPUs always go by index. The warnings say
/// where the result is not what was asked for, or will not work as a user may think.
pub fn name_devices(
    ids: &[u32],
    mode: VisibleDevices,
    scheme: Scheme,
    known: impl Fn(u32) -> Option<Known>,
    detected: Option<usize>,
) -> (Vec<Device>, Vec<String>) {
    let mut warnings = Vec::new();
    let missing: Vec<u32> = ids
        .iter()
        .copied()
        .filter(|&id| known(id).is_none())
        .collect();
    let by_uuid = mode == VisibleDevices::Uuid && scheme == Scheme::Cuda && missing.is_empty();
    let devices: Vec<Device> = ids
        .iter()
        .map(|&id| match known(id) {
            Some(k) if k.mig => Device {
                id,
                name: k.uuid,
                index: None,
                scheme,
            },
            Some(k) => Device {
                id,
                name: if by_uuid { k.uuid } else { k.index.to_string() },
                index: Some(k.index),
                scheme,
            },
            None => Device {
                scheme,
                ..Device::by_index(id)
            },
        })
        .collect();
    if mode == VisibleDevices::Uuid && !ids.is_empty() {
        if scheme == Scheme::Rocm {
            warnings.push(
                "ROCm's runtimes take AMD GPUs by index or by the UUIDs `rocminfo` shows, not \
                 by the ones AMD SMI reports (visible_devices = uuid); exporting indices"
                    .to_string(),
            );
        } else if !missing.is_empty() {
            warnings.push(missing_uuids(&missing, detected));
        }
    }
    let migs: Vec<&str> = devices
        .iter()
        .filter(|d| d.is_mig())
        .map(|d| d.name.as_str())
        .collect();
    if migs.len() > 1 {
        warnings.push(format!(
            "CUDA shows a program at most one MIG instance, so of {} a program sees only the \
             first; start one program per instance (e.g. one `canhazgpu run` each)",
            migs.join(", ")
        ));
    }
    (devices, warnings)
}

fn missing_uuids(missing: &[u32], detected: Option<usize>) -> String {
    match detected {
        None => "GPU UUIDs (visible_devices = uuid) need NVML, which is not available here; \
                 exporting GPU indices instead, which name the same GPUs"
            .to_string(),
        Some(count) => format!(
            "NVML reports {count} GPU(s) and no GPU {}, so it has no UUID for it (is the \
             pool larger than this host?); exporting GPU indices instead",
            format_ids(missing)
        ),
    }
}

/// The environment of a process that holds exactly `devices`: `run`'s child, and what
/// plain `reserve` prints for `eval`.
pub fn environment(devices: &[Device]) -> Vec<(&'static str, String)> {
    let scheme = scheme_of(devices.iter());
    let list = join(devices);
    let mut env: Vec<(&'static str, String)> = Vec::new();
    for &name in scheme.named_lists() {
        env.push((name, list.clone()));
    }
    for &name in scheme.counted_lists() {
        env.push((name, counting(devices.len())));
    }
    env.extend(
        scheme
            .fixed()
            .iter()
            .map(|&(name, value)| (name, value.to_string())),
    );
    env
}

fn scheme_of<'a>(mut devices: impl Iterator<Item = &'a Device>) -> Scheme {
    devices.next().map(|d| d.scheme).unwrap_or_default()
}

/// `0,1,...,n-1`.
fn counting(n: usize) -> String {
    let positions: Vec<String> = (0..n).map(|p| p.to_string()).collect();
    positions.join(",")
}

/// The variables of a shell that held `kept` + `removed` and now holds `kept` +
/// `added`, given what the shell has now (`current`). `None`: unset the variable.
/// Variables the devices' vendor does not use are left alone (not in the result).
///
/// A list the shell does not have (a new layer, or the user unset it) gets every
/// held device when devices are added, and stays unset otherwise; a list it has is
/// edited in place.
pub fn shell_update<'a>(
    current: impl Fn(&str) -> Option<&'a str>,
    kept: &[Device],
    removed: &[Device],
    added: &[Device],
) -> Vec<(&'static str, Option<String>)> {
    let scheme = scheme_of(kept.iter().chain(removed).chain(added));
    let mut update = Vec::new();
    for &name in scheme.named_lists() {
        let value = match current(name) {
            Some(list) => Some(edit(list, removed, added)),
            None if added.is_empty() => None,
            None => Some(join(kept.iter().chain(added))),
        };
        update.push((name, value));
    }
    if let Some(&primary) = scheme.named_lists().first() {
        let before = current(primary).map(entries);
        let after = update
            .iter()
            .find(|(name, _)| *name == primary)
            .and_then(|(_, value)| value.as_deref())
            .map(entries);
        // Without the list they count within, the counting lists are the user's.
        if let Some(after) = after {
            for &name in scheme.counted_lists() {
                let value = match current(name) {
                    Some(list) => Some(recount(list, before.as_deref(), &after, removed, added)),
                    None if added.is_empty() => None,
                    None => Some(counting(after.len())),
                };
                update.push((name, value));
            }
        }
    }
    let holds = !kept.is_empty() || !added.is_empty();
    for &(name, value) in scheme.fixed() {
        update.push((name, holds.then(|| value.to_string())));
    }
    update
}

fn entries(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(str::to_string)
        .collect()
}

/// `list` without the entries naming `removed`, with `added` appended.
fn edit(list: &str, removed: &[Device], added: &[Device]) -> String {
    let mut entries = entries(list);
    entries.retain(|entry| !removed.iter().any(|device| device.is_named_by(entry)));
    for device in added {
        if !entries.iter().any(|entry| device.is_named_by(entry)) {
            entries.push(device.name.clone());
        }
    }
    entries.join(",")
}

/// A counting list (positions within the primary list, `before`; without one, within
/// all GPUs) as the same selection within the edited primary list `after`, without
/// `removed` and with `added` appended.
fn recount(
    list: &str,
    before: Option<&[String]>,
    after: &[String],
    removed: &[Device],
    added: &[Device],
) -> String {
    let mut chosen: Vec<String> = entries(list)
        .iter()
        .filter_map(|entry| entry.parse::<usize>().ok())
        .filter_map(|position| match before {
            Some(before) => before.get(position).cloned(),
            None => Some(position.to_string()),
        })
        .filter(|entry| !removed.iter().any(|device| device.is_named_by(entry)))
        .collect();
    for device in added {
        if !chosen.iter().any(|entry| device.is_named_by(entry)) {
            chosen.push(device.name.clone());
        }
    }
    let mut positions: Vec<usize> = Vec::new();
    for entry in &chosen {
        if let Some(position) = after.iter().position(|name| name == entry)
            && !positions.contains(&position)
        {
            positions.push(position);
        }
    }
    let positions: Vec<String> = positions.iter().map(usize::to_string).collect();
    positions.join(",")
}

fn join<'a>(devices: impl IntoIterator<Item = &'a Device>) -> String {
    let names: Vec<&str> = devices.into_iter().map(|d| d.name.as_str()).collect();
    names.join(",")
}

/// Marks a record of AMD devices in `CANHAZGPU_DEVICES`.
const ROCM_RECORD: &str = "rocm:";

/// How a shell remembers its devices between commands (in `CANHAZGPU_DEVICES`): `None`
/// when every device is an NVIDIA GPU named by its pool id, which needs no record.
pub fn encode_names(devices: &[Device]) -> Option<String> {
    let plain = devices.iter().all(|device| {
        device.scheme == Scheme::Cuda
            && device.name == device.id.to_string()
            && device.index == Some(device.id)
    });
    if plain {
        return None;
    }
    let records: Vec<String> = devices.iter().map(Device::record).collect();
    let prefix = match scheme_of(devices.iter()) {
        Scheme::Rocm => ROCM_RECORD,
        Scheme::Cuda => "",
    };
    Some(format!("{prefix}{}", records.join(",")))
}

/// The devices `ids` as `encode_names` recorded them; named by index where the record
/// is missing or does not match the ids (then the variables were edited by hand).
/// Records written before indices were recorded hold bare UUIDs, whose index then was
/// the pool id.
pub fn decode_names(ids: &[u32], record: Option<&str>) -> Vec<Device> {
    let (scheme, text) = match record {
        Some(text) => match text.strip_prefix(ROCM_RECORD) {
            Some(rest) => (Scheme::Rocm, Some(rest)),
            None => (Scheme::Cuda, Some(text)),
        },
        None => (Scheme::Cuda, None),
    };
    let decoded: Option<Vec<Device>> = text.and_then(|text| {
        let records: Vec<&str> = text.split(',').collect();
        if records.len() != ids.len() {
            return None;
        }
        ids.iter()
            .zip(records)
            .map(|(&id, record)| decode_record(id, record, scheme))
            .collect()
    });
    decoded.unwrap_or_else(|| {
        ids.iter()
            .map(|&id| Device {
                scheme,
                ..Device::by_index(id)
            })
            .collect()
    })
}

fn decode_record(id: u32, record: &str, scheme: Scheme) -> Option<Device> {
    if record.is_empty() || !record.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let (name, index) = match record.split_once('=') {
        Some((name, index)) => (name, Some(index.parse().ok()?)),
        None => (record, inferred_index(id, record)),
    };
    if name.is_empty() {
        return None;
    }
    Some(Device {
        id,
        name: name.to_string(),
        index,
        scheme,
    })
}

/// The index a record without one means: none for a MIG instance, the number for an
/// index, and for a UUID the pool id (which was the index before MIG).
fn inferred_index(id: u32, name: &str) -> Option<u32> {
    if name.starts_with("MIG-") {
        None
    } else {
        Some(name.parse().unwrap_or(id))
    }
}

/// The ids as the prompt and `CANHAZGPU_GPUS` show them: `1,5`.
pub fn id_list(ids: &[u32]) -> String {
    let list: Vec<String> = ids.iter().map(u32::to_string).collect();
    list.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn uuid(id: u32) -> Device {
        Device {
            id,
            name: format!("GPU-{id}aa"),
            index: Some(id),
            scheme: Scheme::Cuda,
        }
    }

    fn mig(id: u32) -> Device {
        Device {
            id,
            name: format!("MIG-{id}bb"),
            index: None,
            scheme: Scheme::Cuda,
        }
    }

    fn amd(id: u32) -> Device {
        Device {
            scheme: Scheme::Rocm,
            ..Device::by_index(id)
        }
    }

    fn indices(ids: &[u32]) -> Vec<Device> {
        ids.iter().copied().map(Device::by_index).collect()
    }

    fn value<'a>(update: &'a [(&str, Option<String>)], name: &str) -> Option<Option<&'a str>> {
        update
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value.as_deref())
    }

    #[test]
    fn a_process_gets_every_list_and_the_pci_order() {
        assert_eq!(
            environment(&indices(&[0, 1])),
            vec![
                (CUDA_VISIBLE_DEVICES, "0,1".to_string()),
                (NVIDIA_VISIBLE_DEVICES, "0,1".to_string()),
                (CUDA_DEVICE_ORDER, PCI_BUS_ID.to_string()),
            ]
        );
        let env = environment(&[uuid(3), mig(4)]);
        assert_eq!(env[0].1, "GPU-3aa,MIG-4bb");
        assert_eq!(env[1].1, "GPU-3aa,MIG-4bb");
    }

    #[test]
    fn amd_gpus_are_named_to_rocr_and_counted_for_hip() {
        assert_eq!(
            environment(&[amd(2), amd(5)]),
            vec![
                (ROCR_VISIBLE_DEVICES, "2,5".to_string()),
                (HIP_VISIBLE_DEVICES, "0,1".to_string()),
                (CUDA_VISIBLE_DEVICES, "0,1".to_string()),
            ]
        );
    }

    #[test]
    fn every_variable_set_is_managed() {
        for devices in [indices(&[0]), vec![amd(0)]] {
            for (name, _) in environment(&devices) {
                assert!(VARIABLES.contains(&name), "{name}");
            }
        }
    }

    #[test]
    fn a_new_layer_lists_everything_held() {
        let none = |_: &str| None;
        let update = shell_update(none, &[], &[], &indices(&[2, 0]));
        assert_eq!(update[0], (CUDA_VISIBLE_DEVICES, Some("2,0".into())));
        assert_eq!(update[1], (NVIDIA_VISIBLE_DEVICES, Some("2,0".into())));
        assert_eq!(update[2], (CUDA_DEVICE_ORDER, Some(PCI_BUS_ID.into())));
        assert_eq!(
            update.len(),
            3,
            "AMD's variables are left alone: {update:?}"
        );

        let update = shell_update(none, &[], &[], &[amd(3), amd(1)]);
        assert_eq!(value(&update, ROCR_VISIBLE_DEVICES), Some(Some("3,1")));
        assert_eq!(value(&update, HIP_VISIBLE_DEVICES), Some(Some("0,1")));
        assert_eq!(value(&update, CUDA_VISIBLE_DEVICES), Some(Some("0,1")));
        assert_eq!(value(&update, CUDA_DEVICE_ORDER), None);
        assert_eq!(value(&update, NVIDIA_VISIBLE_DEVICES), None);
    }

    #[test]
    fn a_narrowed_list_stays_narrowed_and_gets_the_new_gpu_appended() {
        // Held 2,3; the user kept only 3; a second reserve adds 4.
        let current = |name: &str| (name == CUDA_VISIBLE_DEVICES).then_some("3");
        let update = shell_update(current, &indices(&[2, 3]), &[], &indices(&[4]));
        assert_eq!(update[0], (CUDA_VISIBLE_DEVICES, Some("3,4".into())));
        // NVIDIA_VISIBLE_DEVICES was unset by the user: it gets everything again.
        assert_eq!(update[1], (NVIDIA_VISIBLE_DEVICES, Some("2,3,4".into())));
    }

    #[test]
    fn hip_keeps_counting_the_same_gpus_when_rocr_changes() {
        // Held 2,5 (ROCR 2,5); the user narrowed HIP to the second, 5; then 2 ended and
        // 7 was added: ROCR becomes 5,7 and HIP must still select 5, plus 7.
        let current = |name: &str| match name {
            ROCR_VISIBLE_DEVICES => Some("2,5"),
            HIP_VISIBLE_DEVICES => Some("1"),
            CUDA_VISIBLE_DEVICES => Some("0,1"),
            _ => None,
        };
        let update = shell_update(current, &[amd(5)], &[amd(2)], &[amd(7)]);
        assert_eq!(value(&update, ROCR_VISIBLE_DEVICES), Some(Some("5,7")));
        assert_eq!(value(&update, HIP_VISIBLE_DEVICES), Some(Some("0,1")));
        assert_eq!(value(&update, CUDA_VISIBLE_DEVICES), Some(Some("0,1")));

        // Only an end: HIP's selection of 5 is position 0 now.
        let update = shell_update(current, &[amd(5)], &[amd(2)], &[]);
        assert_eq!(value(&update, ROCR_VISIBLE_DEVICES), Some(Some("5")));
        assert_eq!(value(&update, HIP_VISIBLE_DEVICES), Some(Some("0")));

        // A ROCR list the user unset: nothing to count within, HIP stays the user's.
        let unset = |name: &str| (name == HIP_VISIBLE_DEVICES).then_some("1");
        let update = shell_update(unset, &[amd(5)], &[amd(2)], &[]);
        assert_eq!(value(&update, ROCR_VISIBLE_DEVICES), Some(None));
        assert_eq!(value(&update, HIP_VISIBLE_DEVICES), None);
    }

    #[test]
    fn ended_devices_leave_the_list_by_name_or_index() {
        let current = |_: &str| Some("GPU-1aa,0,7");
        let update = shell_update(current, &[uuid(7)], &[uuid(0), uuid(1)], &[]);
        assert_eq!(update[0], (CUDA_VISIBLE_DEVICES, Some("7".into())));
        // A removed list stays removed when nothing is added.
        let update = shell_update(|_| None, &[uuid(7)], &[uuid(1)], &[]);
        assert_eq!(update[0], (CUDA_VISIBLE_DEVICES, None));
        assert_eq!(update[2], (CUDA_DEVICE_ORDER, Some(PCI_BUS_ID.into())));
        // Nothing held any more: no order either.
        let update = shell_update(|_| Some("1"), &[], &[uuid(1)], &[]);
        assert_eq!(update[2], (CUDA_DEVICE_ORDER, None));
        // A MIG instance goes by its UUID only: an index in the list is another GPU.
        let update = shell_update(|_| Some("4,MIG-4bb"), &[], &[mig(4)], &[]);
        assert_eq!(update[0], (CUDA_VISIBLE_DEVICES, Some("4".into())));
    }

    #[test]
    fn names_survive_the_round_trip_when_they_are_not_indices() {
        assert_eq!(encode_names(&indices(&[0, 1])), None);
        let named = vec![uuid(0), uuid(5)];
        let text = encode_names(&named).unwrap();
        assert_eq!(decode_names(&[0, 5], Some(&text)), named);
        // A record that does not match the ids is not trusted.
        assert_eq!(decode_names(&[0], Some(&text)), indices(&[0]));
        assert_eq!(decode_names(&[0, 5], Some("a,")), indices(&[0, 5]));
        assert_eq!(decode_names(&[0, 5], None), indices(&[0, 5]));
        // Records of earlier versions: bare UUIDs, whose index was the pool id.
        assert_eq!(
            decode_names(&[0, 5], Some("GPU-0aa,GPU-5aa")),
            vec![uuid(0), uuid(5)]
        );
    }

    #[test]
    fn mig_and_amd_records_keep_what_the_lists_need() {
        // Pool id 3 is NVML's GPU 1 by UUID, pool id 4 a MIG instance.
        let devices = vec![
            Device {
                id: 3,
                name: "GPU-1aa".into(),
                index: Some(1),
                scheme: Scheme::Cuda,
            },
            mig(4),
        ];
        let text = encode_names(&devices).unwrap();
        assert_eq!(text, "GPU-1aa=1,MIG-4bb");
        assert_eq!(decode_names(&[3, 4], Some(&text)), devices);

        let devices = vec![amd(2), amd(0)];
        let text = encode_names(&devices).unwrap();
        assert_eq!(text, "rocm:2,0");
        assert_eq!(decode_names(&[2, 0], Some(&text)), devices);
        // Unreadable, still AMD: by index.
        assert_eq!(decode_names(&[2], Some("rocm:=x")), vec![amd(2)]);
    }

    fn known(id: u32) -> Option<Known> {
        match id {
            0 | 1 => Some(Known {
                index: id,
                uuid: format!("GPU-{id}"),
                mig: false,
            }),
            2 | 3 => Some(Known {
                index: 1,
                uuid: format!("MIG-{id}"),
                mig: true,
            }),
            _ => None,
        }
    }

    fn names(devices: Vec<Device>) -> Vec<String> {
        devices.into_iter().map(|d| d.name).collect()
    }

    #[test]
    fn uuids_or_indices() {
        let uuid = VisibleDevices::Uuid;
        let (named, warnings) = name_devices(&[0, 1], uuid, Scheme::Cuda, known, Some(2));
        assert_eq!(names(named), ["GPU-0", "GPU-1"]);
        assert!(warnings.is_empty());
        let (named, _) = name_devices(&[0, 1], VisibleDevices::Index, Scheme::Cuda, known, None);
        assert_eq!(names(named), ["0", "1"]);
        // A GPU NVML does not know, or no NVML at all: indices for all, and why.
        let (named, warnings) = name_devices(&[1, 5], uuid, Scheme::Cuda, known, Some(2));
        assert_eq!(names(named), ["1", "5"]);
        assert!(warnings[0].contains("no GPU [5]"), "{warnings:?}");
        let (named, warnings) = name_devices(&[1], uuid, Scheme::Cuda, |_| None, None);
        assert_eq!(names(named), ["1"]);
        assert!(warnings[0].contains("need NVML"), "{warnings:?}");
    }

    #[test]
    fn mig_instances_go_by_uuid_and_whole_gpus_by_their_nvml_index() {
        let index = VisibleDevices::Index;
        let (named, warnings) = name_devices(&[2], index, Scheme::Cuda, known, Some(4));
        assert_eq!(names(named), ["MIG-2"]);
        assert!(warnings.is_empty());
        let (named, warnings) = name_devices(&[2, 3, 0], index, Scheme::Cuda, known, Some(4));
        assert_eq!(names(named), ["MIG-2", "MIG-3", "0"]);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("at most one MIG instance"),
            "{warnings:?}"
        );
    }

    #[test]
    fn amd_gpus_go_by_index_even_in_uuid_mode() {
        let (named, warnings) =
            name_devices(&[1], VisibleDevices::Uuid, Scheme::Rocm, known, Some(2));
        assert_eq!(named, vec![amd(1)]);
        assert!(warnings[0].contains("rocminfo"), "{warnings:?}");
        let (_, warnings) = name_devices(&[1], VisibleDevices::Index, Scheme::Rocm, known, None);
        assert!(warnings.is_empty());
    }

    proptest! {
        #[test]
        fn editing_keeps_the_users_order_and_lists_each_device_once(
            start in proptest::collection::vec(0u32..8, 0..6),
            removed in proptest::collection::btree_set(0u32..8, 0..4),
            added in proptest::collection::btree_set(8u32..12, 0..3),
        ) {
            let list = id_list(&start);
            let removed = indices(&removed.into_iter().collect::<Vec<_>>());
            let added = indices(&added.into_iter().collect::<Vec<_>>());
            let out = edit(&list, &removed, &added);
            let entries: Vec<&str> = out.split(',').filter(|e| !e.is_empty()).collect();
            let kept: Vec<String> = start
                .iter()
                .filter(|id| !removed.iter().any(|d| d.id == **id))
                .map(u32::to_string)
                .collect();
            prop_assert_eq!(&entries[..kept.len()], &kept[..]);
            let tail: Vec<String> = added.iter().map(|d| d.name.clone()).collect();
            prop_assert_eq!(&entries[kept.len()..], &tail[..]);
        }

        /// However ROCR changes, HIP's list selects exactly the GPUs it selected before
        /// that are still held, then the new ones, each once, all within ROCR.
        #[test]
        fn hip_selects_the_same_gpus_after_rocr_is_edited(
            held in proptest::collection::btree_set(0u32..8, 1..6),
            picks in proptest::collection::vec(0usize..6, 0..6),
            ended in proptest::collection::btree_set(0u32..8, 0..4),
            added in proptest::collection::btree_set(8u32..12, 0..3),
        ) {
            let held: Vec<u32> = held.into_iter().collect();
            let rocr = id_list(&held);
            let hip: Vec<String> = picks
                .iter()
                .filter(|&&p| p < held.len())
                .map(usize::to_string)
                .collect();
            let hip = hip.join(",");
            let current = |name: &str| match name {
                ROCR_VISIBLE_DEVICES => Some(rocr.as_str()),
                HIP_VISIBLE_DEVICES => Some(hip.as_str()),
                _ => None,
            };
            let (gone, kept): (Vec<u32>, Vec<u32>) = held.iter().partition(|id| ended.contains(id));
            let kept: Vec<Device> = kept.into_iter().map(amd).collect();
            let removed: Vec<Device> = gone.into_iter().map(amd).collect();
            let added: Vec<Device> = added.into_iter().map(amd).collect();
            let update = shell_update(current, &kept, &removed, &added);
            let rocr_after = value(&update, ROCR_VISIBLE_DEVICES).flatten().unwrap_or("");
            let rocr_after: Vec<String> = entries(rocr_after);
            let hip_after = value(&update, HIP_VISIBLE_DEVICES).flatten().unwrap_or("");
            let selected: Vec<String> = entries(hip_after)
                .iter()
                .map(|p| rocr_after[p.parse::<usize>().unwrap()].clone())
                .collect();
            let mut expected: Vec<String> = Vec::new();
            for p in entries(&hip) {
                let name = held[p.parse::<usize>().unwrap()].to_string();
                if !ended.contains(&name.parse().unwrap()) && !expected.contains(&name) {
                    expected.push(name);
                }
            }
            expected.extend(added.iter().map(|d| d.name.clone()));
            prop_assert_eq!(selected, expected);
        }
    }
}
