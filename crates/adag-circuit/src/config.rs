//! Run configuration: the reference's `prep.py` YAML keys, with CLI overrides.
//!
//! # Keys
//!
//! A run config is a YAML map. Keys may use `_` or `-` (`batch_size` = `batch-size`), as in the
//! reference, and each key has a CLI flag of the same name (`--batch-size`) that overrides it.
//! Unknown keys are errors.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `dataset` | required | dataset file (JSONL, CSV or YAML; see [`crate::dataset`]) |
//! | `output_path` | required | circuit directory to write (see [`crate::store`]) |
//! | `model` | required | HuggingFace model: a local directory, a hub id `org/name[@rev]` or `hf://org/name[/subdir][@rev]` (resolved by the CLI like `--model`) |
//! | `model_id` | from `model` | the HF id the model-specific choices key on (`meta-llama/Llama-3.1-8B-Instruct`: stripped chat template and the blacklist); by default detected from the model path and config.json's `_name_or_path` |
//! | `percentage_threshold` | 0.005 | keep neurons with \|A\| ≥ this · \|goal\| |
//! | `edge_threshold` | 0.01 | drop edges with \|w\| below this |
//! | `k` | 5 | number of top-k targets when no answers are given |
//! | `batch_size` | 1 | prompts per traced batch (also the unit of resume) |
//! | `apply_blacklist` / `no_apply_blacklist` | true | mask the model's known blacklist (Llama-3.1-8B-Instruct only) |
//! | `blacklist` | [] | extra neurons to mask: `"L23/306"` strings or `[23, 306]` pairs (applied whatever `apply_blacklist` says) |
//! | `rule` | `half_rule` | MLP linearisation: `half_rule`, `no_half_rule`, `stop_gate` |
//! | `use_relp_grad` / `disable_half_rule` | true / false | the reference's spelling of `rule` (`use_relp_grad: false` = `stop_gate`) |
//! | `center_logits` | false | subtract the mean logit from each target |
//! | `keep_bos` / `ignore_bos` | false / true | keep nodes at position 0 in the outputs |
//! | `system_prompt` | none | system message before every prompt |
//! | `seed_response` | none | seed for items that have none |
//! | `true_answers` | none | one answer (or list) per prompt, parallel to the dataset; overrides items' `answers` |
//! | `use_chat_format` | true | use the chat template when the tokenizer has one |
//! | `dtype` | `f32` | `f32`, `bf16`, `f16` |
//! | `device` | `cpu` | `cpu`, `cuda` |
//! | `shard` | from SLURM | `I/N`: trace the I-th of N contiguous parts (0-based) |
//! | `verbose` | false | accepted for compatibility with the reference's configs; ignored |
//! | `gpus_per_model` | 1 | the reference's model splitting; only 1 is accepted (use shards) |
//!
//! Relative paths in a config file are relative to the file's directory (so a config moves with
//! its dataset); relative paths given as flags are relative to the working directory. A `model`
//! that is a hub reference ([`is_hub_reference`]) and not a folder next to the config is kept
//! as written, so `model: meta-llama/Llama-3.1-8B-Instruct` is fetched from the hub rather than
//! looked for as `<config dir>/meta-llama/Llama-3.1-8B-Instruct`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the gated MLP is linearised in the backward pass (mirrors the engine's `RelpRule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// RelP with the half rule (the reference's default).
    HalfRule,
    /// RelP without the half rule (`disable_half_rule`).
    NoHalfRule,
    /// The whole gate activation frozen (`use_relp_grad: false`).
    StopGate,
}

impl std::str::FromStr for Rule {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Rule, String> {
        match s.replace('-', "_").as_str() {
            "half_rule" => Ok(Rule::HalfRule),
            "no_half_rule" => Ok(Rule::NoHalfRule),
            "stop_gate" => Ok(Rule::StopGate),
            _ => Err(format!(
                "unknown rule `{s}`; expected half_rule, no_half_rule or stop_gate"
            )),
        }
    }
}

