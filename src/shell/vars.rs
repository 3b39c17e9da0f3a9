//! The environment variables that describe what a shell holds, and how they stack.
//!
//! A shell that reserves gets a *layer*: `CUDA_VISIBLE_DEVICES`, `NVIDIA_VISIBLE_DEVICES`,
//! `CUDA_DEVICE_ORDER` and
//! the `CANHAZGPU_*` variables, plus `CANHAZGPU_RESTORE`, a JSON snapshot of all of them
//! as they were before. Release puts the snapshot back. Because the snapshot includes the
//! previous `CANHAZGPU_RESTORE`, a nested shell that reserves on top of GPUs it inherited
//! gets back exactly its parent's variables when it releases.
//!
//! Everything here is pure: the store and the process tree come in through closures, so
//! the rules can be tested without either.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::emit::Script;
use crate::error::{Error, Result};
use crate::model::Timestamp;

pub const CUDA_VISIBLE_DEVICES: &str = "CUDA_VISIBLE_DEVICES";
/// What container runtimes (nvidia-container-toolkit) read instead.
pub const NVIDIA_VISIBLE_DEVICES: &str = "NVIDIA_VISIBLE_DEVICES";
pub const CUDA_DEVICE_ORDER: &str = "CUDA_DEVICE_ORDER";
/// The ids this shell holds, in `CUDA_VISIBLE_DEVICES` order.
pub const GPUS: &str = "CANHAZGPU_GPUS";
/// Unix time at which the first of them expires.
pub const EXPIRES: &str = "CANHAZGPU_EXPIRES";
/// The shell that holds them.
pub const OWNER_PID: &str = "CANHAZGPU_OWNER_PID";
/// Marker file whose disappearance tells the prompt hook to check the store.
pub const LEASE: &str = "CANHAZGPU_LEASE";
/// The variables as they were before this layer.
pub const RESTORE: &str = "CANHAZGPU_RESTORE";

pub const MANAGED: [&str; 8] = [
    CUDA_VISIBLE_DEVICES,
    NVIDIA_VISIBLE_DEVICES,
    CUDA_DEVICE_ORDER,
    GPUS,
    EXPIRES,
    OWNER_PID,
    LEASE,
    RESTORE,
];

/// NVML and nvidia-smi number GPUs in PCI order; CUDA's default is fastest first.
pub const PCI_BUS_ID: &str = "PCI_BUS_ID";

/// Nesting deeper than this is a loop, not a person.
const MAX_LAYERS: usize = 64;

/// The managed variables of one shell (absent means unset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vars(BTreeMap<&'static str, String>);

/// What the store says a holder has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    pub ids: Vec<u32>,
    /// The earliest expiry among them.
    pub expires: Option<Timestamp>,
}

/// Why a layer's GPUs are gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Expired,
    /// Released from elsewhere, or reclaimed.
    Released,
    /// The shell that held them is gone.
    HolderGone,
    /// Inherited from a shell that is not an ancestor (a tmux server started there).
    NotAncestor,
    /// `CANHAZGPU_OWNER_PID` is not a PID.
    Unreadable,
}

pub enum Fate {
    Holds(Holding),
    Ended(Ending),
}

/// A layer `settle` took off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub holder: Option<u32>,
    pub ids: Vec<u32>,
    pub why: Ending,
    /// False when `CANHAZGPU_RESTORE` was unreadable and the variables were cleared
    /// instead of restored.
    pub restored: bool,
}

