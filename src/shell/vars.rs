//! The environment variables that describe what a shell holds, and how they stack.
//!
//! A shell that reserves gets a *layer*: the variables [`gpu_env`] decides
//! (`CUDA_VISIBLE_DEVICES` and the rest), the `CANHAZGPU_*` variables, and
//! `CANHAZGPU_RESTORE`, a JSON snapshot of all of them as they were before, exported or
//! not. Release puts the snapshot back exactly. Because the snapshot includes the
//! previous `CANHAZGPU_RESTORE`, a nested shell that reserves on top of GPUs it
//! inherited gets back exactly its parent's variables when it releases.
//!
//! Everything here is pure: the store, the process tree and the names of devices come
//! in through closures, so the rules can be tested without any of them.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::Shell;
use super::attrs::{self, Problem};
use super::emit::Script;
use crate::error::{Error, Result};
use crate::gpu_env::{self, Device};
use crate::model::Timestamp;

/// The ids this shell holds, in the order it got them.
pub const GPUS: &str = "CANHAZGPU_GPUS";
/// What the device lists call each GPU of `CANHAZGPU_GPUS`, when not by index (UUIDs).
pub const DEVICES: &str = "CANHAZGPU_DEVICES";
/// Unix time at which the first of them expires.
pub const EXPIRES: &str = "CANHAZGPU_EXPIRES";
/// The shell that holds them.
pub const OWNER_PID: &str = "CANHAZGPU_OWNER_PID";
/// Marker file whose disappearance tells the prompt hook to check the store.
pub const LEASE: &str = "CANHAZGPU_LEASE";
/// The store the GPUs are in, when `reserve --store` named one other than the default.
pub const STORE: &str = "CANHAZGPU_SHELL_STORE";
/// The variables as they were before this layer.
pub const RESTORE: &str = "CANHAZGPU_RESTORE";

const OWN: [&str; 7] = [GPUS, DEVICES, EXPIRES, OWNER_PID, LEASE, STORE, RESTORE];

/// Every variable a layer sets and a release restores; the init scripts carry the same
/// list (a test keeps them equal).
pub fn managed() -> impl Iterator<Item = &'static str> + Clone {
    gpu_env::VARIABLES.into_iter().chain(OWN)
}

/// Nesting deeper than this is a loop, not a person.
const MAX_LAYERS: usize = 64;

/// How a variable lives in the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Exported,
    /// A shell variable the user set without exporting it.
    Unexported,
    /// fish: only in the universal scope (`set -U`); restored by erasing the global
    /// copy that shadowed it.
    Universal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Var {
    value: String,
    scope: Scope,
}

/// The managed variables of one shell (absent means unset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vars(BTreeMap<&'static str, Var>);

/// A managed variable the shell cannot be given a new value, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unwritable {
    pub name: &'static str,
    pub problem: Problem,
}

/// What the store says a holder has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holding {
    pub ids: Vec<u32>,
    /// The earliest expiry among them.
    pub expires: Option<Timestamp>,
    /// GPUs the layer lists that the holder no longer has, and why.
    pub lost: Vec<(u32, Ending)>,
}

/// Why GPUs of a layer are gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    Expired,
    /// Released from elsewhere.
    Released,
    /// An administrator took it back (`release --gpu-ids N --force`); their account.
    Reclaimed(String),
    /// The shell that held them is gone.
    HolderGone,
    /// Inherited from a shell that is not an ancestor (a tmux server started there).
    NotAncestor,
    /// `CANHAZGPU_OWNER_PID` is not a PID.
    Unreadable,
}

pub enum Fate {
    Holds(Holding),
    /// The whole layer is gone, for one reason.
    Ended(Ending),
}

/// GPUs a layer lost in `settle`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lost {
    pub holder: Option<u32>,
    /// What ended, grouped by why, in the layer's order.
    pub ended: Vec<(Ending, Vec<u32>)>,
    /// What the layer still holds; empty when the layer was taken off.
    pub kept: Vec<u32>,
    /// False when `CANHAZGPU_RESTORE` was unreadable and the variables were cleared
    /// instead of restored.
    pub restored: bool,
}

