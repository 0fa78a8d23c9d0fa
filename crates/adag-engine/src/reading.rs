//! Reading edges off a backward pass: the part of a basis that says how its nodes write.
//!
//! Every source node writes one vector into the residual stream at a (layer, position): a
//! transcoder feature `a·W_dec[f]`, an error vector, a neuron `a·W_down[:, i]`. Grouped by
//! (layer, position), the direct effects of all of them on a batch of seeds are one matrix
//! product per group with the gradient at that position.

use std::time::Instant;

use candle_core::{DType, Tensor};

use crate::cpu_gemm::Strided;
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
    /// The rows, zeroed before the pass.
    pub out: &'a mut [f32],
    /// Floating-point operations of the reads.
    pub flops: f64,
    /// Seconds spent reading.
    pub secs: f64,
}

impl<'a> RowCollector<'a> {
    /// A collector writing the rows of `out.len() / n_cols` seeds into `out` (a buffer of
    /// the caller's, or the rows' place in a row store), which must hold zeros: the reads add
    /// into it.
    pub fn new(
        groups: &'a [Vec<Option<SourceGroup>>],
        tokens: &'a Tensor,
        token_offset: usize,
        n_cols: usize,
        out: &'a mut [f32],
    ) -> Self {
        RowCollector {
            groups,
            tokens,
            token_offset,
            n_cols,
            out,
            flops: 0.0,
            secs: 0.0,
        }
    }
}

impl Visitor for RowCollector<'_> {
    fn takes_row_prefix(&self) -> bool {
        true
    }

    fn write_site(&mut self, layer: usize, grad: &Tensor) -> Result<()> {
        let clock = Instant::now();
        let read = self.read_write_site(layer, grad);
        self.secs += clock.elapsed().as_secs_f64();
        read
    }

    fn embed(&mut self, grad: &Tensor) -> Result<()> {
        let clock = Instant::now();
        let read = self.read_embed(grad);
        self.secs += clock.elapsed().as_secs_f64();
        read
    }

    fn embed_reads(&self) -> Option<Tensor> {
        Some(self.tokens.clone())
    }

    fn embed_dots(&mut self, dots: &Tensor) -> Result<()> {
        let clock = Instant::now();
        let read = self.add_token_edges(dots);
        self.secs += clock.elapsed().as_secs_f64();
        read
    }
}

impl RowCollector<'_> {
    fn read_write_site(&mut self, layer: usize, grad: &Tensor) -> Result<()> {
        if self.read_in_place(layer, grad)? {
            return Ok(());
        }
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

    /// [`RowCollector::read_write_site`] for an `f32` gradient in CPU memory: each group's
    /// product accumulates straight into the rows, one call per run of consecutive columns,
    /// reading the gradient at its position in place. Through candle the same reads were a
    /// product per position into a fresh zeroed tensor, a concatenation, a copy into nested
    /// vectors and a scatter: at the perf fixture's ~40 sources per position the products
    /// were the smaller part. `false` where this path does not apply (another device or
    /// dtype); the caller then reads through candle.
    fn read_in_place(&mut self, layer: usize, grad: &Tensor) -> Result<bool> {
        let (k, t, d) = grad.dims3().ctx("gradient")?;
        let (storage, layout) = grad.storage_and_layout();
        let candle_core::Storage::Cpu(candle_core::CpuStorage::F32(data)) = &*storage else {
            return Ok(false);
        };
        let [s_row, s_pos, s_dim] = layout.stride() else {
            return Ok(false);
        };
        let (s_row, s_pos, s_dim) = (*s_row, *s_pos, *s_dim);
        let base = layout.start_offset();
        // The furthest element the gradient's strides reach must lie in its storage.
        let reach = |n: usize, s: usize| n.saturating_sub(1) * s;
        if k == 0 || t == 0 {
            return Ok(true);
        }
        if base + reach(k, s_row) + reach(t, s_pos) + reach(d, s_dim) >= data.len()
            || k * self.n_cols > self.out.len()
        {
            return Err(crate::Error::Invalid(format!(
                "gradient [{k}, {t}, {d}] does not fit its storage or the {} rows",
                self.out.len() / self.n_cols.max(1)
            )));
        }
        // One thread per product: at tens of sources per position a product is too small to
        // split (splitting cost more thread time than it saved, and the other pass thread
        // keeps the second core busy).
        let parallelism = gemm::Parallelism::None;
        // Every group is checked before any is read, so a fallback leaves the rows untouched.
        let mut sources = Vec::new();
        for p in 0..t {
            let Some(group) = &self.groups[layer][p] else {
                continue;
            };
            let (w_storage, w_layout) = group.rows.storage_and_layout();
            let m = group.cols.len();
            let fits = matches!(
                &*w_storage,
                candle_core::Storage::Cpu(candle_core::CpuStorage::F32(_))
            ) && w_layout.is_contiguous()
                && w_layout.dims() == [m, d];
            if !fits {
                return Ok(false);
            }
            if group.cols.iter().any(|&c| c as usize >= self.n_cols) {
                return Err(crate::Error::Invalid(format!(
                    "source group at layer {layer}, position {p} has a column beyond {}",
                    self.n_cols
                )));
            }
            sources.push((p, group, w_storage, w_layout.start_offset()));
        }
        for (p, group, w_storage, offset) in &sources {
            let candle_core::Storage::Cpu(candle_core::CpuStorage::F32(w)) = &**w_storage else {
                continue;
            };
            let (p, m) = (*p, group.cols.len());
            let w = &w[*offset..];
            // Runs of consecutive columns: one product each, written in place.
            let mut start = 0;
            while start < m {
                let mut end = start + 1;
                while end < m && group.cols[end] == group.cols[end - 1] + 1 {
                    end += 1;
                }
                let col = group.cols[start] as usize;
                // SAFETY: the destination is rows 0..k of `out` (row stride n_cols), columns
                // col..col + (end − start) ≤ n_cols, checked above; the gradient's elements
                // (base + p·s_pos + i·s_row + j·s_dim) lie in `data` (checked above); the
                // sources are rows start..end of the contiguous [m, d] `w`.
                unsafe {
                    crate::cpu_gemm::product(
                        (k, end - start, d),
                        Strided::rows(self.out.as_mut_ptr().add(col), self.n_cols),
                        true,
                        Strided {
                            ptr: data.as_ptr().add(base + p * s_pos),
                            rs: s_row,
                            cs: s_dim,
                        },
                        // Sources are rows of w, read as its transpose: [d, end − start].
                        Strided {
                            ptr: w.as_ptr().add(start * d),
                            rs: 1,
                            cs: d,
                        },
                        parallelism,
                    )
                };
                start = end;
            }
            self.flops += 2.0 * (k * d * m) as f64;
        }
        Ok(true)
    }

    fn read_embed(&mut self, grad: &Tensor) -> Result<()> {
        self.flops += 2.0 * grad.elem_count() as f64;
        let dots = crate::frozen::embedding_dots(grad, self.tokens)?;
        self.add_token_edges(&dots)
    }

    /// Adds `dots` `[rows, t]` (each row's token edges by position) to the rows' token columns.
    fn add_token_edges(&mut self, dots: &Tensor) -> Result<()> {
        let vals = dots
            .to_dtype(DType::F32)
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