impl Vars {
    /// This process's environment, which the shell passed down.
    pub fn from_env() -> Result<Vars> {
        let mut vars = Vars::default();
        for name in MANAGED {
            match std::env::var(name) {
                Ok(value) => vars.set(name, value),
                Err(std::env::VarError::NotPresent) => {}
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(Error::failure(format!(
                        "{name} holds bytes that are not UTF-8, which the shell integration cannot save and restore; unset it (or set it to plain text) and try again"
                    )));
                }
            }
        }
        Ok(vars)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn set(&mut self, name: &'static str, value: impl Into<String>) {
        self.0.insert(name, value.into());
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

    pub fn expires(&self) -> Option<Timestamp> {
        parse_number(self.get(EXPIRES)?)
    }

    /// A new layer for `holder` on top of these variables; `hold` fills in the GPUs.
    pub fn push_layer(&self, holder: u32, lease: Option<&str>) -> Vars {
        let mut layer = self.clone();
        layer.set(RESTORE, self.snapshot().to_string());
        layer.set(OWNER_PID, holder.to_string());
        // Respect an order the user chose; otherwise make ids mean what NVML says.
        if self.get(CUDA_DEVICE_ORDER).is_none() {
            layer.set(CUDA_DEVICE_ORDER, PCI_BUS_ID);
        }
        layer.set(LEASE, lease.unwrap_or(""));
        layer.remove(GPUS);
        layer.remove(EXPIRES);
        layer
    }

    /// Makes the layer say it holds `holding`. Ids it already listed keep their places,
    /// so `cuda:0` keeps meaning the same GPU when a second `reserve` adds more.
    pub fn hold(&mut self, holding: &Holding) {
        let mut order: Vec<u32> = self
            .gpus()
            .into_iter()
            .filter(|id| holding.ids.contains(id))
            .collect();
        let mut rest: Vec<u32> = holding
            .ids
            .iter()
            .copied()
            .filter(|id| !order.contains(id))
            .collect();
        rest.sort_unstable();
        order.extend(rest);
        let list = crate::commands::cuda_list(&order);
        self.set(CUDA_VISIBLE_DEVICES, list.clone());
        self.set(NVIDIA_VISIBLE_DEVICES, list.clone());
        self.set(GPUS, list);
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
            for name in MANAGED {
                if name != CUDA_DEVICE_ORDER {
                    cleared.remove(name);
                }
            }
            return (cleared, false);
        };
        let mut before = Vars::default();
        for name in MANAGED {
            match map.get(name) {
                Some(Value::String(s)) => before.set(name, s.clone()),
                // The previous snapshot is kept as an object so that nesting grows the
                // variable linearly rather than by doubling escapes.
                Some(object @ Value::Object(_)) if name == RESTORE => {
                    before.set(name, object.to_string())
                }
                _ => {}
            }
        }
        (before, true)
    }

    fn snapshot(&self) -> Value {
        let mut map = Map::new();
        for (&name, value) in &self.0 {
            let value = match serde_json::from_str::<Value>(value) {
                Ok(object @ Value::Object(_)) if name == RESTORE => object,
                _ => Value::String(value.clone()),
            };
            map.insert(name.to_string(), value);
        }
        Value::Object(map)
    }

    /// Writes the statements that turn `self` into `to`.
    pub fn write_changes(&self, to: &Vars, script: &mut Script) {
        for name in MANAGED {
            match (self.get(name), to.get(name)) {
                (old, Some(new)) if old != Some(new) => script.export(name, new),
                (Some(_), None) => script.unset(name),
                _ => {}
            }
        }
    }

