//! A batch sorted by descending layer takes the backward's short path at each seed's own layer
//! (the seed is nonzero at one position, so attention's `W_O` product covers one position per
//! row); any other order takes the dense path. Both must give every row the same gradients,
//! at every write site and the embeddings, on every fixture architecture (GQA, Gemma-2's and
//! Gemma-3's post-attention norms) and with an MLP path that sends gradient across the MLP.

use std::path::{Path, PathBuf};

use adag_core::{HookName, Site};
use adag_engine::neuron::{RelpMlp, RelpRule};
use adag_engine::{FrozenModel, MlpPath, ReadSite, Seeds, StopMlp, Visitor, WriteSite};
use adag_model::{Batch, CacheFilter, LoadOptions, LoadedModel};
use candle_core::{Device, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

/// Every gradient the pass reports, per layer (`n_layers` for the embeddings), all rows.
struct Grads(Vec<Option<Vec<Vec<f32>>>>);

impl Grads {
    fn store(&mut self, slot: usize, g: &Tensor) {
        let (n, t, d) = g.dims3().unwrap();
        self.0[slot] = Some(g.reshape((n, t * d)).unwrap().to_vec2::<f32>().unwrap());
    }
}

impl Visitor for Grads {
    fn write_site(&mut self, layer: usize, g: &Tensor) -> adag_engine::Result<()> {
        self.store(layer, g);
        Ok(())
    }
    fn embed(&mut self, g: &Tensor) -> adag_engine::Result<()> {
        let slot = self.0.len() - 1;
        self.store(slot, g);
        Ok(())
    }
}

fn run(
    frozen: &FrozenModel,
    seeds: &Seeds,
    read: ReadSite,
    mlp: &dyn MlpPath,
    n_layers: usize,
) -> Grads {
    let mut g = Grads(vec![None; n_layers + 1]);
    frozen
        .vjp(seeds, read, WriteSite::MlpOut, mlp, &mut g)
        .unwrap();
    g
}

/// Seeds at `(layer, position)` pairs with pseudo-random vectors, in the order given.
fn seeds(order: &[(usize, usize)], d: usize) -> Seeds {
    let mut state = 17u64;
    let vals: Vec<f32> = (0..order.len() * d)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    Seeds {
        vectors: Tensor::from_vec(vals, (order.len(), d), &Device::Cpu).unwrap(),
        layers: order.iter().map(|s| s.0).collect(),
        positions: order.iter().map(|s| s.1).collect(),
    }
}

fn reordered(s: &Seeds, perm: &[usize]) -> Seeds {
    let idx: Vec<u32> = perm.iter().map(|&i| i as u32).collect();
    let idx = Tensor::new(idx.as_slice(), &Device::Cpu).unwrap();
    Seeds {
        vectors: s.vectors.index_select(&idx, 0).unwrap(),
        layers: perm.iter().map(|&i| s.layers[i]).collect(),
        positions: perm.iter().map(|&i| s.positions[i]).collect(),
    }
}

/// Fixture `name`, the test prompt's tokens, and a clean forward pass over them caching what
/// the frozen model, RelP and the token vectors need.
fn clean_run(name: &str) -> (LoadedModel, Vec<u32>, adag_model::ForwardOutput) {
    let m = LoadedModel::load(&fixture(name), &LoadOptions::default()).unwrap();
    let t = m
        .tokenizer
        .prompt_ids("The keys to the cabinet are on the table", false)
        .unwrap();
    let filter = FrozenModel::cache_filter().union(&CacheFilter::sites([
        Site::MlpPre,
        Site::MlpPreLinear,
        Site::MlpPost,
        Site::MlpOut,
    ]));
    let filter = filter.union(&CacheFilter::only([HookName::Embed]));
    let out = m
        .model
        .forward(&Batch::single(&t).unwrap(), &filter)
        .unwrap();
    (m, t, out)
}

#[test]
fn the_short_path_at_a_seeds_layer_gives_the_dense_paths_rows() {
    for name in ["llama", "qwen2", "qwen3", "gemma2", "gemma3"] {
        let (m, t, out) = clean_run(name);
        let frozen = FrozenModel::new(&m.model, &out.cache, 0).unwrap();
        let relp = RelpMlp::new(&m.model, &out.cache, 0, RelpRule::HalfRule).unwrap();
        let (n_layers, d, last) = (m.model.cfg.n_layers, m.model.cfg.d_model, t.len() - 1);
        // Descending layer: each layer's seeds are exactly the rows that join there (the short
        // path). Two seeds share a layer and a position; logits ride at `n_layers`.
        let sorted = [
            (n_layers, last),
            (n_layers - 1, last),
            (n_layers - 1, 2),
            (n_layers - 1, 2),
            (1, last - 1),
            (1, 0),
            (0, 3),
        ];
        let s = seeds(&sorted, d);
        // Ascending layer: the seeds at a layer come after rows already under way (dense path).
        let perm: Vec<usize> = (0..sorted.len()).rev().collect();
        let r = reordered(&s, &perm);
        let paths: [(&str, &dyn MlpPath); 2] = [("stop", &StopMlp), ("relp", &relp)];
        for (what, mlp) in paths {
            for read in [ReadSite::MlpIn, ReadSite::ResidMid] {
                let short = run(&frozen, &s, read, mlp, n_layers);
                let dense = run(&frozen, &r, read, mlp, n_layers);
                let mut compared = 0;
                for (slot, (a, b)) in short.0.iter().zip(&dense.0).enumerate() {
                    let (Some(a), Some(b)) = (a, b) else {
                        assert!(
                            a.is_none() && b.is_none(),
                            "{name}: slot {slot} reported once"
                        );
                        continue;
                    };
                    for (i, &j) in perm.iter().enumerate() {
                        let scale = 1.0 + a[j].iter().fold(0f32, |m, x| m.max(x.abs()));
                        let diff = a[j]
                            .iter()
                            .zip(&b[i])
                            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                        assert!(
                            diff <= 1e-5 * scale,
                            "{name} {what} {read:?}: seed {j} at slot {slot} differs by {diff}"
                        );
                        compared += a[j].iter().filter(|x| **x != 0.0).count();
                    }
                }
                assert!(
                    compared > 1000,
                    "{name}: too few nonzero gradients ({compared})"
                );
            }
        }
    }
}

/// Token edges only: the gradient at `hook_embed` dotted with the token vectors, taken from
/// the pass's dot products where it offers them ([`Visitor::embed_reads`]).
struct Dots {
    tokens: Tensor,
    dots: Option<Vec<Vec<f32>>>,
    /// Whether the pass handed over dot products (the bottom layer read into token edges).
    read_directly: bool,
}

impl Visitor for Dots {
    fn write_site(&mut self, _: usize, _: &Tensor) -> adag_engine::Result<()> {
        Ok(())
    }
    fn embed(&mut self, g: &Tensor) -> adag_engine::Result<()> {
        let (_, t, _) = g.dims3().unwrap();
        let tok = self.tokens.narrow(0, 0, t).unwrap();
        self.dots = Some(
            g.broadcast_mul(&tok)
                .unwrap()
                .sum(2)
                .unwrap()
                .to_vec2()
                .unwrap(),
        );
        Ok(())
    }
    fn embed_reads(&self) -> Option<Tensor> {
        Some(self.tokens.clone())
    }
    fn embed_dots(&mut self, dots: &Tensor) -> adag_engine::Result<()> {
        self.read_directly = true;
        self.dots = Some(dots.to_vec2().unwrap());
        Ok(())
    }
}

/// The bottom layer read straight into token edges (without the gradient at `hook_embed`)
/// gives the dot products of that gradient with the token vectors, on every fixture
/// architecture, with and without an MLP path, for a batch sorted by layer (the rows under
/// way and the rows seeded at layer 0 both take the direct read); any other order goes
/// through layer 0 as before and gives the same.
#[test]
fn token_edges_read_at_the_bottom_layer_are_the_embedding_gradients_dots() {
    for name in ["llama", "qwen2", "qwen3", "gemma2", "gemma3"] {
        let (m, t, out) = clean_run(name);
        let tokens = out.cache.item(HookName::Embed, 0).unwrap();
        let frozen = FrozenModel::new(&m.model, &out.cache, 0).unwrap();
        let relp = RelpMlp::new(&m.model, &out.cache, 0, RelpRule::HalfRule).unwrap();
        let (n_layers, d, last) = (m.model.cfg.n_layers, m.model.cfg.d_model, t.len() - 1);
        let sorted = [
            (n_layers, last),
            (n_layers - 1, last),
            (1, last - 1),
            (1, 2),
            (0, 3),
            (0, last),
        ];
        let s = seeds(&sorted, d);
        let perm: Vec<usize> = (0..sorted.len()).rev().collect();
        let r = reordered(&s, &perm);
        // A pass over the first positions only, after a full one: it reads the prompt-wide
        // matrix the first pass built, on its first keys and positions.
        let short = seeds(&[(n_layers - 1, 3), (1, 2), (0, 1)], d);
        let paths: [(&str, &dyn MlpPath); 2] = [("stop", &StopMlp), ("relp", &relp)];
        for (what, mlp) in paths {
            for (order, seeds, direct) in [
                ("sorted", &s, true),
                ("reversed", &r, false),
                ("short", &short, true),
            ] {
                let plain = if order == "reversed" { &s } else { seeds };
                let want = run(&frozen, plain, ReadSite::MlpIn, mlp, n_layers).0[n_layers]
                    .clone()
                    .unwrap();
                let t_pass = want[0].len() / d;
                let mut dots = Dots {
                    tokens: tokens.clone(),
                    dots: None,
                    read_directly: false,
                };
                frozen
                    .vjp(seeds, ReadSite::MlpIn, WriteSite::MlpOut, mlp, &mut dots)
                    .unwrap();
                assert_eq!(
                    dots.read_directly, direct,
                    "{name} {what} {order}: which path read the token edges"
                );
                let got = dots.dots.unwrap();
                for (i, row) in want.iter().enumerate() {
                    let j = if order == "reversed" {
                        perm.iter().position(|&p| p == i).unwrap()
                    } else {
                        i
                    };
                    for p in 0..t_pass {
                        let g = &row[p * d..(p + 1) * d];
                        let e = tokens.get(p).unwrap().to_vec1::<f32>().unwrap();
                        let dot: f32 = g.iter().zip(&e).map(|(a, b)| a * b).sum();
                        let scale = 1.0 + g.iter().zip(&e).map(|(a, b)| (a * b).abs()).sum::<f32>();
                        let diff = (got[j][p] - dot).abs();
                        assert!(
                            diff <= 1e-5 * scale,
                            "{name} {what} {order}: row {i} position {p}: {} vs {dot}",
                            got[j][p]
                        );
                    }
                }
            }
        }
    }
}
