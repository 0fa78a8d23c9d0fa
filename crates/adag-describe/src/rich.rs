//! Rich-mode label context: each cluster's top units shown with their own exemplars (reference
//! §7 `rich` mode). The reference fed its labeller up to 20 per-neuron descriptions from
//! Transluce's neuron-description database, sorted by mean attribution with `[+0.0123]`
//! scores; adag has no such database, so a unit's record is what `adag features` wrote for it
//! (its dashboard: top activating contexts over a corpus) and, when given, the description
//! `adag describe-units` wrote from those contexts. The contexts are shown as `describe-units`
//! shows them to its explainer ([`crate::unit::unit_excerpts`]: peak tokens in `{{…}}`), so
//! the labeller sees what each unit responds to outside the circuit's prompts.

use std::collections::BTreeMap;

use adag_analysis::{ClusterState, Profiles};
use serde_json::Value;

use crate::error::{Error, Result};

/// One unit as the labeller sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitContext {
    /// The unit's key in the cluster state, `"layer,index,polarity"`.
    pub key: String,
    /// Mean node attribution over the prompts where the unit is traced.
    pub mean_attribution: f64,
    /// A one-line description of the unit, when one was given.
    pub description: Option<String>,
    /// Its top activating contexts, peak tokens in `{{…}}`, strongest first.
    pub excerpts: Vec<String>,
}

impl UnitContext {
    /// `L2 #117 (+)`: layer, index and the sign the circuit uses.
    pub fn name(&self) -> String {
        let mut it = self.key.split(',');
        let (l, i, p) = (
            it.next().unwrap_or("?"),
            it.next().unwrap_or("?"),
            it.next().unwrap_or("?"),
        );
        let sign = match p {
            "1" => "+",
            "-1" => "−",
            _ => "0",
        };
        format!("L{l} #{i} ({sign})")
    }
}

/// How many units and contexts per cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RichOptions {
    /// Units per cluster, most |mean attribution| first (the reference: up to 20).
    pub units: usize,
    /// Top activating contexts per unit.
    pub excerpts: usize,
}

impl Default for RichOptions {
    fn default() -> Self {
        RichOptions {
            units: 10,
            excerpts: 3,
        }
    }
}

/// What [`unit_contexts`] found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RichContexts {
    /// Cluster id → its units with exemplars, most |mean attribution| first.
    pub by_cluster: BTreeMap<String, Vec<UnitContext>>,
    /// Units looked up that the dashboards do not have (or that were never active on their
    /// corpus), as keys.
    pub missing: Vec<String>,
}

/// Each cluster's members ranked by |mean attribution| (the mean over the prompts of
/// `profiles` where the unit is traced; ties: unit order), with that mean.
pub fn ranked_members(
    state: &ClusterState,
    profiles: &Profiles,
) -> BTreeMap<String, Vec<(String, f64)>> {
    let mut sum: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for p in &profiles.prompts {
        for u in &p.units {
            let e = sum.entry(profiles.units[u.unit].key()).or_default();
            e.0 += u.attribution as f64;
            e.1 += 1;
        }
    }
    state
        .clusters
        .iter()
        .map(|c| {
            let mut units: Vec<(String, f64)> = c
                .units
                .iter()
                .map(|u| {
                    let (s, n) = sum.get(u).copied().unwrap_or((0.0, 0));
                    (u.clone(), if n > 0 { s / n as f64 } else { 0.0 })
                })
                .collect();
            units.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
            (c.id.clone(), units)
        })
        .collect()
}

/// The top units of every cluster with their dashboard exemplars. `lookup(layer, index)`
/// returns the unit's dashboard record (`None` when the dashboards lack it); `descriptions`
/// maps `(layer, index)` to a description. A unit without a record, or whose record has no
/// active example, is skipped (listed in [`RichContexts::missing`]) and the next one is taken.
pub fn unit_contexts(
    state: &ClusterState,
    profiles: &Profiles,
    opts: &RichOptions,
    descriptions: &BTreeMap<(usize, usize), String>,
    lookup: &mut dyn FnMut(usize, usize) -> Result<Option<Value>>,
) -> Result<RichContexts> {
    let mut out = RichContexts::default();
    for (id, units) in ranked_members(state, profiles) {
        let mut got = Vec::new();
        for (key, mean) in units {
            if got.len() >= opts.units {
                break;
            }
            let mut it = key.split(',').map(str::parse::<usize>);
            let (Some(Ok(layer)), Some(Ok(index))) = (it.next(), it.next()) else {
                return Err(Error::Input(format!(
                    "cluster {id}: unit key {key:?} is not \"layer,index,polarity\""
                )));
            };
            let excerpts = match lookup(layer, index)? {
                Some(detail) => crate::unit::unit_excerpts(&detail, opts.excerpts).ok(),
                None => None,
            };
            let Some(excerpts) = excerpts else {
                out.missing.push(key);
                continue;
            };
            got.push(UnitContext {
                key,
                mean_attribution: mean,
                description: descriptions.get(&(layer, index)).cloned(),
                excerpts,
            });
        }
        out.by_cluster.insert(id, got);
    }
    Ok(out)
}

/// Reads the `(layer, index) → description` map from the JSON `adag describe-units --out`
/// writes (`[{"layer", "index", "description", …}]`).
pub fn read_unit_descriptions(
    bytes: &[u8],
    what: &str,
) -> Result<BTreeMap<(usize, usize), String>> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::Input(format!("{what}: not JSON: {e}")))?;
    let rows = v.as_array().ok_or_else(|| {
        Error::Input(format!(
            "{what}: expected a list of {{layer, index, description}} (what `adag describe-units --out` writes)"
        ))
    })?;
    let mut out = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        let (Some(l), Some(x), Some(d)) = (
            r["layer"].as_u64(),
            r["index"].as_u64(),
            r["description"].as_str(),
        ) else {
            return Err(Error::Input(format!(
                "{what}: entry {i} lacks a whole-number layer and index and a description string"
            )));
        };
        out.insert((l as usize, x as usize), d.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name shows layer, index and the sign the circuit uses.
    #[test]
    fn unit_names_carry_their_sign() {
        let u = |key: &str| UnitContext {
            key: key.into(),
            mean_attribution: 0.0,
            description: None,
            excerpts: vec![],
        };
        assert_eq!(u("2,349,1").name(), "L2 #349 (+)");
        assert_eq!(u("0,7,-1").name(), "L0 #7 (−)");
    }

    /// `describe-units --out` JSON reads back; a malformed file names the file and entry.
    #[test]
    fn unit_descriptions_read_and_reject_bad_files() {
        let ok = br#"[{"layer": 2, "index": 349, "description": "the word is", "excerpts": []}]"#;
        let m = read_unit_descriptions(ok, "u.json").unwrap();
        assert_eq!(m[&(2, 349)], "the word is");
        let e = read_unit_descriptions(br#"[{"layer": 2}]"#, "u.json").unwrap_err();
        assert!(e.to_string().contains("u.json: entry 0 lacks"), "{e}");
        let e = read_unit_descriptions(b"{}", "u.json").unwrap_err();
        assert!(e.to_string().contains("expected a list"), "{e}");
        let e = read_unit_descriptions(b"nope", "u.json").unwrap_err();
        assert!(e.to_string().contains("u.json: not JSON"), "{e}");
    }
}