/// A config file or command line as written: every key optional.
///
/// [`RunConfig::merge`] lays the command line over the file; [`RunConfig::resolve`] applies
/// defaults and checks consistency.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // the keys are documented in the module's table
pub struct RunConfig {
    pub dataset: Option<PathBuf>,
    pub output_path: Option<PathBuf>,
    pub model: Option<PathBuf>,
    pub model_id: Option<String>,
    pub percentage_threshold: Option<f32>,
    pub edge_threshold: Option<f32>,
    pub k: Option<usize>,
    pub batch_size: Option<usize>,
    pub apply_blacklist: Option<bool>,
    pub no_apply_blacklist: Option<bool>,
    pub blacklist: Option<Vec<BlacklistEntry>>,
    pub rule: Option<Rule>,
    pub use_relp_grad: Option<bool>,
    pub disable_half_rule: Option<bool>,
    pub center_logits: Option<bool>,
    pub keep_bos: Option<bool>,
    pub ignore_bos: Option<bool>,
    pub system_prompt: Option<String>,
    pub seed_response: Option<String>,
    pub true_answers: Option<Vec<Answers>>,
    pub use_chat_format: Option<bool>,
    pub dtype: Option<String>,
    pub device: Option<String>,
    pub shard: Option<String>,
    pub verbose: Option<bool>,
}

/// A blacklist entry: `"L23/306"` or `[23, 306]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BlacklistEntry {
    /// `[layer, neuron]`.
    Pair(usize, u32),
    /// `"L23/306"` (or `"23/306"`).
    Text(String),
}

impl BlacklistEntry {
    /// The (layer, neuron) pair.
    pub fn pair(&self) -> std::result::Result<(usize, u32), String> {
        match self {
            BlacklistEntry::Pair(l, n) => Ok((*l, *n)),
            BlacklistEntry::Text(s) => {
                let t = s.trim().trim_start_matches(['L', 'l']);
                let (l, n) = t
                    .split_once('/')
                    .ok_or_else(|| format!("`{s}`: expected LAYER/NEURON, e.g. L23/306"))?;
                Ok((
                    l.trim().parse().map_err(|_| format!("`{s}`: bad layer"))?,
                    n.trim().parse().map_err(|_| format!("`{s}`: bad neuron"))?,
                ))
            }
        }
    }
}

/// One prompt's true answers: a string or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answers {
    /// One answer.
    One(String),
    /// Several answers.
    Many(Vec<String>),
}

impl Answers {
    /// As a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Answers::One(s) => vec![s.clone()],
            Answers::Many(v) => v.clone(),
        }
    }
}

/// A fully resolved run: every setting decided, paths absolute or relative to the working
/// directory. Serialised into the circuit's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)] // see the module's table
pub struct Resolved {
    pub dataset: PathBuf,
    pub output_path: PathBuf,
    pub model: PathBuf,
    pub model_id: Option<String>,
    #[serde(serialize_with = "adag_core::decimal::serialize_f32")]
    pub percentage_threshold: f32,
    #[serde(serialize_with = "adag_core::decimal::serialize_f32")]
    pub edge_threshold: f32,
    pub k: usize,
    pub batch_size: usize,
    pub apply_blacklist: bool,
    /// Extra neurons from the config, always masked (the model's own list is added by the
    /// caller when `apply_blacklist`).
    pub blacklist: Vec<(usize, u32)>,
    pub rule: Rule,
    pub center_logits: bool,
    pub ignore_bos: bool,
    pub system_prompt: Option<String>,
    pub seed_response: Option<String>,
    pub true_answers: Option<Vec<Vec<String>>>,
    pub use_chat_format: bool,
    pub dtype: String,
    pub device: String,
    pub shard: Option<String>,
}

impl Resolved {
    /// Refuses blacklist entries outside the model (`n_layers` layers of `d_mlp` neurons): a
    /// typo would otherwise mask nothing, silently. `source_name` appears in the error.
    pub fn check_blacklist(&self, n_layers: usize, d_mlp: usize, source_name: &str) -> Result<()> {
        match self
            .blacklist
            .iter()
            .find(|&&(l, n)| l >= n_layers || n as usize >= d_mlp)
        {
            Some(&(l, n)) => Err(Error::Config {
                source_name: source_name.into(),
                key: "blacklist".into(),
                message: format!(
                    "neuron L{l}/{n} is outside the model ({n_layers} layers of {d_mlp} neurons)"
                ),
            }),
            None => Ok(()),
        }
    }
}

