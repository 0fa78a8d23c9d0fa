//! The one attribution driver: a prompt bound to the frozen model and a basis, its rows computed
//! by batched vector–Jacobian products, and the graph assembled from them.
//!
//! What differs between circuit-tracer's graphs and ADAG's circuits is only *which* nodes get
//! rows, a selection strategy on top of this type:
//! - influence ranking under a node budget ([`crate::attribute`]): rows are computed in order
//!   of their influence on the logits through the rows computed so far;
//! - total effect above a threshold ([`crate::neuron`]): one RelP backward pass from the
//!   targets scores every neuron, and the selected ones get rows.
//!
//! Either way a row is one seed of a backward pass through the frozen model (a logit
//! direction, or a node's read vector at the basis's read site), read off at every lower write
//! site, and the output is one [`Graph`] in circuit-tracer's node order. The graph file, the
//! viewer, pruning and the Parquet circuit are all written from that one value.

use adag_graph::{Graph, GraphMeta};
use adag_model::Transformer;
use candle_core::Tensor;
use rayon::prelude::*;

use crate::basis::{Basis, PromptNodes};
use crate::error::{joined, Context, Error, Result};
use crate::frozen::{FrozenModel, ReadSite, Seeds, WriteSite};
use crate::reading::RowCollector;
use crate::tally::Kernel;
use crate::targets::SelectedTargets;

/// Rows computed so far (row-major over [`Driver::n_cols`] source columns), each with the
/// node it belongs to: an index into the basis's active nodes, or `n_cols + j` for target `j`.
pub(crate) struct RowStore {
    pub n_cols: usize,
    pub rows: Vec<f32>,
    /// Each row's sum of absolute values, kept only for influence ranking, which reads the
    /// rows normalised by them. Normalising on the fly instead of storing a normalised copy
    /// halves the store (2 GiB at 4096 rows on a gemma-2-2b-sized graph); the quotients are
    /// the same `f32` divisions, so the ranking is unchanged bit for bit.
    abs_sums: Option<Vec<f32>>,
    pub node: Vec<usize>,
}

impl RowStore {
    /// An empty store for at most `max_rows` rows; `ranked` keeps the row sums
    /// [`RowStore::partial_influence`] normalises by.
    ///
    /// The full size is reserved up front (address space only: pages cost memory when written),
    /// because growing by doubling copied every row written so far into fresh pages at each
    /// step; on a 1k-token prompt those copies were most of the process's page faults. Where the
    /// system refuses so large a reservation the store grows as it fills instead.
    pub fn new(n_cols: usize, ranked: bool, max_rows: usize) -> RowStore {
        let reserved = || {
            let mut v = Vec::new();
            // Falls back to growing on demand: a refused reservation is not an error.
            let _ = v.try_reserve_exact(max_rows.saturating_mul(n_cols));
            v
        };
        RowStore {
            n_cols,
            rows: reserved(),
            abs_sums: ranked.then(|| Vec::with_capacity(max_rows)),
            node: Vec::with_capacity(max_rows),
        }
    }

    fn push(&mut self, row: &[f32], node: usize) {
        if let Some(sums) = &mut self.abs_sums {
            sums.push(abs_sum(row));
        }
        self.rows.extend_from_slice(row);
        self.node.push(node);
    }

    /// Whether the store keeps row sums for ranking.
    fn ranked(&self) -> bool {
        self.abs_sums.is_some()
    }

    /// Room for `n_rows` more rows, zeroed, for backward passes to write in place; they count
    /// as stored once [`RowStore::note_rows`] names their nodes (until then
    /// [`RowStore::drop_unnoted`] takes them back).
    ///
    /// The zeros are written on rayon's threads: they are the first touch of the store's
    /// pages, and one thread faulting in a ranking round's rows (40 MB on the side-by-side
    /// fixture) left the other core idle.
    fn append_zeroed(&mut self, n_rows: usize) -> &mut [f32] {
        let old = self.rows.len();
        let add = n_rows * self.n_cols;
        self.rows.reserve_exact(add);
        self.rows.spare_capacity_mut()[..add]
            .par_chunks_mut(1 << 16)
            .for_each(|c| c.fill(std::mem::MaybeUninit::new(0.0)));
        // SAFETY: the `add` elements after the first `old` were initialised just above.
        unsafe { self.rows.set_len(old + add) };
        &mut self.rows[old..]
    }