impl Vars {
    /// This process's environment, which the shell function passed down, with what the
    /// shell said about each variable (exported or not, and what cannot be assigned).
    pub fn from_env(shell: Option<Shell>) -> Result<(Vars, Vec<Unwritable>)> {
        let described = shell.zip(std::env::var(attrs::ATTRS_VAR).ok());
        let described = described.map(|(shell, text)| attrs::parse(shell, &text));
        let mut vars = Vars::default();
        let mut unwritable = Vec::new();
        for name in managed() {
            let about = described
                .as_ref()
                .map(|all| all.get(name).copied().unwrap_or_default());
            if let Some(problem) = about.and_then(|a| a.problem) {
                unwritable.push(Unwritable { name, problem });
            }
            let value = match std::env::var(name) {
                Ok(value) => value,
                Err(std::env::VarError::NotPresent) => continue,
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(Error::failure(format!(
                        "{name} holds bytes that are not UTF-8, which the shell integration \
                         cannot save and restore; unset it (or set it to plain text) and try \
                         again"
                    )));
                }
            };
            // Without a description (a script from an older `init`) everything the
            // binary sees was exported.
            let scope = match about {
                Some(about) if about.universal => Scope::Universal,
                Some(about) if !about.exported => Scope::Unexported,
                _ => Scope::Exported,
            };
            vars.0.insert(name, Var { value, scope });
        }
        Ok((vars, unwritable))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|var| var.value.as_str())
    }

    /// Sets and exports.
    pub fn set(&mut self, name: &'static str, value: impl Into<String>) {
        self.set_scoped(name, value, Scope::Exported);
    }

    pub fn set_scoped(&mut self, name: &'static str, value: impl Into<String>, scope: Scope) {
        let value = value.into();
        self.0.insert(name, Var { value, scope });
    }

    pub fn remove(&mut self, name: &str) {
        self.0.remove(name);
    }

    /// Whether some shell's reservation is described here.
    pub fn has_layer(&self) -> bool {
        [GPUS, OWNER_PID, RESTORE]
            .iter()
            .any(|name| self.0.contains_key(name))
    }

    pub fn holder(&self) -> Option<u32> {
        parse_number(self.get(OWNER_PID)?).filter(|&pid| pid > 0)
    }

    /// The ids in `CANHAZGPU_GPUS`; empty when unset or malformed.
    pub fn gpus(&self) -> Vec<u32> {
        self.get(GPUS).and_then(parse_ids).unwrap_or_default()
    }

    /// The layer's GPUs as its device lists name them.
    pub fn devices(&self) -> Vec<Device> {
        gpu_env::decode_names(&self.gpus(), self.get(DEVICES))
    }

    pub fn expires(&self) -> Option<Timestamp> {
        parse_number(self.get(EXPIRES)?)
    }

    /// The store of the top layer, when it is not the default one.
    pub fn store(&self) -> Option<&str> {
        self.get(STORE).filter(|url| !url.is_empty())
    }

    /// Each layer's store, top first.
    pub fn layer_stores(&self) -> Vec<Option<String>> {
        let mut stores = Vec::new();
        let mut vars = self.clone();
        while vars.has_layer() && stores.len() < MAX_LAYERS {
            stores.push(vars.store().map(str::to_string));
            vars = vars.pop().0;
        }
        stores
    }

    /// A new layer for `holder` on top of these variables; `hold` fills in the GPUs.
    pub fn push_layer(&self, holder: u32, store: Option<&str>) -> Vars {
        let mut layer = self.clone();
        layer.set(RESTORE, self.snapshot().to_string());
        layer.set(OWNER_PID, holder.to_string());
        layer.set(LEASE, "");
        match store {
            Some(url) => layer.set(STORE, url),
            None => layer.remove(STORE),
        }
        // `hold` sets the device variables afresh for a layer that holds nothing yet.
        for name in [GPUS, DEVICES, EXPIRES] {
            layer.remove(name);
        }
        layer
    }

    /// Makes the layer say it holds `holding`, naming GPUs new to it with `name`. The
    /// device lists are edited as [`gpu_env::shell_update`] says: what the user left in
    /// them stays in its place.
    pub fn hold(&mut self, holding: &Holding, name: &dyn Fn(u32) -> Device) {
        let (kept, removed): (Vec<Device>, Vec<Device>) = self
            .devices()
            .into_iter()
            .partition(|device| holding.ids.contains(&device.id));
        let mut added: Vec<Device> = holding
            .ids
            .iter()
            .filter(|&&id| !kept.iter().any(|device| device.id == id))
            .map(|&id| name(id))
            .collect();
        added.sort_by_key(|device| device.id);
        added.dedup_by_key(|device| device.id);
        // A new layer: the lists the user had are not this layer's to edit (they come back
        // at release), but only the variables of the vendor it holds are touched.
        if self.gpus().is_empty() {
            for (name, _) in gpu_env::environment(&added) {
                self.remove(name);
            }
        }
        let update = gpu_env::shell_update(|n| self.get(n), &kept, &removed, &added);
        for (variable, value) in update {
            match value {
                Some(value) => self.set(variable, value),
                None => self.remove(variable),
            }
        }
        let held: Vec<Device> = kept.into_iter().chain(added).collect();
        let ids: Vec<u32> = held.iter().map(|device| device.id).collect();
        self.set(GPUS, gpu_env::id_list(&ids));
        match gpu_env::encode_names(&held) {
            Some(names) => self.set(DEVICES, names),
            None => self.remove(DEVICES),
        }
        match holding.expires {
            Some(t) => self.set(EXPIRES, t.to_string()),
            None => self.remove(EXPIRES),
        }
    }

    /// The variables as they were before this layer, and whether they could be restored
    /// exactly (an unreadable snapshot clears the layer and keeps `CUDA_DEVICE_ORDER`).
    pub fn pop(&self) -> (Vars, bool) {
        let snapshot = self
            .get(RESTORE)
            .and_then(|text| serde_json::from_str::<Value>(text).ok());
        let Some(Value::Object(map)) = snapshot else {
            let mut cleared = self.clone();
            for name in managed() {
                if name != gpu_env::CUDA_DEVICE_ORDER {
                    cleared.remove(name);
                }
            }
            return (cleared, false);
        };
        let mut before = Vars::default();
        for name in managed() {
            match map.get(name) {
                Some(Value::String(s)) => before.set(name, s.clone()),
                // The previous snapshot is kept as an object so that nesting grows the
                // variable linearly rather than by doubling escapes.
                Some(object @ Value::Object(_)) if name == RESTORE => {
                    before.set(name, object.to_string())
                }
                Some(Value::Object(var)) => {
                    let value = var.get("value").and_then(Value::as_str).unwrap_or("");
                    match var.get("scope").and_then(Value::as_str) {
                        Some("unexported") => before.set_scoped(name, value, Scope::Unexported),
                        Some("universal") => before.set_scoped(name, value, Scope::Universal),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        (before, true)
    }

    fn snapshot(&self) -> Value {
        let mut map = Map::new();
        for (&name, var) in &self.0 {
            let scope = match var.scope {
                Scope::Exported => None,
                Scope::Unexported => Some("unexported"),
                Scope::Universal => Some("universal"),
            };
            let value = match (scope, serde_json::from_str::<Value>(&var.value)) {
                (Some(scope), _) => serde_json::json!({ "scope": scope, "value": var.value }),
                (None, Ok(object @ Value::Object(_))) if name == RESTORE => object,
                (None, _) => Value::String(var.value.clone()),
            };
            map.insert(name.to_string(), value);
        }
        Value::Object(map)
    }

    /// Writes the statements that turn `self` into `to`, leaving out the variables
    /// `unwritable` names (their assignment would fail or mean something else).
    pub fn write_changes(&self, to: &Vars, unwritable: &[Unwritable], script: &mut Script) {
        for name in managed() {
            if unwritable.iter().any(|u| u.name == name) {
                continue;
            }
            match (self.0.get(name), to.0.get(name)) {
                (old, Some(new)) if old != Some(new) => match new.scope {
                    Scope::Exported => script.export(name, &new.value),
                    Scope::Unexported => script.set_unexported(name, &new.value),
                    Scope::Universal => script.unset(name),
                },
                (Some(_), None) => script.unset(name),
                _ => {}
            }
        }
    }

    /// Takes off every layer whose GPUs are gone, top first, and brings the remaining
    /// top layer up to date with what its holder still has. `fate` is asked about each
    /// layer: its holder (if readable) and the layer itself; `name` names GPUs the
    /// holder has that the layer did not list yet.
    pub fn settle(
        &self,
        mut fate: impl FnMut(Option<u32>, &Vars) -> Fate,
        name: &dyn Fn(u32) -> Device,
    ) -> (Vars, Vec<Lost>) {
        let mut vars = self.clone();
        let mut lost = Vec::new();
        for _ in 0..MAX_LAYERS {
            if !vars.has_layer() {
                break;
            }
            let holder = vars.holder();
            let mut reasons = match fate(holder, &vars) {
                Fate::Holds(holding) if !holding.ids.is_empty() => {
                    if !holding.lost.is_empty() {
                        lost.push(Lost {
                            holder,
                            ended: group(holding.lost.clone()),
                            kept: holding.ids.clone(),
                            restored: true,
                        });
                    }
                    vars.hold(&holding, name);
                    return (vars, lost);
                }
                Fate::Holds(holding) => holding.lost,
                Fate::Ended(why) => vars
                    .gpus()
                    .into_iter()
                    .map(|id| (id, why.clone()))
                    .collect(),
            };
            if reasons.is_empty() {
                reasons = vars
                    .gpus()
                    .into_iter()
                    .map(|id| (id, Ending::Released))
                    .collect();
            }
            let (before, restored) = vars.pop();
            lost.push(Lost {
                holder,
                ended: group(reasons),
                kept: Vec::new(),
                restored,
            });
            vars = before;
        }
        (vars, lost)
    }
}

/// Reasons per GPU, grouped by reason in the order they first appear.
fn group(reasons: Vec<(u32, Ending)>) -> Vec<(Ending, Vec<u32>)> {
    let mut groups: Vec<(Ending, Vec<u32>)> = Vec::new();
    for (id, why) in reasons {
        match groups.iter_mut().find(|(known, _)| *known == why) {
            Some((_, ids)) => ids.push(id),
            None => groups.push((why, vec![id])),
        }
    }
    groups
}

/// A non-negative decimal number as the shells print them; nothing else.
fn parse_number<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `1,5,2`.
pub fn parse_ids(text: &str) -> Option<Vec<u32>> {
    text.split(',').map(parse_number).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu_env::PCI_BUS_ID;
    use crate::gpu_env::{CUDA_DEVICE_ORDER, CUDA_VISIBLE_DEVICES, NVIDIA_VISIBLE_DEVICES};
    use crate::gpu_env::{HIP_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES, Scheme};

    fn vars(pairs: &[(&'static str, &str)]) -> Vars {
        let mut vars = Vars::default();
        for &(name, value) in pairs {
            vars.set(name, value);
        }
        vars
    }

    fn holding(ids: &[u32], expires: i64) -> Holding {
        Holding {
            ids: ids.to_vec(),
            expires: Some(expires),
            lost: Vec::new(),
        }
    }

    fn index(id: u32) -> Device {
        Device::by_index(id)
    }

    fn uuid(id: u32) -> Device {
        Device {
            name: format!("GPU-{id}"),
            ..Device::by_index(id)
        }
    }

    #[test]
    fn layer_round_trip_restores_what_was_there() {
        let mut before = vars(&[(CUDA_VISIBLE_DEVICES, "7")]);
        before.set_scoped(CUDA_DEVICE_ORDER, "FASTEST_FIRST", Scope::Unexported);
        let mut layer = before.push_layer(42, None);
        layer.hold(&holding(&[1, 5], 100), &index);
        assert_eq!(layer.get(CUDA_VISIBLE_DEVICES), Some("1,5"));
        assert_eq!(layer.get(NVIDIA_VISIBLE_DEVICES), Some("1,5"));
        assert_eq!(layer.get(GPUS), Some("1,5"));
        assert_eq!(layer.get(DEVICES), None);
        assert_eq!(layer.get(EXPIRES), Some("100"));
        assert_eq!(layer.get(OWNER_PID), Some("42"));
        // One rule: PCI order while GPUs are held, the user's order afterwards.
        assert_eq!(layer.get(CUDA_DEVICE_ORDER), Some(PCI_BUS_ID));
        assert_eq!(layer.pop(), (before, true));
    }

    #[test]
    fn unexported_and_universal_variables_come_back_as_they_were() {
        let mut before = Vars::default();
        before.set_scoped(CUDA_VISIBLE_DEVICES, "3", Scope::Unexported);
        before.set_scoped(NVIDIA_VISIBLE_DEVICES, "all", Scope::Universal);
        let mut layer = before.push_layer(42, None);
        layer.hold(&holding(&[0], 100), &index);
        let (after, exact) = layer.pop();
        assert!(exact);
        assert_eq!(after, before);
        let mut script = Script::new(Shell::Fish);
        layer.write_changes(&after, &[], &mut script);
        let text = script.finish();
        assert!(
            text.contains("set -gu CUDA_VISIBLE_DEVICES '3'\n"),
            "{text}"
        );
        // The universal shows through once the global copy is gone.
        assert!(
            text.contains(
                "set -q -g NVIDIA_VISIBLE_DEVICES; and set -e -g NVIDIA_VISIBLE_DEVICES\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn unset_variables_come_back_unset() {
        let before = Vars::default();
        let mut layer = before.push_layer(42, Some("file:///elsewhere"));
        layer.hold(&holding(&[0], 1), &uuid);
        assert_eq!(layer.get(LEASE), Some(""));
        assert_eq!(layer.get(CUDA_VISIBLE_DEVICES), Some("GPU-0"));
        assert_eq!(layer.get(DEVICES), Some("GPU-0"));
        assert_eq!(layer.store(), Some("file:///elsewhere"));
        let mut script = Script::new(Shell::Bash);
        layer.write_changes(&before, &[], &mut script);
        let text = script.finish();
        for name in managed().filter(|name| layer.get(name).is_some()) {
            assert!(text.contains(&format!("unset {name}\n")), "{text}");
        }
        // An NVIDIA layer leaves AMD's variables alone.
        assert_eq!(layer.get(ROCR_VISIBLE_DEVICES), None);
    }

    #[test]
    fn unwritable_variables_are_left_alone() {
        let before = Vars::default();
        let mut layer = before.push_layer(42, None);
        layer.hold(&holding(&[0], 1), &index);
        let mut script = Script::new(Shell::Bash);
        let locked = [Unwritable {
            name: CUDA_VISIBLE_DEVICES,
            problem: Problem::ReadOnly,
        }];
        before.write_changes(&layer, &locked, &mut script);
        let text = script.finish();
        assert!(!text.contains(CUDA_VISIBLE_DEVICES), "{text}");
        assert!(text.contains("export NVIDIA_VISIBLE_DEVICES=0\n"), "{text}");
    }

    #[test]
    fn adding_keeps_the_order_and_the_narrowing_of_what_is_held() {
        let mut layer = Vars::default().push_layer(1, None);
        layer.hold(&holding(&[5, 1], 100), &index);
        assert_eq!(layer.get(GPUS), Some("1,5"));
        // The user narrows and reorders; a second reserve appends to what is there.
        layer.set(CUDA_VISIBLE_DEVICES, "5");
        layer.set(GPUS, "5,1");
        layer.hold(&holding(&[0, 1, 5], 50), &index);
        assert_eq!(layer.get(CUDA_VISIBLE_DEVICES), Some("5,0"));
        assert_eq!(layer.get(NVIDIA_VISIBLE_DEVICES), Some("1,5,0"));
        assert_eq!(layer.get(GPUS), Some("5,1,0"));
        assert_eq!(layer.get(EXPIRES), Some("50"));
    }

    #[test]
    fn an_amd_layer_names_rocr_and_counts_for_hip_until_released() {
        let amd = |id: u32| Device {
            scheme: Scheme::Rocm,
            ..Device::by_index(id)
        };
        let before = vars(&[(HIP_VISIBLE_DEVICES, "3")]);
        let mut layer = before.push_layer(7, None);
        layer.hold(&holding(&[2, 5], 100), &amd);
        assert_eq!(layer.get(ROCR_VISIBLE_DEVICES), Some("2,5"));
        assert_eq!(layer.get(HIP_VISIBLE_DEVICES), Some("0,1"));
        assert_eq!(layer.get(CUDA_VISIBLE_DEVICES), Some("0,1"));
        assert_eq!(layer.get(CUDA_DEVICE_ORDER), None);
        assert_eq!(layer.get(DEVICES), Some("rocm:2,5"));
        // The user keeps only GPU 5 for HIP; GPU 2 ends: HIP still means GPU 5.
        layer.set(HIP_VISIBLE_DEVICES, "1");
        layer.hold(&holding(&[5], 100), &|_| panic!("no new GPU"));
        assert_eq!(layer.get(ROCR_VISIBLE_DEVICES), Some("5"));
        assert_eq!(layer.get(HIP_VISIBLE_DEVICES), Some("0"));
        assert_eq!(layer.get(DEVICES), Some("rocm:5"));
        assert_eq!(layer.pop(), (before, true));
    }

    #[test]
    fn a_layer_leaves_the_other_vendors_variables_alone() {
        let before = vars(&[
            (ROCR_VISIBLE_DEVICES, "3"),
            (CUDA_DEVICE_ORDER, "FASTEST_FIRST"),
        ]);
        let mut nvidia = before.push_layer(7, None);
        nvidia.hold(&holding(&[1], 100), &index);
        assert_eq!(nvidia.get(ROCR_VISIBLE_DEVICES), Some("3"));
        assert_eq!(nvidia.get(CUDA_DEVICE_ORDER), Some(PCI_BUS_ID));
        let amd = |id: u32| Device {
            scheme: Scheme::Rocm,
            ..Device::by_index(id)
        };
        let mut rocm = before.push_layer(7, None);
        rocm.hold(&holding(&[1], 100), &amd);
        assert_eq!(rocm.get(ROCR_VISIBLE_DEVICES), Some("1"));
        assert_eq!(rocm.get(CUDA_DEVICE_ORDER), Some("FASTEST_FIRST"));
        assert_eq!(rocm.pop(), (before, true));
    }

    #[test]
    fn uuid_names_are_kept_for_the_gpus_that_remain() {
        let mut layer = Vars::default().push_layer(1, None);
        layer.hold(&holding(&[0, 1], 100), &uuid);
        assert_eq!(layer.get(CUDA_VISIBLE_DEVICES), Some("GPU-0,GPU-1"));
        // GPU 0 ends; the namer is not asked about the ones the layer knows.
        layer.hold(&holding(&[1], 100), &|_| panic!("no new GPU"));
        assert_eq!(layer.get(CUDA_VISIBLE_DEVICES), Some("GPU-1"));
        assert_eq!(layer.get(DEVICES), Some("GPU-1"));
    }

    #[test]
    fn nested_layers_pop_one_at_a_time_and_grow_linearly() {
        let mut layer = Vars::default();
        let mut sizes = Vec::new();
        for depth in 0..6u32 {
            layer = layer.push_layer(100 + depth, None);
            layer.hold(&holding(&[depth], 100), &index);
            sizes.push(layer.get(RESTORE).map_or(0, str::len));
        }
        assert!(
            sizes[5] - sizes[4] < 2 * (sizes[2] - sizes[1]) + 64,
            "{sizes:?}"
        );
        assert_eq!(layer.layer_stores().len(), 6);
        for depth in (0..6u32).rev() {
            assert_eq!(layer.holder(), Some(100 + depth));
            assert_eq!(layer.gpus(), vec![depth]);
            layer = layer.pop().0;
        }
        assert_eq!(layer, Vars::default());
    }

    #[test]
    fn older_snapshots_still_restore() {
        let layer = vars(&[
            (CUDA_VISIBLE_DEVICES, "1"),
            (GPUS, "1"),
            (OWNER_PID, "9"),
            (
                RESTORE,
                r#"{"CUDA_VISIBLE_DEVICES":"7","CANHAZGPU_RESTORE":{}}"#,
            ),
        ]);
        let (after, exact) = layer.pop();
        assert!(exact);
        assert_eq!(after, vars(&[(CUDA_VISIBLE_DEVICES, "7"), (RESTORE, "{}")]));
    }

    #[test]
    fn unreadable_snapshot_clears_but_keeps_device_order() {
        let layer = vars(&[
            (CUDA_VISIBLE_DEVICES, "1"),
            (CUDA_DEVICE_ORDER, PCI_BUS_ID),
            (GPUS, "1"),
            (OWNER_PID, "9"),
            (RESTORE, "{broken"),
        ]);
        let (after, exact) = layer.pop();
        assert!(!exact);
        assert_eq!(after, vars(&[(CUDA_DEVICE_ORDER, PCI_BUS_ID)]));
    }

    #[test]
    fn settle_drops_ended_layers_and_updates_the_rest() {
        let mut parent = Vars::default().push_layer(10, None);
        parent.hold(&holding(&[0, 1], 100), &index);
        let mut child = parent.push_layer(20, Some("redis://x"));
        child.hold(&holding(&[2], 100), &index);
        assert_eq!(
            child.layer_stores(),
            vec![Some("redis://x".to_string()), None]
        );

        // The child's reservation expired, the parent lost GPU 1 to an administrator.
        let (after, lost) = child.settle(
            |holder, _| match holder {
                Some(20) => Fate::Ended(Ending::Expired),
                Some(10) => Fate::Holds(Holding {
                    lost: vec![(1, Ending::Reclaimed("root".into()))],
                    ..holding(&[0], 90)
                }),
                _ => panic!("unexpected holder"),
            },
            &index,
        );
        assert_eq!(lost.len(), 2);
        assert_eq!(lost[0].ended, vec![(Ending::Expired, vec![2])]);
        assert!(lost[0].kept.is_empty());
        assert_eq!(
            lost[1].ended,
            vec![(Ending::Reclaimed("root".into()), vec![1])]
        );
        assert_eq!(lost[1].kept, vec![0]);
        assert_eq!(after.get(GPUS), Some("0"));
        assert_eq!(after.get(CUDA_VISIBLE_DEVICES), Some("0"));
        assert_eq!(after.get(EXPIRES), Some("90"));
        assert_eq!(after.holder(), Some(10));

        // Nothing held anywhere: back to the start.
        let (after, lost) = child.settle(|_, _| Fate::Holds(Holding::default()), &index);
        assert_eq!(after, Vars::default());
        assert_eq!(lost.len(), 2);
        assert_eq!(lost[1].ended, vec![(Ending::Released, vec![0, 1])]);
    }

    #[test]
    fn settle_groups_reasons_per_gpu() {
        let mut layer = Vars::default().push_layer(10, None);
        layer.hold(&holding(&[0, 1, 2], 100), &index);
        let (_, lost) = layer.settle(
            |_, _| {
                Fate::Holds(Holding {
                    lost: vec![
                        (0, Ending::Expired),
                        (1, Ending::Released),
                        (2, Ending::Expired),
                    ],
                    ..Holding::default()
                })
            },
            &index,
        );
        assert_eq!(
            lost[0].ended,
            vec![(Ending::Expired, vec![0, 2]), (Ending::Released, vec![1])]
        );
    }

    #[test]
    fn settle_without_layer_asks_nothing() {
        let plain = vars(&[(CUDA_VISIBLE_DEVICES, "3")]);
        let (after, lost) = plain.settle(|_, _| panic!("no layer to judge"), &index);
        assert_eq!(after, plain);
        assert!(lost.is_empty());
    }

    #[test]
    fn numbers_are_strict() {
        assert_eq!(parse_ids("1,5"), Some(vec![1, 5]));
        for bad in ["", "1,", "a", "1;rm", "-1", " 1", "99999999999999999999"] {
            assert_eq!(parse_ids(bad), None, "{bad}");
        }
        assert_eq!(vars(&[(OWNER_PID, "0")]).holder(), None);
        assert_eq!(vars(&[(OWNER_PID, "12x")]).holder(), None);
        assert_eq!(vars(&[(OWNER_PID, "12")]).holder(), Some(12));
    }
}