impl RunConfig {
    /// Reads a YAML config file; relative paths in it become relative to its directory.
    pub fn from_file(path: &Path) -> Result<RunConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut cfg = RunConfig::from_yaml(&text, &path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new(""));
        // A hub id keeps its spelling unless a folder of that name sits next to the config
        // (the local folder wins, as it does for `--model`).
        let hub_model = cfg
            .model
            .as_ref()
            .is_some_and(|m| is_hub_reference(&m.to_string_lossy()) && !base.join(m).exists());
        let model = if hub_model { None } else { cfg.model.as_mut() };
        for p in [cfg.dataset.as_mut(), cfg.output_path.as_mut(), model]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    /// Parses YAML text (`source_name` appears in errors).
    pub fn from_yaml(text: &str, source_name: &str) -> Result<RunConfig> {
        let bad = |key: &str, message: String| Error::Config {
            source_name: source_name.into(),
            key: key.into(),
            message,
        };
        // JSON has no NaN or infinity: converting would turn `.nan` into null, i.e. "use the
        // default", silently. Non-finite numbers are refused here, naming their key.
        let raw: serde_norway::Value = serde_norway::from_str(text)
            .map_err(|e| bad("(file)", format!("not valid YAML: {e}")))?;
        if let serde_norway::Value::Mapping(m) = &raw {
            for (k, val) in m {
                if let Some(x) = first_non_finite(val) {
                    let key = k.as_str().map_or_else(|| format!("{k:?}"), str::to_string);
                    return Err(bad(&key, format!("{x} is not a finite number")));
                }
            }
        }
        let v: serde_json::Value = serde_norway::from_str(text)
            .map_err(|e| bad("(file)", format!("not valid YAML: {e}")))?;
        let map = match v {
            serde_json::Value::Object(m) => m,
            serde_json::Value::Null => serde_json::Map::new(),
            _ => return Err(bad("(file)", "expected a map of keys".into())),
        };
        // Keys one at a time, so an error names its key.
        let mut normalised = serde_json::Map::new();
        for (k, val) in map {
            let key = k.replace('-', "_");
            if key == "gpus_per_model" && val.as_u64() != Some(1) {
                return Err(bad(
                    &k,
                    "adag runs each model copy on one device; spread a dataset over several \
                     GPUs with shards (--shard I/N, one job per GPU; see docs/slurm.md)"
                        .into(),
                ));
            }
            if key == "gpus_per_model" {
                continue;
            }
            let mut one = serde_json::Map::new();
            one.insert(key.clone(), val.clone());
            serde_json::from_value::<RunConfig>(serde_json::Value::Object(one)).map_err(|e| {
                let msg = e.to_string();
                if msg.starts_with("unknown field") {
                    bad(&k, format!("unknown key; known keys: {}", known_keys()))
                } else {
                    bad(&k, msg)
                }
            })?;
            normalised.insert(key, val);
        }
        serde_json::from_value(serde_json::Value::Object(normalised))
            .map_err(|e| bad("(file)", e.to_string()))
    }

    /// `self` with every key set in `over` replaced (the command line over the file).
    pub fn merge(self, over: RunConfig) -> RunConfig {
        macro_rules! pick {
            ($($f:ident),*) => { RunConfig { $($f: over.$f.or(self.$f)),* } };
        }
        pick!(
            dataset,
            output_path,
            model,
            model_id,
            percentage_threshold,
            edge_threshold,
            k,
            batch_size,
            apply_blacklist,
            no_apply_blacklist,
            blacklist,
            rule,
            use_relp_grad,
            disable_half_rule,
            center_logits,
            keep_bos,
            ignore_bos,
            system_prompt,
            seed_response,
            true_answers,
            use_chat_format,
            dtype,
            device,
            shard,
            verbose
        )
    }

