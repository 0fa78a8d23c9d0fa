//! The demo's stories, checked causally on the committed bundle (models/demo with its default
//! transcoders): the features that the data says are "Texas" features are found from
//! activations over every city of the training table, then suppressed, and ` Austin` must fall;
//! the graph's strongest path into ` Austin` must have positive edges and pass through them.
//! The same for addition (`36+59=` → `9`: the "sum starts with 9" code from the held-out
//! pairs) and agreement (`The horses near the garden` → ` are`: the plural code from the
//! held-out agreement prompts). Nothing here names a feature id: each is re-derived from the data, so a retrained bundle is
//! checked for the same story, not for the same numbers.

use std::path::Path;

use adag_engine::intervene::{intervene, Action, Intervention, Mode, Position};
use adag_engine::{attribute, prepare_tokens, AttributeOptions, TargetSpec, TranscoderSet};
use adag_graph::{Graph, GraphMeta};
use adag_model::{LoadOptions, LoadedModel};
use adag_train::corpus::STATES;
use candle_core::Device;

const PROMPT: &str = "The capital of the state containing Dallas is";

struct Demo {
    m: LoadedModel,
    tc: TranscoderSet,
}

fn demo() -> Option<Demo> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo");
    if !root.join("config.json").exists() {
        println!("skipped: the demo model bundle (models/demo/config.json) is absent");
        return None;
    }
    let m = LoadedModel::load(&root, &LoadOptions::default()).unwrap();
    // The set `adag attribute` uses without --transcoders.
    let tc_dir = adag_train::bundle::default_transcoders_dir().unwrap();
    let tc = TranscoderSet::load(&tc_dir, &Device::Cpu).unwrap();
    Some(Demo { m, tc })
}

impl Demo {
    fn tokens(&self, prompt: &str) -> Vec<u32> {
        prepare_tokens(&self.m.tokenizer, prompt).unwrap()
    }

    fn token_id(&self, text: &str) -> u32 {
        let ids = self.m.tokenizer.encode(text, false).unwrap();
        assert_eq!(ids.len(), 1, "{text:?} is one token");
        ids[0]
    }

    /// Per layer `[pos][feature]` activations of the real (open-loop) run.
    fn activations(&self, tokens: &[u32]) -> Vec<Vec<Vec<f32>>> {
        let out = intervene(
            &self.m.model,
            tokens,
            &self.tc,
            &[],
            Mode::OpenLoop {
                freeze_attention: false,
            },
        )
        .unwrap();
        out.activations
            .iter()
            .map(|a| a.to_vec2::<f32>().unwrap())
            .collect()
    }

    /// Last-position logits after `interventions` (open loop: the real model reacts).
    fn last_logits(&self, tokens: &[u32], interventions: &[Intervention]) -> Vec<f32> {
        let out = intervene(
            &self.m.model,
            tokens,
            &self.tc,
            interventions,
            Mode::OpenLoop {
                freeze_attention: false,
            },
        )
        .unwrap();
        out.logits.get(tokens.len() - 1).unwrap().to_vec1().unwrap()
    }
}

