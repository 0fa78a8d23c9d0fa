//! Computes a graph's [`Accounting`]: each target's de-meaned logit and each feature's
//! pre-activation split into the graph's edges plus every other writer, named.
//!
//! The frozen linear model is affine in what is written to the residual stream, so each
//! non-node writer is measured by running the constrained model (the model's own forward code
//! with norms, attention patterns and MLP outputs frozen; [`Constrained`]) with every node
//! source removed and the writers added back one group at a time:
//!
//! 1. nothing written (no embeddings, write sites hold only the live skip path): what remains
//!    comes from attention biases (and, for a feature, its encoder bias);
//! 2. plus the transcoders' decoder biases at every position;
//! 3. plus the BOS position's MLP outputs beyond the decoder bias and skip (BOS has no feature
//!    or error nodes, as in circuit-tracer, yet it writes, and later positions read it
//!    through attention).
//!
//! Differences of consecutive runs are exact contributions; the edges come from the graph's
//! own backward rows. Nothing is backed out as "what is left": the residual is a check.

use adag_core::HookName;
use adag_graph::{Accounting, NodeAccount, TargetAccount, Term};
use adag_model::{ActivationCache, Transformer};
use candle_core::{DType, Tensor};
use rayon::prelude::*;

use crate::constrained::Constrained;
use crate::error::{joined, Context, Result};
use crate::transcoder::{EncoderRows, TranscoderSet};

/// Names of the terms, as stored in graph files.
pub const ENCODER_BIAS: &str = "transcoder encoder bias";
/// Attention (and any other non-transcoder) biases, through the frozen model.
pub const ATTENTION_BIASES: &str = "attention biases";
/// The transcoders' `b_dec` at every position.
pub const DECODER_BIASES: &str = "transcoder decoder biases";
/// The BOS position's MLP outputs (no node carries them).
pub const BOS_MLP: &str = "BOS position MLP outputs";
/// Edges from active features that are not graph nodes (`max_feature_nodes` cap).
pub const UNSELECTED_FEATURES: &str = "features outside the graph";

/// What one constrained run shows: every target's de-meaned value and every active feature's
/// pre-activation.
struct Observed {
    targets: Vec<f32>,
    pre: Vec<f32>,
    demean: Vec<f32>,
}

/// The graph's rows as the engine computed them, before assembly.
pub(crate) struct Rows<'a> {
    /// Row-major rows over all `n_active + (n_layers + 1) * n_pos` source columns.
    pub rows: &'a [f32],
    /// Per row: an active-feature index, or `n_cols + k` for target `k`.
    pub node: &'a [usize],
    pub n_active: usize,
    pub n_errors: usize,
}

pub(crate) struct Inputs<'a> {
    pub model: &'a Transformer,
    pub clean: &'a ActivationCache,
    pub transcoders: &'a TranscoderSet,
    pub tokens: &'a [u32],
    /// De-meaned target directions `[k, d_model]` (any dtype).
    pub directions: &'a Tensor,
    /// Vocabulary ids of the targets (custom targets have ids ≥ d_vocab).
    pub target_ids: &'a [u32],
    pub active: &'a [[u32; 3]],
    /// Feature nodes, as indices into `active`, in node order.
    pub selected: &'a [u32],
    /// The mean unembedding row ([`unembed_mean`]).
    pub unembed_mean: &'a Tensor,
}