    /// Applies defaults and checks that keys agree; `source_name` appears in errors.
    pub fn resolve(&self, source_name: &str) -> Result<Resolved> {
        let bad = |key: &str, message: &str| Error::Config {
            source_name: source_name.into(),
            key: key.into(),
            message: message.into(),
        };
        let required = |v: &Option<PathBuf>, key: &str| {
            v.clone().ok_or_else(|| {
                bad(
                    key,
                    &format!(
                        "required (set it in the config or with --{})",
                        key.replace('_', "-")
                    ),
                )
            })
        };
        let fraction = |v: Option<f32>, key: &str, default: f32| match v {
            None => Ok(default),
            Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
            Some(x) => Err(bad(key, &format!("{x} is not a non-negative number"))),
        };
        let positive = |v: Option<usize>, key: &str, default: usize| match v {
            None => Ok(default),
            Some(0) => Err(bad(key, "must be at least 1")),
            Some(x) => Ok(x),
        };
        let apply_blacklist = match (self.apply_blacklist, self.no_apply_blacklist) {
            (Some(a), Some(n)) if a == n => {
                return Err(bad("apply_blacklist", "contradicts `no_apply_blacklist`"))
            }
            (Some(a), _) => a,
            (None, Some(n)) => !n,
            (None, None) => true,
        };
        let ignore_bos = match (self.ignore_bos, self.keep_bos) {
            (Some(i), Some(k)) if i == k => {
                return Err(bad("keep_bos", "contradicts `ignore_bos`"))
            }
            (Some(i), _) => i,
            (None, Some(k)) => !k,
            (None, None) => true,
        };
        let legacy = match (self.use_relp_grad, self.disable_half_rule) {
            (None, None) => None,
            (Some(false), Some(true)) => return Err(bad(
                "disable_half_rule",
                "has no meaning with `use_relp_grad: false` (the stop-gate rule has no half rule)",
            )),
            (Some(false), _) => Some(Rule::StopGate),
            (_, Some(true)) => Some(Rule::NoHalfRule),
            _ => Some(Rule::HalfRule),
        };
        let rule = match (self.rule, legacy) {
            (Some(r), Some(l)) if r != l => {
                return Err(bad(
                    "rule",
                    &format!(
                        "`{r:?}` contradicts use_relp_grad/disable_half_rule (which say {l:?})"
                    ),
                ))
            }
            (Some(r), _) => r,
            (None, Some(l)) => l,
            (None, None) => Rule::HalfRule,
        };
        let blacklist = self
            .blacklist
            .iter()
            .flatten()
            .map(|e| e.pair().map_err(|m| bad("blacklist", &m)))
            .collect::<Result<Vec<_>>>()?;
        let dtype = self.dtype.clone().unwrap_or_else(|| "f32".into());
        if adag_model::parse_dtype(&dtype).is_none() {
            return Err(bad(
                "dtype",
                &format!("`{dtype}`: {}", adag_model::DTYPE_CHOICES),
            ));
        }
        let device = self.device.clone().unwrap_or_else(|| "cpu".into());
        if !["cpu", "cuda"].contains(&device.as_str()) {
            return Err(bad("device", &format!("`{device}`: expected cpu or cuda")));
        }
        if let Some(s) = &self.shard {
            crate::shard::Shard::parse(s).map_err(|m| bad("shard", &m))?;
        }
        Ok(Resolved {
            dataset: required(&self.dataset, "dataset")?,
            output_path: required(&self.output_path, "output_path")?,
            model: required(&self.model, "model")?,
            model_id: self.model_id.clone(),
            percentage_threshold: fraction(
                self.percentage_threshold,
                "percentage_threshold",
                0.005,
            )?,
            edge_threshold: fraction(self.edge_threshold, "edge_threshold", 0.01)?,
            k: positive(self.k, "k", 5)?,
            batch_size: positive(self.batch_size, "batch_size", 1)?,
            apply_blacklist,
            blacklist,
            rule,
            center_logits: self.center_logits.unwrap_or(false),
            ignore_bos,
            system_prompt: self.system_prompt.clone(),
            seed_response: self.seed_response.clone(),
            true_answers: self
                .true_answers
                .as_ref()
                .map(|v| v.iter().map(Answers::to_vec).collect()),
            use_chat_format: self.use_chat_format.unwrap_or(true),
            dtype,
            device,
            shard: self.shard.clone(),
        })
    }
}