fn softmax(x: &[f32]) -> Vec<f32> {
    let m = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = x.iter().map(|v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// A feature at (layer, position kind) that the data calls specific to one class (a state,
/// a plural subject).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Selective {
    layer: usize,
    /// Index of the position it was read at (cities: 0 the city, 1 the final " is").
    slot: usize,
    feature: u32,
    /// Smallest activation over the state's cities.
    min_in: f32,
    /// Largest activation over every other state's cities.
    max_out: f32,
}

/// `(state, [slot][layer][feature])` for every one-token city of the training table on the
/// two-hop template; slot 0 is the city's position, slot 1 the final " is".
type CityActs = ClassActs;

fn city_activations(d: &Demo) -> CityActs {
    let prompts: Vec<(usize, String)> = STATES
        .iter()
        .enumerate()
        .flat_map(|(si, (_, _, cities))| {
            cities
                .iter()
                .map(move |city| (si, format!("The capital of the state containing {city} is")))
        })
        .collect();
    class_activations(d, &prompts, &[2, 1])
}

/// Features active on every city of state `s` (at the city's token or the final " is") and
/// weaker on every city of every other state: the smallest in-state activation exceeds the
/// largest out-of-state one. Prompts: the two-hop template for all 70 cities of the training
/// table (one-token cities only, so positions line up).
fn state_features(d: &Demo, s: usize) -> Vec<Selective> {
    separating(&city_activations(d), s, d.tc.n_layers())
}

/// Features (layer < `layers`) whose smallest activation over the prompts of class `c` is
/// positive and above their largest over every other prompt: a threshold on the feature alone
/// tells `c` from the rest. Unlike [`class_code`] this admits features that are weakly on
/// elsewhere, which is how a "say the answer" feature at the last position looks.
fn separating(acts: &ClassActs, c: usize, layers: usize) -> Vec<Selective> {
    let width = acts[0].1[0][0].len();
    let mut out = Vec::new();
    for slot in 0..acts[0].1.len() {
        for layer in 0..layers {
            for f in 0..width {
                let (mut min_in, mut max_out) = (f32::INFINITY, f32::NEG_INFINITY);
                for (ci, a) in acts {
                    let v = a[slot][layer][f];
                    if *ci == c {
                        min_in = min_in.min(v);
                    } else {
                        max_out = max_out.max(v);
                    }
                }
                if min_in > 0.0 && min_in > max_out {
                    out.push(Selective {
                        layer,
                        slot,
                        feature: f as u32,
                        min_in,
                        max_out,
                    });
                }
            }
        }
    }
    out
}

/// Features at the final " is" (slot 1) or the city (slot 0) of a layer below the last that
/// are on for every city of state `s` and off (never active) for every city of at least half of
/// the other states: units of the code by which the lookup tells the state. On the demo each is
/// shared by a few states; their intersection picks Texas.
fn state_code(per_city: &CityActs, s: usize, n_layers: usize) -> Vec<(usize, usize, u32)> {
    class_code(per_city, s, n_layers - 1)
}

/// Features (slot, layer < `layers`, id) on for every prompt of class `c` and off (never
/// active) for every prompt of at least half of the other classes present: what the data says
/// codes for `c`, found without naming an id. With two classes this is "on for every prompt of
/// `c`, off for every other prompt".
fn class_code(acts: &ClassActs, c: usize, layers: usize) -> Vec<(usize, usize, u32)> {
    let n_classes = acts.iter().map(|(ci, _)| ci + 1).max().unwrap_or(0);
    let mut present = vec![false; n_classes];
    for (ci, _) in acts {
        present[*ci] = true;
    }
    let others = (0..n_classes).filter(|&o| o != c && present[o]).count();
    let width = acts[0].1[0][0].len();
    let mut out = Vec::new();
    for slot in 0..acts[0].1.len() {
        for layer in 0..layers {
            for f in 0..width {
                let mut on_all = true;
                let mut active = vec![false; n_classes];
                for (ci, a) in acts {
                    let v = a[slot][layer][f];
                    if *ci == c {
                        on_all &= v > 0.0;
                    } else if v > 0.0 {
                        active[*ci] = true;
                    }
                }
                let off = (0..n_classes)
                    .filter(|&o| o != c && present[o] && !active[o])
                    .count();
                if on_all && 2 * off >= others {
                    out.push((slot, layer, f as u32));
                }
            }
        }
    }
    out
}

/// The path from one of the token nodes at positions `starts` to `target` whose edges have the
/// largest product of absolute weights (error nodes, which have no inputs, are not starts: the
/// question is how the prompt's tokens reach the answer). Signs are not looked at, so a
/// path of positive edges is a finding, not a choice. Sources precede targets in layer order, so one pass over
/// the features sorted by layer is a dynamic programme over the DAG.
fn strongest_token_path(g: &Graph, target: usize, starts: &[usize]) -> Vec<(Node, f32)> {
    let nf = g.n_features();
    let tok0 = g.token_index(0);
    let n = g.n_nodes();
    let mut order: Vec<usize> = (0..nf).collect();
    order.sort_by_key(|&i| g.feature(i).unwrap().0[0]);
    // score: Σ log|w| of the best path from a token; prev: its previous node.
    let mut score = vec![f64::NEG_INFINITY; n];
    let mut prev = vec![usize::MAX; n];
    for &p in starts {
        score[tok0 + p] = 0.0;
    }
    let relax = |t: usize, score: &mut Vec<f64>, prev: &mut Vec<usize>| {
        let lt = (t < nf).then(|| g.feature(t).unwrap().0[0]);
        let cands = (0..nf)
            .filter(|&s| lt.is_none_or(|l| g.feature(s).unwrap().0[0] < l))
            .chain(tok0..tok0 + g.n_pos());
        for s in cands {
            let w = g.edge(t, s);
            if w != 0.0 && score[s] > f64::NEG_INFINITY {
                let v = score[s] + (w.abs() as f64).ln();
                if v > score[t] {
                    score[t] = v;
                    prev[t] = s;
                }
            }
        }
    };
    for &f in &order {
        relax(f, &mut score, &mut prev);
    }
    relax(target, &mut score, &mut prev);
    let mut path = Vec::new();
    let mut cur = target;
    while prev[cur] != usize::MAX {
        path.push((node_of(g, prev[cur]), g.edge(cur, prev[cur])));
        cur = prev[cur];
    }
    path
}

/// The graph of the README prompt's top logit (circuit-tracer's other defaults).
fn top_logit_graph(d: &Demo, toks: &[u32]) -> Graph {
    let opts = AttributeOptions {
        targets: TargetSpec::Salient {
            max_n_logits: 1,
            desired_logit_prob: 0.95,
        },
        ..Default::default()
    };
    attribute(&d.m.model, toks, &d.tc, &opts, GraphMeta::default(), &|i| {
        i.to_string()
    })
    .unwrap()
}

fn texas_ablation(d: &Demo, code: &[(usize, usize, u32)], n: usize) -> Vec<Intervention> {
    code.iter()
        .map(|&(slot, layer, feature)| Intervention {
            layer,
            pos: Position::At(if slot == 0 { n - 2 } else { n - 1 }),
            feature,
            action: Action::Scale(0.0),
        })
        .filter(|iv| iv.layer < d.tc.n_layers())
        .collect()
}

/// Suppressing the Texas code (found from the data, not named) moves the answer away from
/// Austin to another state's capital; the strongest path from the ` Dallas` token into
/// ` Austin` has positive edges and passes through a Texas-code feature at ` is`; and
/// at least one feature there is Texas-only.
#[test]
fn texas_features_carry_dallas_to_austin() {
    let Some(d) = demo() else { return };
    let per_city = city_activations(&d);
    let n_layers = d.tc.n_layers();
    let code = state_code(&per_city, 0, n_layers);
    assert!(code.len() >= 3, "Texas code features: {code:?}");
    // A Texas-only feature: on for all five Texas cities, off for all 65 others.
    let texas_only = code.iter().any(|&(slot, layer, f)| {
        per_city
            .iter()
            .all(|(si, a)| (a[slot][layer][f as usize] > 0.0) == (*si == 0))
    });
    assert!(texas_only, "no Texas-only feature among {code:?}");

    let toks = d.tokens(PROMPT);
    let n = toks.len();
    let austin = d.token_id(" Austin") as usize;
    let r = ablate(&d, &toks, &texas_ablation(&d, &code, n), austin);
    r.assert_collapses(austin, "Austin");
    // The probability goes to other states' capitals, not to noise.
    let capitals: Vec<usize> = STATES[1..]
        .iter()
        .map(|(_, c, _)| d.token_id(&format!(" {c}")) as usize)
        .collect();
    let moved: f32 = capitals.iter().map(|&c| r.pa[c] - r.pc[c]).sum();
    assert!(moved > 0.5, "other capitals gained {moved}");

    let g = top_logit_graph(&d, &toks);
    let path = strongest_token_path(&g, g.logit_index(0), &[n - 2]);
    assert!(path.len() >= 2, "{path:?}");
    assert!(path.iter().all(|(_, w)| *w > 0.0), "{path:?}");
    assert_eq!(
        path.last().unwrap().0,
        Node::Token { pos: n - 2 },
        "{path:?}"
    );
    let through_code = path.iter().any(|(node, _)| match *node {
        Node::Feature {
            layer,
            pos,
            feature,
        } => code.iter().any(|&(slot, l, f)| {
            l == layer as usize
                && f == feature
                && pos as usize == if slot == 0 { n - 2 } else { n - 1 }
        }),
        _ => false,
    });
    assert!(through_code, "{path:?} misses the Texas code {code:?}");
}

/// Prints the figures the model card quotes (per-state activation profiles of the features
/// into ` Austin`, the strongest paths, the ablations); run with `--ignored --nocapture`.
#[test]
#[ignore]
fn print_demo_story() {
    let Some(d) = demo() else { return };
    let tex = state_features(&d, 0);
    for f in &tex {
        println!("{f:?}");
    }
    let toks = d.tokens(PROMPT);
    let n = toks.len();
    let austin = d.token_id(" Austin") as usize;
    let clean = d.last_logits(&toks, &[]);
    let ivs: Vec<Intervention> = tex
        .iter()
        .map(|f| Intervention {
            layer: f.layer,
            pos: Position::At(if f.slot == 0 { n - 2 } else { n - 1 }),
            feature: f.feature,
            action: Action::Scale(0.0),
        })
        .collect();
    let after = d.last_logits(&toks, &ivs);
    let (pc, pa) = (softmax(&clean), softmax(&after));
    let mut top: Vec<usize> = (0..pa.len()).collect();
    top.sort_by(|&a, &b| pa[b].total_cmp(&pa[a]));
    println!(
        "Austin logit {} -> {}, p {} -> {}",
        clean[austin], after[austin], pc[austin], pa[austin]
    );
    for &t in &top[..5] {
        println!(
            "  {:?} {} -> {}",
            d.m.tokenizer.decode(&[t as u32], false).unwrap(),
            pc[t],
            pa[t]
        );
    }
    let g = top_logit_graph(&d, &toks);
    for (i, step) in strongest_path(&g, g.logit_index(0)).iter().enumerate() {
        println!("path {i}: {step:?}");
    }
    let all: Vec<usize> = (0..n).collect();
    for (i, step) in strongest_token_path(&g, g.logit_index(0), &all)
        .iter()
        .enumerate()
    {
        println!("token path {i}: {step:?}");
    }
    for (i, step) in strongest_token_path(&g, g.logit_index(0), &[n - 2])
        .iter()
        .enumerate()
    {
        println!("Dallas path {i}: {step:?}");
    }
    let per_city0 = city_activations(&d);
    let code = state_code(&per_city0, 0, d.tc.n_layers());
    println!("Texas code: {code:?}");
    let ivs: Vec<Intervention> = code
        .iter()
        .map(|&(slot, layer, feature)| Intervention {
            layer,
            pos: Position::At(if slot == 0 { n - 2 } else { n - 1 }),
            feature,
            action: Action::Scale(0.0),
        })
        .collect();
    let after = d.last_logits(&toks, &ivs);
    let pa = softmax(&after);
    let mut top: Vec<usize> = (0..pa.len()).collect();
    top.sort_by(|&a, &b| pa[b].total_cmp(&pa[a]));
    println!(
        "code ablated: Austin logit {} -> {}, p {} -> {}",
        clean[austin], after[austin], pc[austin], pa[austin]
    );
    for &t in &top[..5] {
        println!(
            "  {:?} {} -> {}",
            d.m.tokenizer.decode(&[t as u32], false).unwrap(),
            pc[t],
            pa[t]
        );
    }
    let strs: Vec<String> = toks
        .iter()
        .map(|&t| d.m.tokenizer.decode(&[t], false).unwrap())
        .collect();
    println!("{strs:?}");
    let show = |target: usize, k: usize, indent: &str| {
        let n = g.n_nodes();
        let sources = g.n_features() + g.n_errors() + g.n_pos();
        let row = &g.adjacency[target * n..target * n + sources];
        let mut idx: Vec<usize> = (0..sources).collect();
        idx.sort_by(|&a, &b| row[b].abs().total_cmp(&row[a].abs()));
        for &i in &idx[..k] {
            let act = if i < g.n_features() {
                g.feature(i).unwrap().1
            } else {
                0.0
            };
            println!(
                "{indent}{:?} act {act:.3} edge {:.3}",
                node_of(&g, i),
                row[i]
            );
        }
        idx[..k].to_vec()
    };
    println!("into Austin:");
    let per_city = city_activations(&d);
    for i in show(g.logit_index(0), 12, "  ") {
        if i < g.n_features() {
            let ([l, p, f], _) = g.feature(i).unwrap();
            let slot = if p as usize == n - 1 {
                1
            } else if p as usize == n - 2 {
                0
            } else {
                continue;
            };
            let mut means = vec![(0f32, 0usize); STATES.len()];
            for (si, a) in &per_city {
                let v = a[slot][l as usize][f as usize];
                means[*si].0 += v / 5.0;
                if v > 0.0 {
                    means[*si].1 += 1;
                }
            }
            println!(
                "      per state (mean act, #active of 5): {}",
                means
                    .iter()
                    .zip(STATES)
                    .map(|((m, c), st)| format!("{}:{m:.2}/{c}", &st.0[..3]))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            show(i, 4, "      ");
        }
    }
}

/// One step of a path: the source node's description and the edge weight into the previous.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Feature { layer: u32, pos: u32, feature: u32 },
    Error { layer: usize, pos: usize },
    Token { pos: usize },
}

fn node_of(g: &Graph, i: usize) -> Node {
    let nf = g.n_features();
    if i < nf {
        let ([layer, pos, feature], _) = g.feature(i).unwrap();
        Node::Feature {
            layer,
            pos,
            feature,
        }
    } else if i < nf + g.n_errors() {
        let e = i - nf;
        Node::Error {
            layer: e / g.n_pos(),
            pos: e % g.n_pos(),
        }
    } else {
        Node::Token {
            pos: i - nf - g.n_errors(),
        }
    }
}

/// Greedy strongest path backwards from `target`: at each node, the source with the largest
/// absolute edge, until a token (or an error node, which has no inputs).
fn strongest_path(g: &Graph, target: usize) -> Vec<(Node, f32)> {
    let mut out = Vec::new();
    let mut cur = target;
    let n = g.n_nodes();
    let sources = g.n_features() + g.n_errors() + g.n_pos();
    for _ in 0..16 {
        let row = &g.adjacency[cur * n..cur * n + sources];
        let (best, w) = row
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .map(|(i, w)| (i, *w))
            .unwrap();
        let node = node_of(g, best);
        let stop = !matches!(node, Node::Feature { .. });
        out.push((node, w));
        if stop {
            break;
        }
        cur = best;
    }
    out
}

/// `(class, [slot][layer][feature])` per prompt; slot `k` is the position `slots[k]` counted
/// from the end (1: the last token).
type ClassActs = Vec<(usize, Vec<Vec<Vec<f32>>>)>;

fn class_activations(d: &Demo, prompts: &[(usize, String)], slots: &[usize]) -> ClassActs {
    prompts
        .iter()
        .map(|(c, p)| {
            let toks = d.tokens(p);
            let n = toks.len();
            let acts = d.activations(&toks);
            let per_slot = slots
                .iter()
                .map(|&k| acts.iter().map(|l| l[n - k].clone()).collect())
                .collect();
            (*c, per_slot)
        })
        .collect()
}

/// Zeroes the features of `code` (slot `k` at position `n − slots[k]`).
fn code_ablation(code: &[(usize, usize, u32)], slots: &[usize], n: usize) -> Vec<Intervention> {
    code.iter()
        .map(|&(slot, layer, feature)| Intervention {
            layer,
            pos: Position::At(n - slots[slot]),
            feature,
            action: Action::Scale(0.0),
        })
        .collect()
}

/// Whether graph node `node` is a feature of `code` (slot `k` at position `n − slots[k]`).
fn in_code(node: &Node, code: &[(usize, usize, u32)], slots: &[usize], n: usize) -> bool {
    match *node {
        Node::Feature {
            layer,
            pos,
            feature,
        } => code.iter().any(|&(slot, l, f)| {
            l == layer as usize && f == feature && pos as usize == n - slots[slot]
        }),
        _ => false,
    }
}

/// A story's causal check on one prompt: the logits and probabilities before and after
/// zeroing `code`, and the five most probable tokens after (printed for the model card).
struct Ablated {
    clean: Vec<f32>,
    after: Vec<f32>,
    pc: Vec<f32>,
    pa: Vec<f32>,
}

impl Ablated {
    /// The story's causal claim: `target` (`name` in messages) was the confident answer
    /// (p > 0.99) and zeroing the code drops its logit by more than 4 (odds against it ×55 with
    /// the other logits fixed) and its probability below one half.
    fn assert_collapses(&self, target: usize, name: &str) {
        assert!(
            self.pc[target] > 0.99,
            "clean p({name}) {}",
            self.pc[target]
        );
        assert!(
            self.clean[target] - self.after[target] > 4.0 && self.pa[target] < 0.5,
            "{name}: logit {} -> {}, p {} -> {}",
            self.clean[target],
            self.after[target],
            self.pc[target],
            self.pa[target]
        );
    }
}

fn ablate(d: &Demo, toks: &[u32], ivs: &[Intervention], target: usize) -> Ablated {
    let clean = d.last_logits(toks, &[]);
    let after = d.last_logits(toks, ivs);
    let (pc, pa) = (softmax(&clean), softmax(&after));
    let mut top: Vec<usize> = (0..pa.len()).collect();
    top.sort_by(|&a, &b| pa[b].total_cmp(&pa[a]));
    println!(
        "{} features zeroed: target logit {:.2} -> {:.2}, p {:.4} -> {:.4}; now: {}",
        ivs.len(),
        clean[target],
        after[target],
        pc[target],
        pa[target],
        top[..5]
            .iter()
            .map(|&t| format!(
                "{:?} {:.3}",
                d.m.tokenizer.decode(&[t as u32], false).unwrap(),
                pa[t]
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ablated {
        clean,
        after,
        pc,
        pa,
    }
}

/// Token positions of an addition prompt `ab+cd=` counted from the end: a's tens digit (6)
/// to `=` (1).
const ADD_SLOTS: [usize; 6] = [6, 5, 4, 3, 2, 1];

/// `36+59=` → `9` (the sum's first digit). The "answer starts with 9" code is found from the
/// 373 held-out addition pairs (grouped by the first digit of their sum): features on for every
/// pair whose sum starts with 9 and off for every pair of at least half of the other first
/// digits. Zeroing them on `36+59=` must move the answer to another digit, and the graph's
/// strongest path from the prompt's tokens into `9` must run through one of them with positive
/// edges.
#[test]
fn sum_digit_features_carry_36_plus_59_to_9() {
    use adag_train::corpus::{eval_items, Task};
    let Some(d) = demo() else { return };
    let prompts: Vec<(usize, String)> = eval_items()
        .into_iter()
        .filter(|i| i.task == Task::Addition)
        .map(|i| ((i.answer.as_bytes()[0] - b'0') as usize, i.prompt))
        .collect();
    assert!(prompts.len() > 300, "{} addition prompts", prompts.len());
    let acts = class_activations(&d, &prompts, &ADD_SLOTS);
    let code = class_code(&acts, 9, d.tc.n_layers());
    println!("sum-starts-with-9 code (slot, layer, feature): {code:?}");
    assert!(
        !code.is_empty(),
        "no feature codes for a sum starting with 9"
    );

    let toks = d.tokens("36+59=");
    let n = toks.len();
    let nine = d.token_id("9") as usize;
    let r = ablate(&d, &toks, &code_ablation(&code, &ADD_SLOTS, n), nine);
    r.assert_collapses(nine, "9");
    let digits: Vec<usize> = (0..10)
        .filter(|&k| k != 9)
        .map(|k| d.token_id(&k.to_string()) as usize)
        .collect();
    let moved: f32 = digits.iter().map(|&t| r.pa[t] - r.pc[t]).sum();
    assert!(moved > 0.5, "other digits gained {moved}");

    let g = top_logit_graph(&d, &toks);
    let all: Vec<usize> = (1..n).collect();
    println!(
        "strongest token path into 9: {:?}",
        strongest_token_path(&g, g.logit_index(0), &all)
    );
    // From the operands' digits (not `+`, `=`).
    let path = strongest_token_path(&g, g.logit_index(0), &[n - 6, n - 5, n - 3, n - 2]);
    println!("strongest path from the digits into 9: {path:?}");
    for pos in [n - 6, n - 5, n - 3, n - 2] {
        println!(
            "  from {pos}: {:?}",
            strongest_token_path(&g, g.logit_index(0), &[pos])
        );
    }
    assert!(path.iter().all(|(_, w)| *w > 0.0), "{path:?}");
    assert!(
        path.iter()
            .any(|(node, _)| in_code(node, &code, &ADD_SLOTS, n)),
        "{path:?} misses the code {code:?}"
    );
}

/// Token positions of an agreement prompt `The S prep the D` counted from the end: the subject
/// (4) to the distractor (1).
const AGR_SLOTS: [usize; 4] = [4, 3, 2, 1];

/// `The horses near the garden` → ` are`. The plural code is found from the 144 held-out
/// agreement prompts (subjects whose number differs from the distractor's): features on for
/// every plural subject and off for every singular one. Zeroing them must move the answer to
/// ` is`, and the graph's strongest path from ` horses` into ` are` must run through one of
/// them with positive edges.
#[test]
fn plural_features_carry_horses_to_are() {
    use adag_train::corpus::{eval_items, Task};
    let Some(d) = demo() else { return };
    let prompts: Vec<(usize, String)> = eval_items()
        .into_iter()
        .filter(|i| i.task == Task::Agreement)
        .map(|i| (usize::from(i.answer == " are"), i.prompt))
        .collect();
    assert!(prompts.len() > 100, "{} agreement prompts", prompts.len());
    let acts = class_activations(&d, &prompts, &AGR_SLOTS);
    let sep = separating(&acts, 1, d.tc.n_layers());
    for f in &sep {
        println!("{f:?}");
    }
    let code: Vec<(usize, usize, u32)> = sep.iter().map(|f| (f.slot, f.layer, f.feature)).collect();
    assert!(!code.is_empty(), "no plural feature");

    let toks = d.tokens("The horses near the garden");
    let n = toks.len();
    let (are, is) = (d.token_id(" are") as usize, d.token_id(" is") as usize);
    let r = ablate(&d, &toks, &code_ablation(&code, &AGR_SLOTS, n), are);
    r.assert_collapses(are, "are");
    assert!(
        r.pa[is] - r.pc[is] > 0.5,
        "p(is) {} -> {}",
        r.pc[is],
        r.pa[is]
    );
    // For the model card: the subject's features alone, and the last position's alone.
    for slot in [0, 3] {
        let part: Vec<_> = code.iter().copied().filter(|c| c.0 == slot).collect();
        print!("slot {slot} only: ");
        ablate(&d, &toks, &code_ablation(&part, &AGR_SLOTS, n), are);
    }

    let g = top_logit_graph(&d, &toks);
    let path = strongest_token_path(&g, g.logit_index(0), &[n - 4]);
    println!("strongest path from ' horses' into ' are': {path:?}");
    let all: Vec<usize> = (1..n).collect();
    println!(
        "strongest token path into ' are': {:?}",
        strongest_token_path(&g, g.logit_index(0), &all)
    );
    assert!(path.iter().all(|(_, w)| *w > 0.0), "{path:?}");
    assert!(
        path.iter()
            .any(|(node, _)| in_code(node, &code, &AGR_SLOTS, n)),
        "{path:?} misses the code {code:?}"
    );
}