    /// Names the nodes of the next rows written in place, with their row sums when ranked
    /// (computed where the rows were written, by [`abs_sum`]).
    fn note_rows(&mut self, nodes: impl IntoIterator<Item = usize>, sums: Option<Vec<f32>>) {
        self.node.extend(nodes);
        if let (Some(all), Some(sums)) = (&mut self.abs_sums, sums) {
            all.extend(sums);
        }
    }

    /// Takes back rows made room for but never named (a failed or cancelled round).
    fn drop_unnoted(&mut self) {
        self.rows.truncate(self.node.len() * self.n_cols);
        if let Some(sums) = &mut self.abs_sums {
            sums.truncate(self.node.len());
        }
    }

    /// circuit-tracer's `compute_partial_influences`: influence on the logits of every source
    /// column, through the rows computed so far.
    pub fn partial_influence(&self, logit_probs: &[f32]) -> Result<Vec<f32>> {
        let sums = self
            .abs_sums
            .as_ref()
            .ok_or_else(|| Error::Invalid("influence ranking needs a ranked row store".into()))?;
        let n = self.n_cols;
        let mut prod = vec![0.0f32; n + logit_probs.len()];
        prod[n..].copy_from_slice(logit_probs);
        let mut total = vec![0.0f32; n];
        // Columns split across rayon's threads, as `adag_graph`'s influence does: this runs
        // between ranking rounds, while no backward pass does. Each column still sums its rows
        // in order, so the result is the same.
        let width = n.div_ceil(rayon::current_num_threads()).max(1);
        for _ in 0..128 {
            let mut next = vec![0.0f32; n + logit_probs.len()];
            let active: Vec<(usize, f32, f32)> = self
                .node
                .iter()
                .enumerate()
                .filter(|&(_, &node)| prod[node] != 0.0)
                .map(|(r, &node)| (r, prod[node], sums[r]))
                .collect();
            let accumulate = |start: usize, out: &mut [f32]| {
                for &(r, c, s) in &active {
                    let row = &self.rows[r * n + start..r * n + start + out.len()];
                    for (x, v) in out.iter_mut().zip(row) {
                        *x += c * (v.abs() / s);
                    }
                }
            };
            next[..n]
                .par_chunks_mut(width)
                .enumerate()
                .for_each(|(i, out)| accumulate(i * width, out));
            if next.iter().all(|&x| x == 0.0) {
                return Ok(total);
            }
            for (t, x) in total.iter_mut().zip(&next) {
                *t += x;
            }
            prod = next;
        }
        Err(Error::Invalid(
            "partial influence failed to converge".into(),
        ))
    }
}

/// A row's sum of absolute values (at least 1e-8), which influence ranking normalises by.
fn abs_sum(row: &[f32]) -> f32 {
    row.iter().map(|x| x.abs()).sum::<f32>().max(1e-8)
}

/// One prompt (batch item) bound for attribution: the frozen model and a basis's nodes on it.
pub(crate) struct Driver<'a> {
    pub model: &'a Transformer,
    pub frozen: FrozenModel<'a>,
    pub nodes: Box<dyn PromptNodes + 'a>,
    sites: (ReadSite, WriteSite),
    pub n_pos: usize,
    /// Backward passes of one batch run at once (see [`Driver::rows`]).
    pass_threads: usize,
}

impl<'a> Driver<'a> {
    /// Binds a prompt: `frozen` is the model frozen at it (a selection strategy may have run
    /// backward passes through it already), `nodes` the basis's nodes on it.
    pub fn new(
        model: &'a Transformer,
        frozen: FrozenModel<'a>,
        basis: &dyn Basis,
        nodes: Box<dyn PromptNodes + 'a>,
    ) -> Result<Self> {
        let n_pos = nodes.tokens().dim(0).ctx("token vectors")?;
        Ok(Driver {
            model,
            frozen,
            nodes,
            sites: basis.sites(),
            n_pos,
            pass_threads: pass_threads(),
        })
    }

