//! RelP linearisation of the gated MLP, as an [`MlpPath`] of the frozen model.
//!
//! `a = act(z) ⊙ u` with `z = x̃ W_gateᵀ`, `u = x̃ W_upᵀ`. The gate coefficient
//! `c = act(z) / (z + 1e-10)` is frozen (the reference's constant), so `a = (c ⊙ z) ⊙ u` is a
//! product of two linear functions of `x̃`; the half rule splits its gradient evenly between the
//! factors, which makes `∇a · x̃ = a` (Euler) and every attribution complete.

use adag_core::{HookName, Site};
use adag_model::{ActivationCache, Transformer};
use candle_core::{DType, Tensor, TensorId};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Result};
use crate::frozen::{MlpJvp, MlpPath, ReadSite};

/// How gradient crosses `act(z) ⊙ u`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelpRule {
    /// RelP with the half rule: `∂z = ½ c ⊙ u ⊙ ∂a`, `∂u = ½ act(z) ⊙ ∂a` (the reference's
    /// default; conserves relevance).
    HalfRule,
    /// RelP without the half rule: `∂z = c ⊙ u ⊙ ∂a`, `∂u = act(z) ⊙ ∂a` (the reference's
    /// `disable_half_rule`; counts the product twice).
    NoHalfRule,
    /// The gate is a constant: `∂u = act(z) ⊙ ∂a` only (the reference's `StopGradGateMLP`;
    /// conserves relevance too).
    StopGate,
}

/// Frozen coefficients of one layer, for one prompt: `[n_pos, d_mlp]` each.
struct Coeffs {
    /// `act(z)/z ⊙ u`: multiplies `∂a` into `∂z`.
    dz: Tensor,
    /// `act(z)`: multiplies `∂a` into `∂u`.
    du: Tensor,
}

/// Cached `∂a` tensors kept for [`MlpPath::vjp`] (a few passes may be in flight at once).
const SHARED_ENTRIES: usize = 8;

/// The RelP MLP of one prompt.
pub struct RelpMlp<'m> {
    model: &'m Transformer,
    layers: Vec<Coeffs>,
    rule: RelpRule,
    /// `∂a` of write-site gradients a visitor asked for, reused by `vjp` on the same gradient
    /// (a backward calls the visitor, then the MLP path, with one tensor). Keyed by layer and
    /// tensor identity, because a batch's backward passes may run on several threads at once.
    shared: std::sync::Mutex<Vec<(usize, TensorId, Tensor)>>,
}

impl<'m> RelpMlp<'m> {
    /// Cache sites [`RelpMlp::new`] reads (besides the frozen model's).
    pub const SITES: [Site; 2] = [Site::MlpPre, Site::MlpPreLinear];