/// The first NaN or infinite number inside a YAML value.
fn first_non_finite(v: &serde_norway::Value) -> Option<f64> {
    match v {
        serde_norway::Value::Number(n) => n.as_f64().filter(|x| !x.is_finite()),
        serde_norway::Value::Sequence(s) => s.iter().find_map(first_non_finite),
        serde_norway::Value::Mapping(m) => m.values().find_map(first_non_finite),
        serde_norway::Value::Tagged(t) => first_non_finite(&t.value),
        _ => None,
    }
}

fn known_keys() -> String {
    let v = serde_json::to_value(RunConfig::default()).unwrap_or_default();
    v.as_object()
        .map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// Whether a `model` value names a hub repository rather than a local path: `hf://…`, or a bare
/// `org/name[@rev]` (exactly one `/`, not starting with `.` or `/`), the shapes `--model`
/// accepts (`adag_hub::Reference`). This crate does not link the hub client (the Python wheel
/// builds on it without networking); the CLI resolves the reference.
pub fn is_hub_reference(s: &str) -> bool {
    if s.starts_with("hf://") {
        return true;
    }
    let id = s.split('@').next().unwrap_or(s);
    let ok = |part: &str| {
        !part.is_empty()
            && !part.starts_with(['.', '-'])
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match id.split_once('/') {
        Some((org, name)) => !s.contains('\\') && ok(org) && ok(name) && !name.contains('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `model:` in a config file: hub references keep their spelling (the CLI fetches them like
    /// `--model`), local paths are joined to the config's folder, and a folder next to the
    /// config wins over a hub id of the same spelling.
    #[test]
    fn hub_model_in_config_file_is_not_made_relative() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("run.yaml");
        let model_of = |m: &str| {
            std::fs::write(
                &cfg,
                format!("dataset: d.jsonl\noutput_path: o\nmodel: {m}\n"),
            )
            .unwrap();
            RunConfig::from_file(&cfg).unwrap().model.unwrap()
        };
        for hub in [
            "meta-llama/Llama-3.1-8B-Instruct",
            "google/gemma-2-2b@main",
            "Qwen/Qwen3-0.6B@0123abc",
            "hf://org/name/sub/dir@v1",
        ] {
            assert_eq!(model_of(hub), PathBuf::from(hub), "{hub}");
        }
        for local in ["models/demo/x", "m", "./org/name", "../up/name", "-x/y"] {
            assert_eq!(model_of(local), dir.path().join(local), "{local}");
        }
        std::fs::create_dir_all(dir.path().join("org/name")).unwrap();
        assert_eq!(model_of("org/name"), dir.path().join("org/name"));
        assert_eq!(model_of("/abs/org"), PathBuf::from("/abs/org"));
        // The dataset and output stay relative to the file whatever the model is.
        std::fs::write(&cfg, "dataset: d.jsonl\noutput_path: o\nmodel: a/b\n").unwrap();
        let c = RunConfig::from_file(&cfg).unwrap();
        assert_eq!(c.dataset.unwrap(), dir.path().join("d.jsonl"));
        assert_eq!(c.output_path.unwrap(), dir.path().join("o"));
    }

    #[test]
    fn reference_keys_and_defaults() {
        let c = RunConfig::from_yaml(
            "dataset: d.jsonl\noutput-path: out\nmodel: m\nk: 3\nkeep_bos: true\nno_apply_blacklist: true\nverbose: true\nblacklist: ['L2/5', [3, 7]]\n",
            "run.yaml",
        )
        .unwrap();
        let r = c.resolve("run.yaml").unwrap();
        assert_eq!(r.k, 3);
        assert!(!r.ignore_bos);
        assert!(!r.apply_blacklist);
        assert_eq!(r.blacklist, vec![(2, 5), (3, 7)]);
        assert_eq!(r.rule, Rule::HalfRule);
        assert_eq!(r.percentage_threshold, 0.005);
        assert_eq!(r.edge_threshold, 0.01);
        assert_eq!(r.batch_size, 1);
        // The manifest stores the thresholds as typed, not the f32 widened (0.009999999776…).
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["edge_threshold"].as_f64(), Some(0.01));
        assert_eq!(v["percentage_threshold"].as_f64(), Some(0.005));
    }

    #[test]
    fn command_line_overrides_file() {
        let file =
            RunConfig::from_yaml("dataset: a\noutput_path: o\nmodel: m\nk: 3\n", "f").unwrap();
        let cli = RunConfig {
            k: Some(7),
            dataset: Some("b".into()),
            ..Default::default()
        };
        let r = file.merge(cli).resolve("f").unwrap();
        assert_eq!(r.k, 7);
        assert_eq!(r.dataset, PathBuf::from("b"));
        assert_eq!(r.model, PathBuf::from("m"));
    }

    #[test]
    fn rule_spellings() {
        let r = |y: &str| {
            RunConfig::from_yaml(&format!("dataset: a\noutput_path: o\nmodel: m\n{y}"), "f")
                .and_then(|c| c.resolve("f"))
        };
        assert_eq!(r("use_relp_grad: false\n").unwrap().rule, Rule::StopGate);
        assert_eq!(
            r("disable_half_rule: true\n").unwrap().rule,
            Rule::NoHalfRule
        );
        assert_eq!(r("rule: no_half_rule\n").unwrap().rule, Rule::NoHalfRule);
        let e = r("rule: half_rule\nuse_relp_grad: false\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`rule`"), "{e}");
    }

    #[test]
    fn out_of_range_blacklist_is_refused() {
        let r = RunConfig::from_yaml(
            "dataset: a\noutput_path: o\nmodel: m\nblacklist: [L1/5, [2, 127]]\n",
            "f",
        )
        .unwrap()
        .resolve("run.yaml")
        .unwrap();
        r.check_blacklist(3, 128, "run.yaml").unwrap();
        assert_eq!(
            r.check_blacklist(2, 128, "run.yaml")
                .unwrap_err()
                .to_string(),
            "run.yaml: `blacklist`: neuron L2/127 is outside the model (2 layers of 128 neurons)"
        );
        assert_eq!(
            r.check_blacklist(3, 127, "run.yaml")
                .unwrap_err()
                .to_string(),
            "run.yaml: `blacklist`: neuron L2/127 is outside the model (3 layers of 127 neurons)"
        );
    }

    #[test]
    fn non_finite_numbers_are_refused_not_defaulted() {
        for (y, shown) in [
            ("percentage_threshold: .nan\n", "NaN"),
            ("edge_threshold: .inf\n", "inf"),
            ("blacklist: [[1, -.inf]]\n", "-inf"),
        ] {
            let e = RunConfig::from_yaml(y, "run.yaml").unwrap_err().to_string();
            let key = y.split(':').next().unwrap();
            assert_eq!(
                e,
                format!("run.yaml: `{key}`: {shown} is not a finite number"),
                "{y}"
            );
        }
    }

    #[test]
    fn errors_name_key() {
        let e = RunConfig::from_yaml("batch_sise: 3\n", "run.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "run.yaml: `batch_sise`: unknown key; known keys: apply_blacklist, batch_size"
            ),
            "{e}"
        );
        let e = RunConfig::from_yaml("gpus_per_model: 2\n", "run.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`gpus_per_model`: adag runs each model copy on one device"),
            "{e}"
        );
        assert!(RunConfig::from_yaml("gpus-per-model: 1\n", "run.yaml").is_ok());
        let e = RunConfig::from_yaml("k: three\n", "run.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("run.yaml: `k`: "), "{e}");
        let e = RunConfig::default()
            .resolve("run.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`dataset`: required"), "{e}");
        let e = RunConfig::from_yaml(
            "dataset: a\noutput_path: o\nmodel: m\nkeep_bos: true\nignore_bos: true\n",
            "f",
        )
        .unwrap()
        .resolve("f")
        .unwrap_err()
        .to_string();
        assert!(e.contains("contradicts"), "{e}");
        let e = RunConfig::from_yaml("dataset: a\noutput_path: o\nmodel: m\nbatch_size: 0\n", "f")
            .unwrap()
            .resolve("f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`batch_size`: must be at least 1"), "{e}");
    }

    #[test]
    fn file_paths_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run.yaml");
        std::fs::write(&p, "dataset: d.csv\nmodel: /abs/m\noutput_path: out\n").unwrap();
        let c = RunConfig::from_file(&p).unwrap();
        assert_eq!(c.dataset.unwrap(), dir.path().join("d.csv"));
        assert_eq!(c.model.unwrap(), PathBuf::from("/abs/m"));
    }
}