    /// Number of active nodes (the first source columns).
    pub fn n_active(&self) -> usize {
        self.nodes.active().len()
    }

    /// Source columns of a row: active nodes, then errors (`layer · n_pos + pos`), then tokens.
    pub fn n_cols(&self) -> usize {
        self.n_active() + (self.model.cfg.n_layers + 1) * self.n_pos
    }

    /// Floating-point operations of the backward passes and their reads so far.
    pub fn flops(&self) -> f64 {
        self.frozen.flops()
    }

    /// The rows of a batch of seeds, read off at every write site, in the seeds' order.
    ///
    /// A row costs the layers below its seed on the positions up to its seed (its causal
    /// cone), but one backward pass computes the batch's widest cone for every row. So the
    /// batch is split into groups of nearby positions ([`cone_groups`]), each group one
    /// backward pass sorted by descending layer, which [`FrozenModel::vjp`] turns into a
    /// growing prefix of rows. The rows are the same; only the zeros are not computed.
    fn rows(&self, seeds: &Seeds) -> Result<Vec<f32>> {
        let clock = std::time::Instant::now();
        let rows = self.rows_of_passes(seeds);
        self.frozen.count_wall(clock);
        rows
    }

    /// [`Driver::rows`], untimed.
    fn rows_of_passes(&self, seeds: &Seeds) -> Result<Vec<f32>> {
        let n_cols = self.n_cols();
        let groups = cone_groups(&seeds.layers, &seeds.positions, usize::MAX);
        if groups.len() == 1 && groups[0].iter().enumerate().all(|(i, &j)| i == j) {
            return self.backward_rows(seeds);
        }
        let seeds_of = |group: &[usize]| -> Result<Seeds> {
            let idx: Vec<u32> = group.iter().map(|&i| i as u32).collect();
            let idx = Tensor::new(idx.as_slice(), seeds.vectors.device()).ctx("seed index")?;
            Ok(Seeds {
                vectors: seeds.vectors.index_select(&idx, 0).ctx("seed vectors")?,
                layers: group.iter().map(|&i| seeds.layers[i]).collect(),
                positions: group.iter().map(|&i| seeds.positions[i]).collect(),
            })
        };
        let mut out = vec![0f32; seeds.layers.len() * n_cols];
        let pass = |g: usize| self.backward_rows(&seeds_of(&groups[g])?);
        self.run_passes(&groups, &pass, &mut |group, rows: Vec<f32>| {
            for (j, &i) in group.iter().enumerate() {
                out[i * n_cols..(i + 1) * n_cols]
                    .copy_from_slice(&rows[j * n_cols..(j + 1) * n_cols]);
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// Runs `pass(g)` for every group `g` (one backward pass each) and hands each group and
    /// what its pass returned to `deliver`, which returns `false` to stop (then this returns
    /// `Ok(false)`).
    ///
    /// The groups are independent, so `pass_threads` of them run at once, the most expensive
    /// first (plans list groups by position, so the last are the widest): their products are
    /// too small for the matrix kernel to keep both cores busy alone. `deliver` runs on the
    /// calling thread and sees the groups in the order they were taken, whatever thread
    /// finished first, so what it builds does not depend on the number of threads.
    fn run_passes<T: Send>(
        &self,
        groups: &[Vec<usize>],
        pass: &(dyn Fn(usize) -> Result<T> + Sync),
        deliver: &mut Deliver<'_, T>,
    ) -> Result<bool> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let order = pass_order(groups.len());
        let workers = self.pass_threads.min(groups.len());
        if workers <= 1 {
            for &g in &order {
                if !deliver(&groups[g], pass(g)?)? {
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        let (next, stop) = (AtomicUsize::new(0), AtomicBool::new(false));
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<T>)>();
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let tx = tx.clone();
                    let (next, stop, order, pass) = (&next, &stop, &order, &pass);
                    scope.spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&g) = order.get(k) else { return };
                            let rows = pass(g);
                            if rows.is_err() {
                                stop.store(true, Ordering::Relaxed);
                            }
                            if tx.send((k, rows)).is_err() {
                                return;
                            }
                        }
                    })
                })
                .collect();
            drop(tx);
            // Rows that arrive ahead of their turn wait here (at most a few passes' worth:
            // the threads take passes in order).
            let mut waiting = std::collections::BTreeMap::new();
            let (mut due, mut outcome) = (0, Ok(true));
            for (k, rows) in rx {
                waiting.insert(k, rows);
                while let Some(rows) = waiting.remove(&due) {
                    if matches!(outcome, Ok(true)) {
                        outcome = rows.and_then(|rows| deliver(&groups[order[due]], rows));
                        if !matches!(outcome, Ok(true)) {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    due += 1;
                }
            }
            // A thread that panicked sent nothing for its pass: its panic is the error.
            for h in handles {
                joined(h.join().map(Ok), "a backward-pass thread")?;
            }
            outcome
        })
    }

    /// The rows of one backward pass over `seeds`, in their order.
    fn backward_rows(&self, seeds: &Seeds) -> Result<Vec<f32>> {
        let mut out = vec![0.0; seeds.layers.len() * self.n_cols()];
        self.backward_rows_into(seeds, &mut out)?;
        Ok(out)
    }

    /// [`Driver::backward_rows`] written into `out` (zeros, one row of [`Driver::n_cols`]
    /// per seed).
    fn backward_rows_into(&self, seeds: &Seeds, out: &mut [f32]) -> Result<()> {
        let n_layers = self.model.cfg.n_layers;
        let mut c = RowCollector::new(
            self.nodes.groups(),
            self.nodes.tokens(),
            self.n_active() + n_layers * self.n_pos,
            self.n_cols(),
            out,
        );
        let (read, write) = self.sites;
        self.frozen
            .vjp(seeds, read, write, self.nodes.mlp_path(), &mut c)?;
        self.frozen
            .count_seconds(Kernel::EdgeReading, c.flops, c.secs);
        Ok(())
    }

    /// Rows of the target directions `[k, d_model]` at the last position, `batch_size` per
    /// backward pass; `on_batch(rows done)` returns `false` to stop.
    pub fn target_rows(
        &self,
        directions: &Tensor,
        batch_size: usize,
        store: &mut RowStore,
        on_batch: &mut dyn FnMut(usize) -> bool,
    ) -> Result<()> {
        let (n_layers, n_cols) = (self.model.cfg.n_layers, self.n_cols());
        let k = directions.dim(0).ctx("target directions")?;
        let directions = directions
            .to_dtype(self.model.dtype())
            .ctx("target directions")?;
        for start in (0..k).step_by(batch_size) {
            let m = batch_size.min(k - start);
            let seeds = Seeds {
                vectors: directions.narrow(0, start, m).ctx("target seeds")?,
                layers: vec![n_layers; m],
                positions: vec![self.n_pos - 1; m],
            };
            let rows = self.rows(&seeds)?;
            for i in 0..m {
                store.push(&rows[i * n_cols..(i + 1) * n_cols], n_cols + start + i);
            }
            if !on_batch(start + m) {
                return Err(Error::Cancelled);
            }
        }
        Ok(())
    }

    /// Rows of the active nodes `nodes` (indices into the active list), planned together:
    /// [`cone_groups`] splits them into backward passes of at most `batch_size` rows (so a
    /// pass's buffers stay as large as one batch's), which run [`Driver::run_passes`]'s way.
    /// Planning a whole ranking round at once, rather than batch by batch, finds fuller
    /// groups of nearby positions and keeps both pass threads busy to the end of the round.
    /// The rows go to `store` in a fixed order; `on_rows(rows stored so far)` runs after each
    /// pass and returns `false` to stop ([`Error::Cancelled`]).
    pub fn node_rows(
        &self,
        nodes: &[usize],
        batch_size: usize,
        store: &mut RowStore,
        on_rows: &mut dyn FnMut(usize) -> bool,
    ) -> Result<()> {
        let clock = std::time::Instant::now();
        let active = self.nodes.active();
        let layers: Vec<usize> = nodes.iter().map(|&i| active[i][0] as usize).collect();
        let positions: Vec<usize> = nodes.iter().map(|&i| active[i][1] as usize).collect();
        let groups = cone_groups(&layers, &positions, batch_size.max(1));
        let seeds_of = |group: &[usize]| -> Result<Seeds> {
            let chunk: Vec<usize> = group.iter().map(|&j| nodes[j]).collect();
            Ok(Seeds {
                vectors: self.nodes.seeds(&chunk)?,
                layers: group.iter().map(|&j| layers[j]).collect(),
                positions: group.iter().map(|&j| positions[j]).collect(),
            })
        };
        // Each pass writes its rows straight into their place in the store, in the order the
        // passes are delivered (a copy of every row on the delivering thread was a serial
        // tail at the end of each round), with their row sums when the store ranks.
        let n_cols = self.n_cols();
        let ranked = store.ranked();
        let order = pass_order(groups.len());
        let total: usize = groups.iter().map(Vec::len).sum();
        let mut places: Vec<std::sync::Mutex<Option<&mut [f32]>>> =
            groups.iter().map(|_| std::sync::Mutex::new(None)).collect();
        let mut rest = store.append_zeroed(total);
        for &g in &order {
            let (place, tail) = rest.split_at_mut(groups[g].len() * n_cols);
            *places[g].get_mut().unwrap_or_else(|e| e.into_inner()) = Some(place);
            rest = tail;
        }
        let pass = |g: usize| -> Result<Option<Vec<f32>>> {
            let place = places[g]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .ok_or_else(|| Error::Invalid(format!("backward pass {g} ran twice")))?;
            self.backward_rows_into(&seeds_of(&groups[g])?, place)?;
            Ok(ranked.then(|| place.chunks(n_cols).map(abs_sum).collect()))
        };
        let mut done = 0;
        let mut delivered = Vec::with_capacity(groups.len());
        let finished = self.run_passes(&groups, &pass, &mut |group, sums| {
            delivered.push((group.to_vec(), sums));
            done += group.len();
            Ok(on_rows(done))
        });
        drop(places);
        for (group, sums) in delivered {
            store.note_rows(group.iter().map(|&j| nodes[j]), sums);
        }
        self.frozen.count_wall(clock);
        match finished {
            Ok(true) => Ok(()),
            Ok(false) => {
                store.drop_unnoted();
                Err(Error::Cancelled)
            }
            Err(e) => {
                store.drop_unnoted();
                Err(e)
            }
        }
    }

    /// The graph of the rows in `store`: `selected` (ascending indices into the active nodes)
    /// are the feature nodes, in circuit-tracer's node order (features, errors, tokens,
    /// logits), rows are targets. `meta` gets the basis, sizes and vocabulary filled in.
    pub fn graph(
        &self,
        basis: &dyn Basis,
        store: &RowStore,
        selected: Vec<u32>,
        tokens: &[u32],
        targets: SelectedTargets,
        mut meta: GraphMeta,
    ) -> Result<Graph> {
        let (n_layers, n_pos) = (self.model.cfg.n_layers, self.n_pos);
        let (n_active, n_cols) = (self.n_active(), self.n_cols());
        let f = selected.len();
        let k = targets.targets.len();
        let mut rank = vec![usize::MAX; n_active];
        for (r, &s) in selected.iter().enumerate() {
            rank[s as usize] = r;
        }
        let n = f + (n_layers + 1) * n_pos + k;
        // The store row of each graph row (node order), so that graph rows fill in parallel.
        let mut row_of = vec![usize::MAX; n];
        for (r, &node) in store.node.iter().enumerate() {
            let target = if node >= n_cols {
                f + (n_layers + 1) * n_pos + (node - n_cols)
            } else {
                rank[node]
            };
            if target != usize::MAX {
                row_of[target] = r;
            }
        }
        let mut adjacency = vec![0.0f32; n * n];
        adjacency
            .par_chunks_mut(n.max(1))
            .zip(&row_of)
            .filter(|(_, &r)| r != usize::MAX)
            .for_each(|(dst, &r)| {
                let src = &store.rows[r * n_cols..(r + 1) * n_cols];
                for (c, &v) in src[..n_active].iter().enumerate() {
                    if rank[c] != usize::MAX {
                        dst[rank[c]] = v;
                    }
                }
                dst[f..f + (n_layers + 1) * n_pos].copy_from_slice(&src[n_active..]);
            });
        meta.basis = basis.kind().name().into();
        meta.n_layers = n_layers;
        meta.d_vocab = self.model.cfg.d_vocab;
        if meta.scan.is_none() {
            meta.scan = basis.scan();
        }
        let graph = Graph {
            meta,
            adjacency,
            active_features: self.nodes.active().to_vec(),
            activation_values: self.nodes.activations().to_vec(),
            selected_features: selected,
            input_tokens: tokens.to_vec(),
            logit_targets: targets.targets,
            logit_probabilities: targets.probs,
        };
        graph.validate()?;
        Ok(graph)
    }
}

