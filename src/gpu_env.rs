//! The environment a holder of GPUs gets: which variables, with which values.
//!
//! Every path that hands GPUs to a process decides here and nowhere else: `run` (its
//! child's environment), plain `reserve` (the export line it prints), the shell
//! integration (the variables of a shell's layer, see `shell::vars`) and release (what
//! a shell gets back). Callers deal in [`Device`]s and variable names they get from
//! here; a new vendor's variables (`HIP_VISIBLE_DEVICES`, `ROCR_VISIBLE_DEVICES`) or
//! a new kind of device name (MIG UUIDs) is a change to this file alone.
//!
//! The rules:
//! - Each *list* variable names the held devices, in the order the holder got them.
//! - `CUDA_DEVICE_ORDER` is `PCI_BUS_ID` while GPUs are held, whatever it was. NVML,
//!   `nvidia-smi` and the pool number GPUs in PCI order; CUDA's default numbers them
//!   fastest first, and then `CUDA_VISIBLE_DEVICES=1` would select some GPU other than
//!   the one reserved, on a host shared with people who reserved it. A value the user
//!   had comes back when the GPUs go (the shell's layer saves it).
//! - A shell that already holds GPUs and gets more keeps its lists as the user left
//!   them (narrowed, reordered): ended devices are taken out, new ones appended, so
//!   `cuda:0` keeps meaning the same GPU.

use crate::cli::VisibleDevices;

pub const CUDA_VISIBLE_DEVICES: &str = "CUDA_VISIBLE_DEVICES";
/// What container runtimes (nvidia-container-toolkit) read instead.
pub const NVIDIA_VISIBLE_DEVICES: &str = "NVIDIA_VISIBLE_DEVICES";
pub const CUDA_DEVICE_ORDER: &str = "CUDA_DEVICE_ORDER";
/// NVML and nvidia-smi number GPUs in PCI order; CUDA's default is fastest first.
pub const PCI_BUS_ID: &str = "PCI_BUS_ID";

/// Variables that list the held devices.
const LISTS: [&str; 2] = [CUDA_VISIBLE_DEVICES, NVIDIA_VISIBLE_DEVICES];
/// Variables with one value whenever GPUs are held.
const FIXED: [(&str, &str); 1] = [(CUDA_DEVICE_ORDER, PCI_BUS_ID)];

/// Every variable this module sets, in the order they are written.
pub const VARIABLES: [&str; 3] = [
    CUDA_VISIBLE_DEVICES,
    NVIDIA_VISIBLE_DEVICES,
    CUDA_DEVICE_ORDER,
];

/// One reserved GPU as the programs that use it will name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// The pool's id, which is NVML's index.
    pub id: u32,
    /// The index or the GPU's UUID (`visible_devices`); what the list variables hold.
    pub name: String,
}

impl Device {
    pub fn by_index(id: u32) -> Device {
        Device {
            id,
            name: id.to_string(),
        }
    }

    /// Whether an entry of a list variable names this device, by its name or its
    /// index (a user may narrow a list of UUIDs with indices, which mean the same GPUs
    /// under PCI_BUS_ID).
    fn is_named_by(&self, entry: &str) -> bool {
        let entry = entry.trim();
        entry == self.name || entry == self.id.to_string()
    }
}

/// Names `ids` as `mode` asks (`visible_devices`): by index, or by the UUID `uuid`
/// gives (NVML's, `nvml_count` GPUs; `None` without NVML). Without a UUID for every
/// GPU all are named by index, which names the same GPUs under PCI_BUS_ID: refusing
/// every job while the driver is unwell would help nobody. The second value is a
/// warning saying so.
pub fn name_devices(
    ids: &[u32],
    mode: VisibleDevices,
    uuid: impl Fn(u32) -> Option<String>,
    nvml_count: Option<usize>,
) -> (Vec<Device>, Option<String>) {
    let by_index = || ids.iter().copied().map(Device::by_index).collect();
    if mode == VisibleDevices::Index {
        return (by_index(), None);
    }
    let named: Option<Vec<Device>> = ids
        .iter()
        .map(|&id| uuid(id).map(|name| Device { id, name }))
        .collect();
    if let Some(named) = named {
        return (named, None);
    }
    let warning = match nvml_count {
        None => "GPU UUIDs (visible_devices = uuid) need NVML, which is not available here; \
                 exporting GPU indices instead, which name the same GPUs"
            .to_string(),
        Some(count) => {
            let missing: Vec<u32> = ids
                .iter()
                .copied()
                .filter(|&id| uuid(id).is_none())
                .collect();
            let missing: Vec<String> = missing.iter().map(u32::to_string).collect();
            format!(
                "NVML reports {count} GPU(s) and no GPU [{}], so it has no UUID for it (is the \
                 pool larger than this host?); exporting GPU indices instead",
                missing.join(", ")
            )
        }
    };
    (by_index(), Some(warning))
}

