//! `adag features` on the demo model: a unit's examples are text, not control tokens. The demo
//! corpus packs sentences behind `<|bos|>`, and many units fire on it; before special-token
//! positions were skipped, BOS filled most units' top contexts.

use crate::common::{ok, s};

#[test]
fn dashboard_examples_never_peak_on_a_special_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("features");
    ok(&[
        "features",
        "-t",
        "models/demo/clt",
        "--k",
        "3",
        "--max-tokens",
        "3000",
        "--out",
        s(&out),
    ]);
    let (mut examples, mut bos_in_windows) = (0usize, 0usize);
    for layer in 0..4 {
        for unit in 0..64 {
            let Some(d) = adag_features::write::read_detail(&out, layer, unit).unwrap() else {
                continue;
            };
            for q in d["examples_quantiles"].as_array().unwrap() {
                for ex in q["examples"].as_array().unwrap() {
                    let toks = ex["tokens"].as_array().unwrap();
                    let acts = ex["tokens_acts_list"].as_array().unwrap();
                    for (t, a) in toks.iter().zip(acts) {
                        if t.as_str() == Some("<|bos|>") {
                            bos_in_windows += 1;
                            assert_eq!(
                                a.as_f64().unwrap(),
                                0.0,
                                "L{layer}#{unit}: an activation is recorded on <|bos|>: {ex}"
                            );
                        }
                    }
                    let peak = acts
                        .iter()
                        .map(|a| a.as_f64().unwrap())
                        .fold(f64::MIN, f64::max);
                    assert!(peak > 0.0, "L{layer}#{unit}: an example with no activation");
                    examples += 1;
                }
            }
        }
    }
    // The windows do contain BOS (the corpus is packed), so the check is not vacuous.
    assert!(examples > 50, "only {examples} examples read");
    assert!(
        bos_in_windows > 0,
        "no <|bos|> in any window: the check would be vacuous"
    );
}