/// What [`Driver::run_passes`] does with a pass's seeds (indices into its plan) and what the
/// pass returned: `Ok(false)` stops the remaining passes.
type Deliver<'d, T> = dyn FnMut(&[usize], T) -> Result<bool> + 'd;

/// The order [`Driver::run_passes`] takes and delivers a plan's `n` groups in: the last first
/// (plans list groups by position, so the last are the widest and most expensive).
fn pass_order(n: usize) -> Vec<usize> {
    (0..n).rev().collect()
}

/// How many of a batch's backward passes run at once: `ADAG_PASS_THREADS` if set (1 runs them
/// one after another), else the threads candle's CPU kernels use (`RAYON_NUM_THREADS`, else
/// the cores), at most 2 on the CPU (above that the kernels' own threads suffice).
fn pass_threads() -> usize {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = env("ADAG_PASS_THREADS") {
        return n.max(1);
    }
    candle_core::utils::get_num_threads().clamp(1, 2)
}

/// A backward pass's fixed cost per (layer, position) it spans, in rows: below this many rows a
/// matrix product no longer runs near the kernel's peak, so a smaller group does not pay.
const GROUP_OVERHEAD_ROWS: usize = 16;

/// Splits a batch of seeds (read layer and position of each) into backward passes of at most
/// `max_rows` seeds: groups of consecutive positions, each listed by descending layer (ties by
/// position, then index, so the plan is deterministic).
///
/// The cost of a pass over rows `R` spanning positions `..t` is
/// `t · (Σ_{r∈R} (layer_r + 1) + GROUP_OVERHEAD_ROWS · (max layer + 1))`: every row pays its own
/// layers (the growing prefix of [`FrozenModel::vjp`]) on the group's widest positions, and each
/// pass pays a fixed overhead. With seeds sorted by position, the cheapest split into
/// contiguous groups is a shortest path over the `n + 1` cut points, `O(n · max_rows)` for `n`
/// seeds (a millisecond for a ranking round of circuit-tracer's sizes, 1024 seeds in groups of
/// at most 256).
pub(crate) fn cone_groups(
    layers: &[usize],
    positions: &[usize],
    max_rows: usize,
) -> Vec<Vec<usize>> {
    let n = layers.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (positions[i], std::cmp::Reverse(layers[i]), i));
    // best[j]: cheapest cost of the first j seeds (in `order`), cut[j]: where its last group starts.
    let mut best = vec![u128::MAX; n + 1];
    let mut cut = vec![0usize; n + 1];
    best[0] = 0;
    for j in 1..=n {
        let t = (positions[order[j - 1]] + 1) as u128;
        let (mut sum, mut top) = (0u128, 0u128);
        for i in (j.saturating_sub(max_rows)..j).rev() {
            let l = (layers[order[i]] + 1) as u128;
            sum += l;
            top = top.max(l);
            let cost = best[i] + t * (sum + GROUP_OVERHEAD_ROWS as u128 * top);
            if cost < best[j] {
                best[j] = cost;
                cut[j] = i;
            }
        }
    }
    let mut groups = Vec::new();
    let mut j = n;
    while j > 0 {
        let i = cut[j];
        let mut g = order[i..j].to_vec();
        g.sort_by_key(|&r| (std::cmp::Reverse(layers[r]), positions[r], r));
        groups.push(g);
        j = i;
    }
    groups.reverse();
    groups
}

