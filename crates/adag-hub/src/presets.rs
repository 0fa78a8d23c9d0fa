//! circuit-tracer's transcoder sets by the names its README and CLI use. Each preset is only
//! a hub reference: its `config.yaml` on the hub (`model_kind`, `feature_input_hook`,
//! `feature_output_hook`, `activation`, `k`, `transcoders:` with `hf://` URIs) says the rest,
//! and is read unchanged.

/// One published transcoder set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The name given to `--transcoders`.
    pub name: &'static str,
    /// Where the set's `config.yaml` lives (`org/name[/subdir]`).
    pub reference: &'static str,
    /// The model it was trained on (the default `--model`).
    pub model: &'static str,
    /// Basis, as its publishers describe it.
    pub basis: &'static str,
}

/// The sets circuit-tracer names (README, "Available transcoders"). `gemma` and `llama` are its
/// own CLI aliases; the other names are adag's shorthand for the repository.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "gemma",
        reference: "mwhanna/gemma-scope-transcoders",
        model: "google/gemma-2-2b",
        basis: "PLT, GemmaScope 16k/layer, JumpReLU (lowest L0 per layer)",
    },
    Preset {
        name: "llama",
        reference: "mntss/transcoder-Llama-3.2-1B",
        model: "meta-llama/Llama-3.2-1B",
        basis: "PLT with skip",
    },
    Preset {
        name: "gemma-clt-426k",
        reference: "mntss/clt-gemma-2-2b-426k",
        model: "google/gemma-2-2b",
        basis: "CLT, 426k features",
    },
    Preset {
        name: "gemma-clt-2.5m",
        reference: "mntss/clt-gemma-2-2b-2.5M",
        model: "google/gemma-2-2b",
        basis: "CLT, 2.5M features",
    },
    Preset {
        name: "llama-clt-524k",
        reference: "mntss/clt-llama-3.2-1b-524k",
        model: "meta-llama/Llama-3.2-1B",
        basis: "CLT, 524k features",
    },
    Preset {
        name: "qwen3-0.6b",
        reference: "mwhanna/qwen3-0.6b-transcoders-lowl0",
        model: "Qwen/Qwen3-0.6B",
        basis: "PLT, low L0",
    },
    Preset {
        name: "qwen3-1.7b",
        reference: "mwhanna/qwen3-1.7b-transcoders-lowl0",
        model: "Qwen/Qwen3-1.7B",
        basis: "PLT, low L0",
    },
    Preset {
        name: "qwen3-4b",
        reference: "mwhanna/qwen3-4b-transcoders",
        model: "Qwen/Qwen3-4B",
        basis: "PLT",
    },
    Preset {
        name: "qwen3-8b",
        reference: "mwhanna/qwen3-8b-transcoders",
        model: "Qwen/Qwen3-8B",
        basis: "PLT",
    },
    Preset {
        name: "qwen3-14b",
        reference: "mwhanna/qwen3-14b-transcoders-lowl0",
        model: "Qwen/Qwen3-14B",
        basis: "PLT, low L0",
    },
    Preset {
        name: "llama-3.1-8b-instruct-topk",
        reference: "facebook/crv-8b-instruct-transcoders",
        model: "meta-llama/Llama-3.1-8B-Instruct",
        basis: "PLT, TopK (k=128)",
    },
];

/// GemmaScope-2 repositories (Gemma-3 270M–27B, PT and IT): each holds many sets under
/// `transcoder_all/width_{16k,262k}_l0_<…>[_affine]` and `clt/…`, so a folder must be named,
/// e.g. `hf://mwhanna/gemma-scope-2-1b-pt/transcoder_all/<set>`.
pub const GEMMA_SCOPE_2: &[(&str, &str)] = &[
    ("mwhanna/gemma-scope-2-270m-pt", "google/gemma-3-270m"),
    ("mwhanna/gemma-scope-2-270m-it", "google/gemma-3-270m-it"),
    ("mwhanna/gemma-scope-2-1b-pt", "google/gemma-3-1b-pt"),
    ("mwhanna/gemma-scope-2-1b-it", "google/gemma-3-1b-it"),
    ("mwhanna/gemma-scope-2-4b-pt", "google/gemma-3-4b-pt"),
    ("mwhanna/gemma-scope-2-4b-it", "google/gemma-3-4b-it"),
    ("mwhanna/gemma-scope-2-12b-pt", "google/gemma-3-12b-pt"),
    ("mwhanna/gemma-scope-2-12b-it", "google/gemma-3-12b-it"),
    ("mwhanna/gemma-scope-2-27b-pt", "google/gemma-3-27b-pt"),
    ("mwhanna/gemma-scope-2-27b-it", "google/gemma-3-27b-it"),
];

/// The preset called `name`, if any.
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reference;

    #[test]
    fn circuit_tracer_aliases_and_every_reference_parses() {
        assert_eq!(
            preset("gemma").unwrap().reference,
            "mwhanna/gemma-scope-transcoders"
        );
        assert_eq!(
            preset("llama").unwrap().reference,
            "mntss/transcoder-Llama-3.2-1B"
        );
        let mut names = std::collections::BTreeSet::new();
        for p in PRESETS {
            assert!(names.insert(p.name), "duplicate preset {}", p.name);
            for r in [p.reference, p.model] {
                assert!(
                    matches!(
                        Reference::parse(&format!("hf://{r}")),
                        Ok(Reference::Hub(_))
                    ),
                    "{r}"
                );
            }
        }
        for (r, m) in GEMMA_SCOPE_2 {
            assert!(
                matches!(
                    Reference::parse(&format!("hf://{r}")),
                    Ok(Reference::Hub(_))
                ),
                "{r}"
            );
            assert!(m.starts_with("google/gemma-3-"));
        }
    }
}
