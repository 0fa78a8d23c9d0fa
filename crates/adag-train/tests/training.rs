//! The trainer: a short run lowers the loss and is bit-for-bit reproducible; autograd
//! gradients through adag-model's forward pass match finite differences.

use adag_model::Batch;
use adag_train::lm::{LmParams, LmShape};
use adag_train::rng::Rng;
use adag_train::trainer::{lm_loss, train_demo, TrainConfig};
use candle_core::{Device, Tensor};

#[test]
fn short_run_lowers_loss_and_is_bit_for_bit_reproducible() {
    let cfg = TrainConfig {
        steps: 120,
        ..TrainConfig::tiny()
    };
    let a = train_demo(&cfg, None, &mut |_| {}).unwrap();
    let b = train_demo(&cfg, None, &mut |_| {}).unwrap();
    let head: f32 = a.losses[..10].iter().sum::<f32>() / 10.0;
    let tail: f32 = a.losses[cfg.steps - 10..].iter().sum::<f32>() / 10.0;
    assert!(tail < 0.6 * head, "loss {head} -> {tail}");
    assert_eq!(a.losses, b.losses, "same seed, same losses");
    assert_eq!(a.tokenizer_json, b.tokenizer_json);
    for ((na, va), (nb, vb)) in a.params.vars.iter().zip(&b.params.vars) {
        assert_eq!(na, nb);
        let x = va
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let y = vb
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(
            x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{na} differs"
        );
    }
    let c = train_demo(&TrainConfig { seed: 7, ..cfg }, None, &mut |_| {}).unwrap();
    assert_ne!(a.losses, c.losses, "another seed gives another run");
}

#[test]
fn gradients_match_finite_differences() {
    let dev = Device::Cpu;
    let shape = LmShape {
        d_model: 16,
        n_layers: 2,
        n_heads: 2,
        d_mlp: 24,
        d_vocab: 40,
    };
    let params = LmParams::init(shape, 5, &dev).unwrap();
    // Larger-than-init weights so that every path (attention, norms, SwiGLU) matters.
    let mut rng = Rng::new(11);
    for v in params.vars.values() {
        let n = v.elem_count();
        let noise: Vec<f32> = (0..n).map(|_| (rng.normal() * 0.3) as f32).collect();
        let t = (v.as_tensor() + Tensor::from_vec(noise, v.shape(), &dev).unwrap()).unwrap();
        v.set(&t).unwrap();
    }
    let batch = Batch::new(vec![vec![0, 5, 9, 17, 3, 22, 8], vec![0, 31, 2, 39]]).unwrap();
    let loss = lm_loss(&params, &batch).unwrap();
    let grads = loss.backward().unwrap();
    let eps = 1e-2f64;
    let mut checked = 0;
    for (name, var) in &params.vars {
        let g = grads
            .get(var.as_tensor())
            .expect("every parameter gets a gradient");
        let n = var.elem_count();
        let dir: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        // A unit-norm direction, so that ε is the length of the step.
        let norm = dir.iter().map(|x| x * x).sum::<f32>().sqrt();
        let dir: Vec<f32> = dir.iter().map(|x| x / norm).collect();
        let dir = Tensor::from_vec(dir, var.shape(), &dev).unwrap();
        let analytic = (g * &dir)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        let theta = var.as_tensor().copy().unwrap();
        let at = |s: f64| {
            var.set(&(&theta + (&dir * s).unwrap()).unwrap()).unwrap();
            lm_loss(&params, &batch)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
        var.set(&theta).unwrap();
        let tol = 1e-2 * analytic.abs().max(numeric.abs()) + 2e-4;
        assert!(
            (analytic - numeric).abs() < tol,
            "{name}: autograd {analytic} vs finite difference {numeric}"
        );
        checked += 1;
    }
    assert_eq!(checked, 2 + 2 * 9 + 1, "every parameter tensor checked");
}