#[cfg(test)]
mod tests {
    use super::cone_groups;

    /// The cost [`cone_groups`] minimises, as a brute-force check computes it.
    fn cost(groups: &[Vec<usize>], layers: &[usize], positions: &[usize]) -> usize {
        groups
            .iter()
            .map(|g| {
                let t = g.iter().map(|&i| positions[i] + 1).max().unwrap();
                let top = g.iter().map(|&i| layers[i] + 1).max().unwrap();
                let sum: usize = g.iter().map(|&i| layers[i] + 1).sum();
                t * (sum + super::GROUP_OVERHEAD_ROWS * top)
            })
            .sum()
    }

    #[test]
    fn every_seed_lands_in_exactly_one_group_sorted_by_descending_layer() {
        let mut state = 7u64;
        let mut next = |m: usize| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as usize) % m
        };
        for n in [1, 2, 17, 256] {
            let layers: Vec<usize> = (0..n).map(|_| next(13)).collect();
            let positions: Vec<usize> = (0..n).map(|_| next(40)).collect();
            let groups = cone_groups(&layers, &positions, usize::MAX);
            let mut seen: Vec<usize> = groups.iter().flatten().copied().collect();
            seen.sort();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
            for g in &groups {
                assert!(g.windows(2).all(|w| layers[w[0]] >= layers[w[1]]));
            }
            // Never worse than one pass over the whole batch.
            let one = vec![(0..n).collect::<Vec<_>>()];
            assert!(cost(&groups, &layers, &positions) <= cost(&one, &layers, &positions));
            // With a cap, no pass is larger than it, and the plan is never worse than passes
            // of `cap` consecutive seeds in position order.
            let cap = 5;
            let capped = cone_groups(&layers, &positions, cap);
            assert!(capped.iter().all(|g| !g.is_empty() && g.len() <= cap));
            let mut seen: Vec<usize> = capped.iter().flatten().copied().collect();
            seen.sort();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
            let mut by_position: Vec<usize> = (0..n).collect();
            by_position.sort_by_key(|&i| (positions[i], i));
            let chunks: Vec<Vec<usize>> = by_position.chunks(cap).map(|c| c.to_vec()).collect();
            assert!(cost(&capped, &layers, &positions) <= cost(&chunks, &layers, &positions));
            assert!(cost(&capped, &layers, &positions) >= cost(&groups, &layers, &positions));
        }
    }

    #[test]
    fn the_split_is_the_cheapest_contiguous_split_of_a_small_batch() {
        // Eight seeds: all 2^7 splits of the position order, brute force.
        let layers = [0, 11, 3, 11, 0, 5, 11, 2];
        let positions = [40, 2, 3, 39, 1, 20, 38, 0];
        let mut order: Vec<usize> = (0..8).collect();
        order.sort_by_key(|&i| (positions[i], std::cmp::Reverse(layers[i]), i));
        let (mut best, mut best_capped) = (usize::MAX, usize::MAX);
        for mask in 0u32..128 {
            let mut groups = vec![vec![order[0]]];
            for (k, &seed) in order.iter().enumerate().skip(1) {
                if mask & (1 << (k - 1)) != 0 {
                    groups.push(Vec::new());
                }
                groups.last_mut().unwrap().push(seed);
            }
            let c = cost(&groups, &layers, &positions);
            best = best.min(c);
            if groups.iter().all(|g| g.len() <= 3) {
                best_capped = best_capped.min(c);
            }
        }
        let groups = cone_groups(&layers, &positions, usize::MAX);
        assert_eq!(cost(&groups, &layers, &positions), best);
        assert!(groups.len() > 1, "seeds at positions 0–3 and 38–40 split");
        let capped = cone_groups(&layers, &positions, 3);
        assert!(capped.iter().all(|g| g.len() <= 3));
        assert_eq!(cost(&capped, &layers, &positions), best_capped);
    }

    /// Rows written in place ([`super::RowStore::append_zeroed`], then
    /// [`super::RowStore::note_rows`]) make the same store as pushing them, and room that is
    /// never named is taken back.
    #[test]
    fn rows_written_in_place_store_as_pushed_rows_do() {
        let n = 5;
        let rows: Vec<Vec<f32>> = (0..4)
            .map(|r| (0..n).map(|c| (r * n + c) as f32 - 7.5).collect())
            .collect();
        let mut pushed = super::RowStore::new(n, true, 8);
        for (i, row) in rows.iter().enumerate() {
            pushed.push(row, n + i);
        }
        let mut placed = super::RowStore::new(n, true, 8);
        let room = placed.append_zeroed(rows.len());
        assert!(room.iter().all(|&x| x == 0.0), "room comes zeroed");
        for (dst, row) in room.chunks_mut(n).zip(&rows) {
            dst.copy_from_slice(row);
        }
        let sums = rows.iter().map(|r| super::abs_sum(r)).collect();
        placed.note_rows((0..rows.len()).map(|i| n + i), Some(sums));
        assert_eq!(placed.rows, pushed.rows);
        assert_eq!(placed.node, pushed.node);
        assert_eq!(placed.abs_sums, pushed.abs_sums);

        // A round that fails after making room leaves the store as it was.
        placed.append_zeroed(3);
        placed.drop_unnoted();
        assert_eq!(placed.rows, pushed.rows);
        assert_eq!(placed.abs_sums, pushed.abs_sums);
    }

    /// The partial influence, with its columns split over threads, is bit for bit the serial
    /// definition: Σ_k of the logit weights through the rows normalised by their absolute sums.
    #[test]
    fn partial_influence_is_the_serial_definition_bit_for_bit() {
        let (n, k) = (97, 3);
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let mut store = super::RowStore::new(n, true, k + 40);
        // Target rows read any column; feature node i's row reads only columns below i, so
        // the influence converges (a DAG, as an attribution graph is).
        for j in 0..k {
            let row: Vec<f32> = (0..n).map(|_| next()).collect();
            store.push(&row, n + j);
        }
        for i in (10..n).step_by(2).take(40) {
            let row: Vec<f32> = (0..n).map(|c| if c < i { next() } else { 0.0 }).collect();
            store.push(&row, i);
        }
        let probs = [0.5f32, 0.3, 0.2];
        let got = store.partial_influence(&probs).unwrap();

        let sums: Vec<f32> = (0..store.node.len())
            .map(|r| {
                store.rows[r * n..(r + 1) * n]
                    .iter()
                    .map(|x| x.abs())
                    .sum::<f32>()
                    .max(1e-8)
            })
            .collect();
        let mut prod = vec![0f32; n + k];
        prod[n..].copy_from_slice(&probs);
        let mut want = vec![0f32; n];
        loop {
            let mut step = vec![0f32; n + k];
            for (r, &node) in store.node.iter().enumerate() {
                if prod[node] != 0.0 {
                    let row = &store.rows[r * n..(r + 1) * n];
                    for (x, v) in step.iter_mut().zip(row) {
                        *x += prod[node] * (v.abs() / sums[r]);
                    }
                }
            }
            if step.iter().all(|&x| x == 0.0) {
                break;
            }
            for (w, x) in want.iter_mut().zip(&step) {
                *w += x;
            }
            prod = step;
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want));
        assert!(want.iter().any(|&x| x > 0.0));
    }
}