/// The mean unembedding row `[1, d_model]` in f32, summed in chunks of rows: the whole matrix in
/// f32 would be 2.4 GB at a 256k vocabulary, and every accounting run needs only this vector
/// (the mean logit is its product with the final residual).
pub(crate) fn unembed_mean(unembed: &Tensor) -> Result<Tensor> {
    const CHUNK: usize = 16_384;
    let (v, d) = unembed.dims2().ctx("unembedding")?;
    let mut sum = Tensor::zeros((1, d), DType::F32, unembed.device()).ctx("mean logit")?;
    for start in (0..v).step_by(CHUNK) {
        let n = CHUNK.min(v - start);
        // A row of ones times the chunk: candle's column sum over dim 0 is a strided loop
        // (57 ms for a 32k × 512 unembedding), the product streams the chunk once (a few ms).
        let ones = Tensor::ones((1, n), DType::F32, unembed.device()).ctx("ones")?;
        let rows = unembed
            .narrow(0, start, n)
            .and_then(|u| u.to_dtype(DType::F32))
            .and_then(|u| ones.matmul(&u))
            .ctx("unembedding rows")?;
        sum = (sum + rows).ctx("mean logit")?;
    }
    (sum / v as f64).ctx("mean logit")
}

/// The active features of one layer (their indices into `active` and `(position, feature)`
/// entries) and their encoder rows, read once for the four runs.
struct LayerEncoders {
    idx: Vec<usize>,
    entries: Vec<(usize, u32)>,
    rows: EncoderRows,
}

fn layer_encoders(inp: &Inputs) -> Result<Vec<LayerEncoders>> {
    let device = inp.clean.get(HookName::Embed)?.device().clone();
    (0..inp.transcoders.n_layers())
        .map(|l| {
            let (idx, entries): (Vec<usize>, Vec<(usize, u32)>) = inp
                .active
                .iter()
                .enumerate()
                .filter(|(_, a)| a[0] as usize == l)
                .map(|(i, &[_, p, f])| (i, (p as usize, f)))
                .unzip();
            let rows = inp
                .transcoders
                .encoder_rows(l, entries.iter().map(|&(_, f)| f), &device)?;
            Ok(LayerEncoders { idx, entries, rows })
        })
        .collect()
}

fn observe(inp: &Inputs, encoders: &[LayerEncoders], run: &mut Constrained) -> Result<Observed> {
    let model = inp.model;
    // Only the final residual is read: the unembedding of every position is skipped.
    run.logits = false;
    run.run(model, inp.tokens)?;
    let n_pos = inp.tokens.len();
    let normalized = run
        .final_normalized
        .as_ref()
        .ok_or_else(|| crate::Error::Invalid("final norm not recorded".into()))?;
    let w = model
        .weights
        .ln_final
        .effective_weight()
        .ctx("final norm")?;
    let x = normalized
        .get(0)
        .and_then(|n| n.get(n_pos - 1))
        .and_then(|n| n.to_dtype(DType::F32))
        .and_then(|n| n * w)
        .and_then(|n| n.unsqueeze(1))
        .ctx("final residual")?;
    let targets = inp
        .directions
        .to_dtype(DType::F32)
        .and_then(|d| d.matmul(&x))
        .and_then(|v| v.squeeze(1))
        .and_then(|v| v.to_vec1::<f32>())
        .ctx("target values")?;
    let mean = inp
        .unembed_mean
        .matmul(&x)
        .and_then(|v| v.flatten_all())
        .and_then(|v| v.to_vec1::<f32>())
        .ctx("mean logit")?;
    // Only the active features' pre-activations, layer by layer.
    let mut pre = vec![0f32; inp.active.len()];
    for (l, layer) in encoders.iter().enumerate() {
        let values = layer.rows.pre_activations(&run.input(l)?, &layer.entries)?;
        for (&i, v) in layer.idx.iter().zip(values) {
            pre[i] = v;
        }
    }
    Ok(Observed {
        targets,
        pre,
        demean: mean,
    })
}

/// Which writers a run keeps besides the live skip path.
#[derive(Clone, Copy)]
struct Keep {
    decoder_bias: bool,
    bos_mlp: bool,
}