    /// Freezes the gate coefficients of batch item `item`.
    pub fn new(
        model: &'m Transformer,
        cache: &ActivationCache,
        item: usize,
        rule: RelpRule,
    ) -> Result<Self> {
        let dt = model.dtype();
        let act = model.cfg.activation;
        let mut layers = Vec::with_capacity(model.cfg.n_layers);
        for l in 0..model.cfg.n_layers {
            let z = cache
                .item(HookName::Block(l, Site::MlpPre), item)?
                .to_dtype(DType::F32)
                .ctx("gate")?;
            let u = cache
                .item(HookName::Block(l, Site::MlpPreLinear), item)?
                .to_dtype(DType::F32)
                .ctx("up")?;
            let g = act.apply(&z).ctx("gate activation")?;
            let c = g.div(&(&z + 1e-10).ctx("gate")?).ctx("gate coefficient")?;
            let half = if rule == RelpRule::HalfRule { 0.5 } else { 1.0 };
            let dz = match rule {
                RelpRule::StopGate => {
                    Tensor::zeros(z.dims(), DType::F32, z.device()).ctx("zeros")?
                }
                _ => (c * &u).and_then(|x| x * half).ctx("RelP gate factor")?,
            };
            let du = (g * half).ctx("RelP up factor")?;
            layers.push(Coeffs {
                dz: dz.to_dtype(dt).ctx("dtype")?,
                du: du.to_dtype(dt).ctx("dtype")?,
            });
        }
        Ok(RelpMlp {
            model,
            layers,
            rule,
            shared: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The rule in use.
    pub fn rule(&self) -> RelpRule {
        self.rule
    }

    /// `∂a/∂x̃` rows at `mlp.hook_in` for neurons `(layer, pos, neuron)`: the seeds that make a
    /// neuron a target. `[m, d_model]`.
    pub fn read_vectors(&self, layer: usize, positions: &[u32], neurons: &[u32]) -> Result<Tensor> {
        let mlp = &self.model.weights.blocks[layer].mlp;
        let dev = mlp.gate.weight.device();
        let idx = Tensor::new(neurons, dev).ctx("neuron ids")?;
        let w_gate = mlp.gate.weight.index_select(&idx, 0).ctx("gate rows")?;
        let w_up = mlp.up.weight.index_select(&idx, 0).ctx("up rows")?;
        let pick = |t: &Tensor| -> Result<Tensor> {
            let flat: Vec<u32> = positions
                .iter()
                .zip(neurons)
                .map(|(&p, &n)| p * t.dim(1).unwrap_or(0) as u32 + n)
                .collect();
            let i = Tensor::new(flat.as_slice(), dev).ctx("coefficient ids")?;
            t.flatten_all()
                .and_then(|f| f.index_select(&i, 0))
                .and_then(|v| v.unsqueeze(1))
                .ctx("coefficients")
        };
        let c = &self.layers[layer];
        let a = w_gate.broadcast_mul(&pick(&c.dz)?).ctx("gate part")?;
        let b = w_up.broadcast_mul(&pick(&c.du)?).ctx("up part")?;
        (a + b).ctx("read vectors")
    }

    /// `∂(·)/∂a` from a gradient at the MLP's write site `[n, t, d]`: `[n, t, d_mlp]`.
    pub fn grad_activations(&self, layer: usize, grad_write: &Tensor) -> Result<Tensor> {
        let (n, t, d) = grad_write.dims3().ctx("gradient")?;
        let w = &self.model.weights.blocks[layer].mlp.down.weight; // [d, f]
        grad_write
            .reshape((n * t, d))
            .and_then(|g| g.matmul(w))
            .and_then(|g| g.reshape((n, t, w.dim(1)?)))
            .ctx("down_proj backward")
    }
}

impl RelpMlp<'_> {
    /// [`RelpMlp::grad_activations`], remembered so that the MLP path's `vjp` on the same
    /// gradient does not compute it again. For visitors of a backward that uses this path.
    pub fn grad_activations_shared(&self, layer: usize, grad_write: &Tensor) -> Result<Tensor> {
        let g_a = self.grad_activations(layer, grad_write)?;
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        // One entry per pass in flight is enough; an entry its pass never took is dropped here.
        if shared.len() >= SHARED_ENTRIES {
            shared.remove(0);
        }
        shared.push((layer, grad_write.id(), g_a.clone()));
        Ok(g_a)
    }
}

impl MlpPath for RelpMlp<'_> {
    fn vjp(&self, layer: usize, grad_write: &Tensor) -> Result<Option<(ReadSite, Tensor)>> {
        let (n, t, d) = grad_write.dims3().ctx("gradient")?;
        let cached = {
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            shared
                .iter()
                .position(|(l, id, _)| *l == layer && *id == grad_write.id())
                .map(|i| shared.remove(i).2)
        };
        let g_a = match cached {
            Some(g) => g,
            None => self.grad_activations(layer, grad_write)?,
        };
        let c = &self.layers[layer];
        let f = c.du.dim(1).ctx("coefficients")?;
        let mlp = &self.model.weights.blocks[layer].mlp;
        let g_u = g_a
            .broadcast_mul(&c.du.narrow(0, 0, t).ctx("cone")?)
            .ctx("up backward")?;
        let mut g_x = g_u
            .reshape((n * t, f))
            .and_then(|g| g.matmul(&mlp.up.weight))
            .ctx("up_proj backward")?;
        if self.rule != RelpRule::StopGate {
            let g_z = g_a
                .broadcast_mul(&c.dz.narrow(0, 0, t).ctx("cone")?)
                .ctx("gate backward")?;
            g_x = (g_x
                + g_z
                    .reshape((n * t, f))
                    .and_then(|g| g.matmul(&mlp.gate.weight))
                    .ctx("gate_proj backward")?)
            .ctx("sum")?;
        }
        Ok(Some((
            ReadSite::MlpIn,
            g_x.reshape((n, t, d)).ctx("shape")?,
        )))
    }

    fn flops(&self, layer: usize, rows: usize) -> f64 {
        let c = &self.model.cfg;
        let mats = if self.rule == RelpRule::StopGate {
            2.0
        } else {
            3.0
        };
        let _ = layer;
        2.0 * rows as f64 * (c.d_model * c.d_mlp) as f64 * mats
    }
}

impl MlpJvp for RelpMlp<'_> {
    fn jvp(
        &self,
        layer: usize,
        x: &Tensor,
        on_neurons: &mut dyn FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<Tensor> {
        let (n, t, d) = x.dims3().ctx("tangent")?;
        let c = &self.layers[layer];
        let f = c.du.dim(1).ctx("coefficients")?;
        let mlp = &self.model.weights.blocks[layer].mlp;
        let flat = x.reshape((n * t, d)).ctx("tangent")?;
        let du = flat
            .matmul(&mlp.up.weight.t().ctx("up")?)
            .and_then(|u| u.reshape((n, t, f)))
            .ctx("up_proj forward")?;
        let mut da = du
            .broadcast_mul(&c.du.narrow(0, 0, t).ctx("cone")?)
            .ctx("up factor")?;
        if self.rule != RelpRule::StopGate {
            let dz = flat
                .matmul(&mlp.gate.weight.t().ctx("gate")?)
                .and_then(|z| z.reshape((n, t, f)))
                .ctx("gate_proj forward")?;
            da = (da
                + dz.broadcast_mul(&c.dz.narrow(0, 0, t).ctx("cone")?)
                    .ctx("gate factor")?)
            .ctx("sum")?;
        }
        on_neurons(layer, &da)?;
        let _ = f;
        da.reshape((n * t, f))
            .and_then(|a| a.matmul(&mlp.down.weight.t()?))
            .and_then(|o| o.reshape((n, t, d)))
            .ctx("down_proj forward")
    }

    fn flops(&self, layer: usize, rows: usize) -> f64 {
        MlpPath::flops(self, layer, rows)
    }
}