/// The environment of a process that holds exactly `devices`: `run`'s child, and what
/// plain `reserve` prints for `eval`.
pub fn environment(devices: &[Device]) -> Vec<(&'static str, String)> {
    let list = join(devices);
    let mut env: Vec<(&'static str, String)> =
        LISTS.iter().map(|&name| (name, list.clone())).collect();
    env.extend(FIXED.iter().map(|&(name, value)| (name, value.to_string())));
    env
}

/// The variables of a shell that held `kept` + `removed` and now holds `kept` +
/// `added`, given what the shell has now (`current`). `None`: unset the variable.
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
    let mut update = Vec::new();
    for name in LISTS {
        let value = match current(name) {
            Some(list) => Some(edit(list, removed, added)),
            None if added.is_empty() => None,
            None => Some(join(kept.iter().chain(added))),
        };
        update.push((name, value));
    }
    let holds = !kept.is_empty() || !added.is_empty();
    for (name, value) in FIXED {
        update.push((name, holds.then(|| value.to_string())));
    }
    update
}

/// `list` without the entries naming `removed`, with `added` appended.
fn edit(list: &str, removed: &[Device], added: &[Device]) -> String {
    let mut entries: Vec<&str> = list
        .split(',')
        .filter(|entry| !entry.trim().is_empty())
        .filter(|entry| !removed.iter().any(|device| device.is_named_by(entry)))
        .collect();
    for device in added {
        if !entries.iter().any(|entry| device.is_named_by(entry)) {
            entries.push(&device.name);
        }
    }
    entries.join(",")
}

fn join<'a>(devices: impl IntoIterator<Item = &'a Device>) -> String {
    let names: Vec<&str> = devices.into_iter().map(|d| d.name.as_str()).collect();
    names.join(",")
}

/// How a shell remembers its devices' names between commands (in
/// `CANHAZGPU_DEVICES`): `None` when every name is the index, which needs no record.
pub fn encode_names(devices: &[Device]) -> Option<String> {
    devices
        .iter()
        .any(|device| device.name != device.id.to_string())
        .then(|| join(devices))
}

/// The devices `ids` named as `encode_names` recorded them; indices where the record is
/// missing or does not match the ids (then the variables were edited by hand).
pub fn decode_names(ids: &[u32], names: Option<&str>) -> Vec<Device> {
    let names: Vec<&str> = names
        .map(|text| text.split(',').collect())
        .unwrap_or_default();
    let usable = names.len() == ids.len()
        && names
            .iter()
            .all(|name| !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()));
    ids.iter()
        .enumerate()
        .map(|(at, &id)| match usable {
            true => Device {
                id,
                name: names[at].to_string(),
            },
            false => Device::by_index(id),
        })
        .collect()
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
        }
    }

    fn indices(ids: &[u32]) -> Vec<Device> {
        ids.iter().copied().map(Device::by_index).collect()
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
        let env = environment(&[uuid(3)]);
        assert_eq!(env[0].1, "GPU-3aa");
        assert_eq!(
            env.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
            VARIABLES
        );
    }

    #[test]
    fn a_new_layer_lists_everything_held() {
        let none = |_: &str| None;
        let update = shell_update(none, &[], &[], &indices(&[2, 0]));
        assert_eq!(update[0], (CUDA_VISIBLE_DEVICES, Some("2,0".into())));
        assert_eq!(update[1], (NVIDIA_VISIBLE_DEVICES, Some("2,0".into())));
        assert_eq!(update[2], (CUDA_DEVICE_ORDER, Some(PCI_BUS_ID.into())));
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
    }

    #[test]
    fn uuids_or_indices() {
        let uuid = |id: u32| (id < 2).then(|| format!("GPU-{id}"));
        let names =
            |devices: Vec<Device>| -> Vec<String> { devices.into_iter().map(|d| d.name).collect() };
        let (named, warning) = name_devices(&[0, 1], VisibleDevices::Uuid, uuid, Some(2));
        assert_eq!(names(named), ["GPU-0", "GPU-1"]);
        assert_eq!(warning, None);
        let (named, _) = name_devices(&[0, 1], VisibleDevices::Index, uuid, Some(2));
        assert_eq!(names(named), ["0", "1"]);
        // A GPU NVML does not know, or no NVML at all: indices for all, and why.
        let (named, warning) = name_devices(&[1, 2], VisibleDevices::Uuid, uuid, Some(2));
        assert_eq!(names(named), ["1", "2"]);
        assert!(warning.unwrap().contains("no GPU [2]"));
        let (named, warning) = name_devices(&[1], VisibleDevices::Uuid, |_| None, None);
        assert_eq!(names(named), ["1"]);
        assert!(warning.unwrap().contains("need NVML"));
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
    }
}