fn run_keeping(inp: &Inputs, encoders: &[LayerEncoders], keep: Keep) -> Result<Observed> {
    let tc = inp.transcoders;
    let mut run = Constrained::new(inp.clean, tc);
    let embed = inp.clean.get(HookName::Embed)?;
    run.embed_delta = Some(
        embed
            .to_dtype(DType::F32)
            .and_then(|e| e.neg())
            .ctx("embed")?,
    );
    for l in 0..tc.n_layers() {
        let clean = inp
            .clean
            .get(HookName::Block(l, tc.write.site()))?
            .to_dtype(DType::F32)
            .ctx("write site")?;
        let (_, t, d) = clean.dims3().ctx("write site shape")?;
        // The constrained write is clean + (skip − skip₀) + delta; delta = keep − clean + skip₀
        // leaves skip + keep.
        let mut delta = clean.neg().ctx("delta")?;
        let x0 = inp
            .clean
            .get(HookName::Block(l, tc.read.site()))?
            .get(0)
            .and_then(|x| x.to_dtype(DType::F32))
            .ctx("read site")?;
        if let Some(s0) = tc.skip(l, &x0)? {
            delta = (delta + s0.unsqueeze(0)).ctx("skip")?;
        }
        if keep.decoder_bias {
            let b = tc.layers[l].b_dec.to_dtype(DType::F32).ctx("b_dec")?;
            delta = delta.broadcast_add(&b).ctx("b_dec")?;
        }
        if keep.bos_mlp {
            // At BOS the whole clean write stays: delta there is exactly zero.
            let rest = delta.narrow(1, 1, t - 1).ctx("delta")?;
            let zero = Tensor::zeros((1, 1, d), DType::F32, clean.device()).ctx("zero")?;
            delta = Tensor::cat(&[&zero, &rest], 1).ctx("delta")?;
        }
        run.write_deltas[l] = Some(delta);
    }
    observe(inp, encoders, &mut run)
}

fn edge_sums(row: &[f32], rows: &Rows, is_node: &[bool]) -> (f32, f32, f32, f32) {
    let f64sum = |xs: &mut dyn Iterator<Item = f32>| xs.map(|x| x as f64).sum::<f64>() as f32;
    let (feats, rest) = row.split_at(rows.n_active);
    let (errs, toks) = rest.split_at(rows.n_errors);
    // One pass with both sums: each still adds its own entries in index order (the same
    // result as two filtered passes), and the two dependency chains overlap.
    let (mut sel, mut unsel) = (0f64, 0f64);
    for (&x, &node) in feats.iter().zip(is_node) {
        if node {
            sel += x as f64;
        } else {
            unsel += x as f64;
        }
    }
    let (sel, unsel) = (sel as f32, unsel as f32);
    (
        sel,
        unsel,
        f64sum(&mut errs.iter().copied()),
        f64sum(&mut toks.iter().copied()),
    )
}

