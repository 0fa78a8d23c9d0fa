//! Where backward passes spend their work: operations and thread-seconds per kernel.
//!
//! Two passes may run at once ([`crate::driver`]), so the tallies are atomics that either
//! thread adds to. Thread-seconds, not wall time: with passes running side by side a kernel's
//! seconds add up over threads, and a report apportions the rows' wall time by them. The
//! clock reads cost tens of nanoseconds against kernels of microseconds and more.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// A part of the backward pass, as the phase table lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Attention's output projection `g·W_O'`, with the copies into the per-head layout (and,
    /// on the strided CPU path, the gradient's position-major copy).
    OProj,
    /// The frozen pattern's mix from queries to keys (on candle's path, with the copy out of
    /// it).
    PatternMix,
    /// Attention's value projection `g_v·W_V'` and the residual add (on the strided CPU path,
    /// with the copy of the groups side by side).
    VProj,
    /// Gradient across the MLP (a transcoder's skip, RelP through a gated MLP), with the norms
    /// on either side.
    MlpPath,
    /// Seeds injected into the gradient buffer and the buffer grown as rows join.
    Seeds,
    /// Edges read off the gradient: one product per (layer, position) with its sources'
    /// write vectors, the token embeddings, and the scatter into the rows.
    EdgeReading,
    /// The bottom layer's attention read straight into token edges
    /// ([`crate::frozen::FrozenModel::token_dots`]), in place of its three products.
    BottomLayer,
    /// Work counted without a clock (the per-head passes of attention tracing).
    Other,
}

impl Kernel {
    /// Every kernel, in the table's order.
    pub const ALL: [Kernel; 8] = [
        Kernel::OProj,
        Kernel::PatternMix,
        Kernel::VProj,
        Kernel::MlpPath,
        Kernel::Seeds,
        Kernel::EdgeReading,
        Kernel::BottomLayer,
        Kernel::Other,
    ];

    /// The name a report uses.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::OProj => "o_proj",
            Kernel::PatternMix => "pattern_mix",
            Kernel::VProj => "v_proj",
            Kernel::MlpPath => "mlp_path",
            Kernel::Seeds => "seeds",
            Kernel::EdgeReading => "edge_reading",
            Kernel::BottomLayer => "bottom_layer",
            Kernel::Other => "other",
        }
    }
}

/// Operations and thread-nanoseconds per [`Kernel`].
#[derive(Debug, Default)]
pub(crate) struct KernelTally {
    /// `f64` operation counts kept as bits.
    flops: [AtomicU64; Kernel::ALL.len()],
    nanos: [AtomicU64; Kernel::ALL.len()],
    /// Wall-clock nanoseconds of whole batches of passes (threads not added up).
    wall: AtomicU64,
}

impl KernelTally {
    /// Adds `flops` operations and the time since `since` to `kernel`.
    pub(crate) fn add(&self, kernel: Kernel, flops: f64, since: Option<Instant>) {
        self.add_seconds(
            kernel,
            flops,
            since.map_or(0.0, |t| t.elapsed().as_secs_f64()),
        );
    }

    /// Adds `flops` operations and `secs` thread-seconds to `kernel`.
    pub(crate) fn add_seconds(&self, kernel: Kernel, flops: f64, secs: f64) {
        let i = kernel as usize;
        if flops != 0.0 {
            let _ = self.flops[i].fetch_update(Relaxed, Relaxed, |b| {
                Some((f64::from_bits(b) + flops).to_bits())
            });
        }
        self.nanos[i].fetch_add((secs * 1e9) as u64, Relaxed);
    }

    /// Adds the wall-clock time since `since` of a batch of passes.
    pub(crate) fn add_wall(&self, since: Instant) {
        self.wall
            .fetch_add((since.elapsed().as_secs_f64() * 1e9) as u64, Relaxed);
    }

    /// Operations counted so far, all kernels.
    pub(crate) fn flops(&self) -> f64 {
        self.flops
            .iter()
            .map(|b| f64::from_bits(b.load(Relaxed)))
            .sum()
    }

    /// `{"passes_wall_s": s, "kernels": {kernel: {"flops": f, "thread_s": s}}}`, kernels that
    /// did any work only.
    pub(crate) fn report(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for k in Kernel::ALL {
            let flops = f64::from_bits(self.flops[k as usize].load(Relaxed));
            let secs = self.nanos[k as usize].load(Relaxed) as f64 * 1e-9;
            if flops != 0.0 || secs != 0.0 {
                out.insert(
                    k.name().into(),
                    serde_json::json!({ "flops": flops, "thread_s": secs }),
                );
            }
        }
        serde_json::json!({
            "passes_wall_s": self.wall.load(Relaxed) as f64 * 1e-9,
            "kernels": out,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_add_up_per_kernel_across_threads() {
        let t = KernelTally::default();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        t.add(Kernel::OProj, 1.5, None);
                        t.add(Kernel::EdgeReading, 0.5, Some(Instant::now()));
                    }
                });
            }
        });
        assert_eq!(t.flops(), 4000.0);
        t.add_wall(Instant::now());
        let r = t.report();
        let k = &r["kernels"];
        assert_eq!(k["o_proj"]["flops"], 3000.0);
        assert_eq!(k["o_proj"]["thread_s"], 0.0);
        assert_eq!(k["edge_reading"]["flops"], 1000.0);
        assert!(k["edge_reading"]["thread_s"].as_f64().unwrap() > 0.0);
        assert!(
            k.get("v_proj").is_none(),
            "kernels without work are left out"
        );
        assert!(r["passes_wall_s"].as_f64().unwrap() >= 0.0);
    }
}
