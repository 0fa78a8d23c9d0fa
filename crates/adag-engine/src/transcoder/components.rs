//! What one prompt makes of a transcoder set: active features, encoder and decoder vectors,
//! error vectors, grouped the way the backward pass reads them.

use adag_core::HookName;
use adag_model::ActivationCache;
use candle_core::{DType, Tensor};

use super::{TranscoderKind, TranscoderSet};
use crate::error::{Context, Result};

pub use crate::reading::SourceGroup;

/// Decoder rows routed to one output layer: `(rows [m, d], positions, columns)`.
type Routed = (Tensor, Vec<u32>, Vec<u32>);

/// The attribution components of one prompt (circuit-tracer's `compute_attribution_components`).
pub struct Components {
    /// Active features `(layer, pos, feature)`, lexicographically ordered; this order defines
    /// feature node indices.
    pub active: Vec<[u32; 3]>,
    /// Activation of each active feature.
    pub activations: Vec<f32>,
    /// Raw encoder rows `W_enc[l][f]` of the active features, `[n_active, d_model]`.
    pub encoders: Tensor,
    /// `groups[layer][pos]`: decoder rows (scaled by activation) of every feature writing
    /// there, then the error vector (None when nothing does).
    pub groups: Vec<Vec<Option<SourceGroup>>>,
    /// `[n_pos, d_model]`: token vectors (the embedding as it enters the residual stream).
    pub tokens: Tensor,
    /// `[n_layers, n_pos, d_model]`: `mlp_out − reconstruction`, zero at position 0.
    pub errors: Tensor,
}

impl Components {
    /// Number of active features.
    pub fn n_active(&self) -> usize {
        self.active.len()
    }
}

/// One layer's share of [`TranscoderSet::components`]: its input, active features (positions,
/// ids, activations) and, when any are active, their encoder rows and scaled decoder rows.
struct Encoded {
    x: Tensor,
    pos: Vec<u32>,
    feat: Vec<u32>,
    val: Vec<f32>,
    rows: Option<(Tensor, Tensor)>,
}