/// The accounting of a graph: four constrained runs plus sums over the backward rows.
pub(crate) fn account(inp: &Inputs, rows: &Rows) -> Result<Accounting> {
    let encoders = layer_encoders(inp)?;
    let keep = |decoder_bias, bos_mlp| {
        run_keeping(
            inp,
            &encoders,
            Keep {
                decoder_bias,
                bos_mlp,
            },
        )
    };
    // The runs are independent forward passes over a few tokens, whose small products keep one
    // core busy: two threads run two each (measured: the accounting takes the same time with one
    // or two candle threads).
    let (first, second) = std::thread::scope(|scope| {
        let second = scope.spawn(|| Ok::<_, crate::Error>((keep(true, false)?, keep(true, true)?)));
        let first = (|| {
            let full = observe(
                inp,
                &encoders,
                &mut Constrained::new(inp.clean, inp.transcoders),
            )?;
            Ok::<_, crate::Error>((full, keep(false, false)?))
        })();
        let second = joined(second.join(), "an accounting run");
        (first, second)
    });
    let ((full, none), (dec, bos)) = (first?, second?);
    let n_active = rows.n_active;
    let n_cols = n_active + rows.n_errors + inp.tokens.len();
    let mut is_node = vec![false; n_active];
    for &s in inp.selected {
        is_node[s as usize] = true;
    }
    let b_enc: Vec<Vec<f32>> = inp
        .transcoders
        .layers
        .iter()
        .map(|l| {
            l.b_enc
                .to_dtype(DType::F32)
                .and_then(|b| b.to_vec1::<f32>())
        })
        .collect::<candle_core::Result<_>>()
        .ctx("b_enc")?;
    // Each row's edge sums read the whole row once, rows spread over rayon's threads.
    let sums: Vec<(f32, f32, f32, f32)> = rows.rows[..rows.node.len() * n_cols]
        .par_chunks(n_cols.max(1))
        .map(|row| edge_sums(row, rows, &is_node))
        .collect();
    let d_vocab = inp.model.cfg.d_vocab as u32;
    let mut targets: Vec<Option<TargetAccount>> = vec![None; inp.target_ids.len()];
    let mut features: Vec<Option<NodeAccount>> = vec![None; n_active];
    for (&node, &(sel, unsel, errors, tokens)) in rows.node.iter().zip(&sums) {
        let (i, value, head) = if node >= n_cols {
            let k = node - n_cols;
            (
                k,
                full.targets[k],
                vec![(ATTENTION_BIASES, none.targets[k])],
            )
        } else {
            let [l, _, f] = inp.active[node];
            let be = b_enc[l as usize][f as usize];
            (
                node,
                full.pre[node],
                vec![(ENCODER_BIAS, be), (ATTENTION_BIASES, none.pre[node] - be)],
            )
        };
        let pick = |o: &Observed| {
            if node >= n_cols {
                o.targets[i]
            } else {
                o.pre[i]
            }
        };
        let mut terms: Vec<Term> = head
            .into_iter()
            .chain([
                (DECODER_BIASES, pick(&dec) - pick(&none)),
                (BOS_MLP, pick(&bos) - pick(&dec)),
                (UNSELECTED_FEATURES, unsel),
            ])
            .map(|(name, value)| Term {
                name: name.into(),
                value,
            })
            .collect();
        if is_node.iter().all(|&b| b) {
            terms.retain(|t| t.name != UNSELECTED_FEATURES);
        }
        let mut acc = NodeAccount {
            value,
            features: sel,
            errors,
            tokens,
            terms,
            residual: 0.0,
        };
        acc.close();
        if node >= n_cols {
            targets[i] = Some(TargetAccount {
                account: acc,
                demean_constant: (inp.target_ids[i] < d_vocab).then_some(full.demean[0]),
            });
        } else {
            features[i] = Some(acc);
        }
    }
    Ok(Accounting {
        targets: targets
            .into_iter()
            .map(|t| t.ok_or_else(|| crate::Error::Invalid("a target has no row".into())))
            .collect::<Result<_>>()?,
        features: inp
            .selected
            .iter()
            .map(|&s| {
                features[s as usize]
                    .clone()
                    .ok_or_else(|| crate::Error::Invalid("a feature node has no row".into()))
            })
            .collect::<Result<_>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The chunked ones-times-chunk product is the column mean, over a vocabulary that is not a
    /// multiple of the chunk and in bf16 as well as f32.
    #[test]
    fn unembed_mean_is_the_mean_row() {
        let (v, d) = (40_000, 6);
        let u = Tensor::randn(0f32, 1.0, (v, d), &Device::Cpu).unwrap();
        for dtype in [DType::F32, DType::BF16] {
            let u = u.to_dtype(dtype).unwrap();
            let got = unembed_mean(&u)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let rows = u.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap();
            for (j, g) in got.iter().enumerate() {
                let want = rows.iter().map(|r| r[j] as f64).sum::<f64>() / v as f64;
                assert!(
                    (*g as f64 - want).abs() < 1e-5,
                    "{dtype:?} column {j}: {g} vs {want}"
                );
            }
        }
    }
}