    /// Takes off every layer whose GPUs are gone, top first, and brings the remaining
    /// top layer up to date with what its holder still has. `fate` is asked about each
    /// layer: its holder (if readable) and the layer itself.
    pub fn settle(&self, mut fate: impl FnMut(Option<u32>, &Vars) -> Fate) -> (Vars, Vec<Dropped>) {
        let mut vars = self.clone();
        let mut dropped = Vec::new();
        for _ in 0..MAX_LAYERS {
            if !vars.has_layer() {
                break;
            }
            let holder = vars.holder();
            let why = match fate(holder, &vars) {
                Fate::Holds(holding) if !holding.ids.is_empty() => {
                    vars.hold(&holding);
                    return (vars, dropped);
                }
                Fate::Holds(_) => Ending::Released,
                Fate::Ended(why) => why,
            };
            let (before, restored) = vars.pop();
            dropped.push(Dropped {
                holder,
                ids: vars.gpus(),
                why,
                restored,
            });
            vars = before;
        }
        (vars, dropped)
    }
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
    use crate::shell::Shell;

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
        }
    }

    #[test]
    fn layer_round_trip_restores_what_was_there() {
        let before = vars(&[
            (CUDA_VISIBLE_DEVICES, "7"),
            ("CUDA_DEVICE_ORDER", "FASTEST_FIRST"),
        ]);
        let mut layer = before.push_layer(42, Some("/run/x/42-1"));
        layer.hold(&holding(&[1, 5], 100));
        assert_eq!(layer.get(CUDA_VISIBLE_DEVICES), Some("1,5"));
        assert_eq!(layer.get(NVIDIA_VISIBLE_DEVICES), Some("1,5"));
        assert_eq!(layer.get(GPUS), Some("1,5"));
        assert_eq!(layer.get(EXPIRES), Some("100"));
        assert_eq!(layer.get(OWNER_PID), Some("42"));
        assert_eq!(layer.get(CUDA_DEVICE_ORDER), Some("FASTEST_FIRST"));
        assert_eq!(layer.pop(), (before, true));
    }

    #[test]
    fn unset_variables_come_back_unset() {
        let before = Vars::default();
        let mut layer = before.push_layer(42, None);
        layer.hold(&holding(&[0], 1));
        assert_eq!(layer.get(CUDA_DEVICE_ORDER), Some(PCI_BUS_ID));
        assert_eq!(layer.get(LEASE), Some(""));
        let mut script = Script::new(Shell::Bash);
        layer.write_changes(&before, &mut script);
        let text = script.finish();
        for name in MANAGED {
            assert!(text.contains(&format!("unset {name}\n")), "{text}");
        }
    }

    #[test]
    fn adding_keeps_the_order_of_what_is_held() {
        let mut layer = Vars::default().push_layer(1, None);
        layer.hold(&holding(&[5, 1], 100));
        assert_eq!(layer.get(GPUS), Some("1,5"));
        layer.set(GPUS, "5,1");
        layer.hold(&holding(&[0, 1, 5], 50));
        assert_eq!(layer.get(CUDA_VISIBLE_DEVICES), Some("5,1,0"));
        assert_eq!(layer.get(EXPIRES), Some("50"));
    }

    #[test]
    fn nested_layers_pop_one_at_a_time_and_grow_linearly() {
        let mut layer = Vars::default();
        let mut sizes = Vec::new();
        for depth in 0..6u32 {
            layer = layer.push_layer(100 + depth, None);
            layer.hold(&holding(&[depth], 100));
            sizes.push(layer.get(RESTORE).map_or(0, str::len));
        }
        assert!(
            sizes[5] - sizes[4] < 2 * (sizes[2] - sizes[1]) + 64,
            "{sizes:?}"
        );
        for depth in (0..6u32).rev() {
            assert_eq!(layer.holder(), Some(100 + depth));
            assert_eq!(layer.gpus(), vec![depth]);
            layer = layer.pop().0;
        }
        assert_eq!(layer, Vars::default());
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
        parent.hold(&holding(&[0, 1], 100));
        let mut child = parent.push_layer(20, None);
        child.hold(&holding(&[2], 100));

        // The child's reservation is gone, the parent lost GPU 1.
        let (after, dropped) = child.settle(|holder, _| match holder {
            Some(20) => Fate::Ended(Ending::Expired),
            Some(10) => Fate::Holds(holding(&[0], 90)),
            _ => panic!("unexpected holder"),
        });
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].ids, vec![2]);
        assert_eq!(dropped[0].why, Ending::Expired);
        assert_eq!(after.get(GPUS), Some("0"));
        assert_eq!(after.get(EXPIRES), Some("90"));
        assert_eq!(after.holder(), Some(10));

        // Nothing held anywhere: back to the start.
        let (after, dropped) = child.settle(|_, _| Fate::Holds(holding(&[], 0)));
        assert_eq!(after, Vars::default());
        assert_eq!(dropped.len(), 2);
        assert!(dropped.iter().all(|d| d.why == Ending::Released));
    }

    #[test]
    fn settle_without_layer_asks_nothing() {
        let plain = vars(&[(CUDA_VISIBLE_DEVICES, "3")]);
        let (after, dropped) = plain.settle(|_, _| panic!("no layer to judge"));
        assert_eq!(after, plain);
        assert!(dropped.is_empty());
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
