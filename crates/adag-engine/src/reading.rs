//! Reading edges off a backward pass: the part of a basis that says how its nodes write.
//!
//! Every source node writes one vector into the residual stream at a (layer, position): a
//! transcoder feature `a·W_dec[f]`, an error vector, a neuron `a·W_down[:, i]`. Grouped by
//! (layer, position), the direct effects of all of them on a batch of seeds are one matrix
//! product per group with the gradient at that position.

use candle_core::{DType, Tensor};

use crate::error::{Context, Result};
use crate::frozen::Visitor;

/// Sources writing at one (layer, position).
pub struct SourceGroup {
    /// `[m, d_model]` write vectors in the model's dtype.
    pub rows: Tensor,
    /// Column of each row in the output; rows sharing a column add up (a cross-layer feature
    /// writes to several layers but is one node).
    pub cols: Vec<u32>,
}

/// Collects one batch of rows, `out[i·n_cols + col]`: sources from `groups[layer][pos]`, and
/// token embeddings (`tokens` `[n_pos, d_model]`) in columns `token_offset + pos`.
pub struct RowCollector<'a> {
    groups: &'a [Vec<Option<SourceGroup>>],
    tokens: &'a Tensor,
    token_offset: usize,
    n_cols: usize,
    /// The rows.
    pub out: Vec<f32>,
    /// Floating-point operations of the reads.
    pub flops: f64,
}

impl<'a> RowCollector<'a> {
    /// An empty collector for `n_rows` seeds.
    pub fn new(
        groups: &'a [Vec<Option<SourceGroup>>],
        tokens: &'a Tensor,
        token_offset: usize,
        n_cols: usize,
        n_rows: usize,
    ) -> Self {
        RowCollector {
            groups,
            tokens,
            token_offset,
            n_cols,
            out: vec![0.0; n_rows * n_cols],
            flops: 0.0,
        }
    }
}

impl Visitor for RowCollector<'_> {
    fn takes_row_prefix(&self) -> bool {
        true
    }

    fn write_site(&mut self, layer: usize, grad: &Tensor) -> Result<()> {
        let (_, t, _) = grad.dims3().ctx("gradient")?;
        let mut pieces = Vec::new();
        let mut cols: Vec<u32> = Vec::new();
        for p in 0..t {
            if let Some(group) = &self.groups[layer][p] {
                // A strided view (rows `t·d` apart): the product reads it in place, with no
                // transposed copy of the whole gradient.
                let g = grad
                    .narrow(1, p, 1)
                    .and_then(|g| g.squeeze(1))
                    .ctx("gradient row")?;
                let (n, d) = g.dims2().ctx("gradient row")?;
                self.flops += 2.0 * (n * d * group.cols.len()) as f64;
                pieces.push(
                    g.matmul(&group.rows.t().ctx("sources")?)
                        .ctx("reading sources")?,
                );
                cols.extend_from_slice(&group.cols);
            }
        }
        if pieces.is_empty() {
            return Ok(());
        }
        let vals = Tensor::cat(&pieces, 1)
            .and_then(|v| v.to_dtype(DType::F32))
            .and_then(|v| v.to_vec2::<f32>())
            .ctx("rows")?;
        for (i, row) in vals.iter().enumerate() {
            let base = i * self.n_cols;
            for (v, &c) in row.iter().zip(&cols) {
                self.out[base + c as usize] += v;
            }
        }
        Ok(())
    }

    fn embed(&mut self, grad: &Tensor) -> Result<()> {
        let (_, t, _) = grad.dims3().ctx("gradient")?;
        let tok = self.tokens.narrow(0, 0, t).ctx("token vectors")?;
        self.flops += 2.0 * grad.elem_count() as f64;
        let vals = grad
            .broadcast_mul(&tok)
            .and_then(|g| g.sum(2))
            .and_then(|v| v.to_dtype(DType::F32))
            .and_then(|v| v.to_vec2::<f32>())
            .ctx("token rows")?;
        for (i, row) in vals.iter().enumerate() {
            for (p, v) in row.iter().enumerate() {
                self.out[i * self.n_cols + self.token_offset + p] += v;
            }
        }
        Ok(())
    }
}