impl TranscoderSet {
    /// Encodes every layer of batch item `item` of `cache` (which must hold the transcoders'
    /// read and write hooks and `hook_embed`). Position 0 (BOS) is zeroed, as circuit-tracer
    /// does: its features are inactive and its error is zero.
    pub fn components(
        &self,
        cache: &ActivationCache,
        item: usize,
        dtype: DType,
    ) -> Result<Components> {
        let n_layers = self.n_layers();
        let tokens = cache.item(HookName::Embed, item)?;
        let dev = tokens.device().clone();
        let n_pos = tokens.dim(0).ctx("token vectors")?;
        let d = self.d_model;

        // Per layer, independently (so on candle's threads at once: each reads its own
        // mapped encoder and decoder rows): the input, the active features in (pos, feature)
        // order, their encoder rows and their decoder rows scaled by activation.
        let encode = |l: usize| -> Result<Encoded> {
            let x = cache
                .item(HookName::Block(l, self.read.site()), item)?
                .to_dtype(DType::F32)
                .ctx("transcoder input")?;
            let acts = self
                .activate(l, &self.pre_activations(l, &x)?)?
                .to_vec2::<f32>()
                .ctx("activations")?;
            let (mut pos, mut feat, mut val) = (Vec::new(), Vec::new(), Vec::new());
            for (p, row) in acts.iter().enumerate().skip(1) {
                for (f, &a) in row.iter().enumerate() {
                    if a != 0.0 {
                        pos.push(p as u32);
                        feat.push(f as u32);
                        val.push(a);
                    }
                }
            }
            let rows = if feat.is_empty() {
                None
            } else {
                let m = feat.len();
                let scale = Tensor::from_vec(val.clone(), (m, 1, 1), &dev).ctx("activations")?;
                let dec = self
                    .decoder_rows(l, &feat, &dev)?
                    .broadcast_mul(&scale)
                    .ctx("scaling decoders")?;
                Some((self.layers[l].w_enc.rows(&feat, &dev)?, dec))
            };
            Ok(Encoded {
                x,
                pos,
                feat,
                val,
                rows,
            })
        };
        let layers =
            adag_core::map_in_order(n_layers, candle_core::utils::get_num_threads(), &encode)?;

        let mut active = Vec::new();
        let mut activations = Vec::new();
        let mut encoders = Vec::with_capacity(n_layers);
        let mut inputs = Vec::with_capacity(n_layers);
        // Decoder rows routed to their output layer.
        let mut by_out: Vec<Vec<Routed>> = (0..n_layers).map(|_| Vec::new()).collect();
        let mut offset = 0u32;
        for (l, layer) in layers.into_iter().enumerate() {
            for ((&p, &f), &a) in layer.pos.iter().zip(&layer.feat).zip(&layer.val) {
                active.push([l as u32, p, f]);
                activations.push(a);
            }
            let m = layer.feat.len();
            if let Some((enc, rows)) = layer.rows {
                encoders.push(enc);
                let cols: Vec<u32> = (offset..offset + m as u32).collect();
                let n_out = match self.kind {
                    TranscoderKind::PerLayer => 1,
                    TranscoderKind::CrossLayer => n_layers - l,
                };
                for j in 0..n_out {
                    let slot = rows
                        .narrow(1, j, 1)
                        .and_then(|r| r.squeeze(1))
                        .and_then(|r| r.contiguous())
                        .ctx("decoder slot")?;
                    by_out[l + j].push((slot, layer.pos.clone(), cols.clone()));
                }
            }
            offset += m as u32;
            inputs.push(layer.x);
        }
        let encoders = if encoders.is_empty() {
            Tensor::zeros((0, d), DType::F32, &dev).ctx("encoders")?
        } else {
            Tensor::cat(&encoders, 0).ctx("encoders")?
        };

        let n_active = active.len() as u32;
        let mut groups = Vec::with_capacity(n_layers);
        let mut errors = Vec::with_capacity(n_layers);
        for (l, parts) in by_out.into_iter().enumerate() {
            let mlp_out = cache
                .item(HookName::Block(l, self.write.site()), item)?
                .to_dtype(DType::F32)
                .ctx("MLP output")?;
            let mut recon = self.layers[l]
                .b_dec
                .broadcast_as((n_pos, d))
                .and_then(|b| b.contiguous())
                .ctx("b_dec")?;
            if let Some(skip) = self.skip(l, &inputs[l])? {
                recon = (recon + skip).ctx("skip")?;
            }
            let (mut rows, mut pos, mut cols) = (Vec::new(), Vec::new(), Vec::new());
            for (r, p, c) in parts {
                rows.push(r);
                pos.extend(p);
                cols.extend(c);
            }
            if !rows.is_empty() {
                let all = Tensor::cat(&rows, 0).ctx("decoder rows")?;
                let idx = Tensor::new(pos.as_slice(), &dev).ctx("positions")?;
                recon = recon.index_add(&idx, &all, 0).ctx("reconstruction")?;
                rows = vec![all];
            }
            let mut error = (mlp_out - recon).ctx("error")?;
            let zero_first = Tensor::cat(
                &[
                    Tensor::zeros((1, d), DType::F32, &dev).ctx("zero")?,
                    error.narrow(0, 1, n_pos - 1).ctx("error")?,
                ],
                0,
            )
            .ctx("zeroing BOS error")?;
            error = zero_first;

            // Group by position: decoder rows first, then the error vector.
            let mut per_pos = Vec::with_capacity(n_pos);
            let all = rows.first();
            for p in 0..n_pos {
                let sel: Vec<u32> = (0..pos.len())
                    .filter(|&i| pos[i] as usize == p)
                    .map(|i| i as u32)
                    .collect();
                let mut group_rows = Vec::new();
                let mut group_cols: Vec<u32> = sel.iter().map(|&i| cols[i as usize]).collect();
                if let (Some(all), false) = (all, sel.is_empty()) {
                    let idx = Tensor::new(sel.as_slice(), &dev).ctx("row ids")?;
                    group_rows.push(all.index_select(&idx, 0).ctx("grouping")?);
                }
                group_rows.push(error.narrow(0, p, 1).ctx("error row")?);
                group_cols.push(n_active + (l * n_pos + p) as u32);
                let rows = Tensor::cat(&group_rows, 0)
                    .and_then(|r| r.to_dtype(dtype))
                    .ctx("source group")?;
                per_pos.push(Some(SourceGroup {
                    rows,
                    cols: group_cols,
                }));
            }
            groups.push(per_pos);
            errors.push(error);
        }
        Ok(Components {
            active,
            activations,
            encoders: encoders.to_dtype(dtype).ctx("encoders")?,
            groups,
            tokens: tokens.to_dtype(dtype).ctx("tokens")?,
            errors: Tensor::stack(&errors, 0).ctx("errors")?,
        })
    }
}
