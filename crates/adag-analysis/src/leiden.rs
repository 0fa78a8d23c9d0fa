//! Leiden community detection (Traag, Waltman & van Eck 2019, "From Louvain to Leiden:
//! guaranteeing well-connected communities"), the reference's graph-based alternative to
//! spectral clustering (`leiden_cluster` in its `multiview_cluster.py`, on a kNN graph).
//!
//! Unlike k-means or Ward on the spectral embedding, Leiden chooses the number of clusters
//! itself: it maximises the modularity with a resolution γ,
//! `Q = 1/2m · Σ_c [in_c − γ·K_c²/2m]` (`in_c`: Σ of edge weights with both ends in c, both
//! orders; `K_c`: Σ of the members' weighted degrees; `2m`: Σ of all degrees). Larger γ gives
//! more, smaller clusters.
//!
//! Each iteration runs three phases until the partition settles:
//! 1. **local moving** ([`move_nodes`]): nodes, visited from a queue in a seeded random order,
//!    move to the neighbouring community with the largest positive gain; a node that moves puts
//!    its neighbours outside its new community back on the queue;
//! 2. **refinement** ([`refine`]): inside each community, starting from singletons, a node that
//!    is still alone and well connected to its community merges into a well-connected
//!    sub-community chosen at random with probability ∝ exp(gain/θ) among those with gain ≥ 0
//!    (θ = 0.01, as the paper and `leidenalg`). A merge always follows an edge, so refined
//!    communities are connected — the step that Louvain lacks and that lets it return
//!    communities whose members are not even connected;
//! 3. **aggregation** ([`aggregate`]): each refined community becomes one node, with the
//!    unrefined partition as the starting partition of the next level (so a community can be
//!    split across nodes and later parts of it can move on their own).
//!
//! The iteration is repeated from its own result until the partition no longer changes (at
//! most [`MAX_ITERATIONS`]). A last pass splits any community whose members are not connected
//! into its connected components: with no edge between the parts, splitting removes only the
//! null-model penalty `2γ·K_a·K_b/2m`, so it never lowers Q, and every returned cluster's
//! induced subgraph is connected. Same graph and seed, same labels (a `ChaCha8Rng`; no hash
//! maps on any path).
//!
//! **Cost:** the graph holds every positive similarity as an edge (16 bytes each: 400 MB for a
//! dense graph of 5,000 units, on top of the similarity itself); `--knn K` bounds it by
//! 2·K·n edges. Each local-moving pass is linear in the edges; on the demo capitals circuit
//! (289 units) the whole run takes about 10 ms in a debug build.
//!
//! **Why not a crate:** crates.io has `leiden-rs` (pulls gryf, rayon and a CLI's
//! dependencies for graphs far larger than a circuit's few thousand units) and `rune-leiden`
//! (a 0.1 release); neither takes a seed from the same RNG the rest of `adag cluster` uses, and
//! the algorithm is a few hundred lines on the dense similarity we already hold.

use std::collections::VecDeque;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::similarity::Similarity;

/// Randomness of the refinement's choice (the paper's θ; `leidenalg`'s default).
pub const THETA: f64 = 0.01;

/// Most iterations (each: move, refine, aggregate until settled) before giving up on a fixed
/// point.
pub const MAX_ITERATIONS: usize = 50;

/// Options of `adag cluster --method leiden`, recorded in the cluster state's diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LeidenOptions {
    /// Resolution γ of the modularity (1: the standard modularity; larger: more clusters).
    pub resolution: f64,
    /// Keep only each unit's `knn` most similar neighbours (an edge stays when either end
    /// keeps it), as the reference's kNN graph; 0 keeps every positive similarity, the graph
    /// the spectral methods use.
    pub knn: usize,
}

impl Default for LeidenOptions {
    fn default() -> Self {
        LeidenOptions {
            resolution: 1.0,
            knn: 0,
        }
    }
}

/// A weighted undirected graph: symmetric adjacency lists without self-loops, plus each node's
/// self-loop weight (the internal weight of an aggregated node, both orders) and weighted
/// degree (which includes its self-loop weight).
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    adj: Vec<Vec<(usize, f64)>>,
    self_loops: Vec<f64>,
    degree: Vec<f64>,
}

impl Graph {
    /// A graph of `n` nodes from undirected edges `(a, b, w)` (`a ≠ b`, `w > 0`; repeated
    /// edges add up; other edges are ignored).
    pub fn from_edges(n: usize, edges: &[(usize, usize, f64)]) -> Graph {
        let mut dense: Vec<std::collections::BTreeMap<usize, f64>> = vec![Default::default(); n];
        for &(a, b, w) in edges {
            if a != b && a < n && b < n && w > 0.0 && w.is_finite() {
                *dense[a].entry(b).or_default() += w;
                *dense[b].entry(a).or_default() += w;
            }
        }
        let adj: Vec<Vec<(usize, f64)>> =
            dense.into_iter().map(|m| m.into_iter().collect()).collect();
        Graph::new(adj, vec![0.0; n])
    }

    /// The affinity graph of a similarity: edge weight `max(S(i, j), 0)` for `i ≠ j` (the
    /// spectral methods' affinity without its unit diagonal), sparsified to each node's `knn`
    /// strongest edges (kept when either end keeps it) when `knn > 0`.
    pub fn from_similarity(s: &Similarity, knn: usize) -> Graph {
        let n = s.n;
        // keep[i·n + j]: the edge i–j survives the kNN sparsification.
        let mut keep: Vec<bool> = Vec::new();
        if knn > 0 {
            keep = vec![false; n * n];
            let mut order: Vec<usize> = Vec::with_capacity(n);
            for i in 0..n {
                order.clear();
                order.extend((0..n).filter(|&j| j != i && s.get(i, j) > 0.0));
                // Strongest first; ties by index so the graph does not depend on sort details.
                order.sort_by(|&a, &b| s.get(i, b).total_cmp(&s.get(i, a)).then(a.cmp(&b)));
                for &j in order.iter().take(knn) {
                    keep[i * n + j] = true;
                    keep[j * n + i] = true;
                }
            }
        }
        let adj = (0..n)
            .map(|i| {
                (0..n)
                    .filter(|&j| j != i && s.get(i, j) > 0.0 && (knn == 0 || keep[i * n + j]))
                    .map(|j| (j, s.get(i, j) as f64))
                    .collect()
            })
            .collect();
        Graph::new(adj, vec![0.0; n])
    }

    fn new(adj: Vec<Vec<(usize, f64)>>, self_loops: Vec<f64>) -> Graph {
        let degree = adj
            .iter()
            .zip(&self_loops)
            .map(|(a, &l)| l + a.iter().map(|&(_, w)| w).sum::<f64>())
            .collect();
        Graph {
            adj,
            self_loops,
            degree,
        }
    }

    /// Number of nodes.
    pub fn n(&self) -> usize {
        self.adj.len()
    }

    /// The neighbours of `v` with edge weights.
    pub fn neighbours(&self, v: usize) -> &[(usize, f64)] {
        &self.adj[v]
    }

    /// `2m`: the sum of all weighted degrees.
    pub fn total(&self) -> f64 {
        self.degree.iter().sum()
    }
}

/// The modularity with resolution `gamma` of `labels` on `g` (0 for a graph without edges).
pub fn modularity(g: &Graph, labels: &[usize], gamma: f64) -> f64 {
    let total = g.total();
    if total <= 0.0 {
        return 0.0;
    }
    let k = labels.iter().max().map_or(0, |&m| m + 1);
    let mut inner = vec![0f64; k];
    let mut deg = vec![0f64; k];
    for v in 0..g.n() {
        let c = labels[v];
        deg[c] += g.degree[v];
        inner[c] += g.self_loops[v];
        inner[c] += g.adj[v]
            .iter()
            .filter(|&&(u, _)| labels[u] == c)
            .map(|&(_, w)| w)
            .sum::<f64>();
    }
    (0..k)
        .map(|c| inner[c] / total - gamma * (deg[c] / total).powi(2))
        .sum()
}

/// [`modularity`] of `labels` on the graph [`Graph::from_similarity`]`(s, 0)` would build,
/// computed from the dense similarity without building it (the figure every clustering
/// method reports in its diagnostics).
pub fn similarity_modularity(s: &Similarity, labels: &[usize], gamma: f64) -> f64 {
    let n = s.n;
    let k = labels.iter().max().map_or(0, |&m| m + 1);
    let mut inner = vec![0f64; k];
    let mut deg = vec![0f64; k];
    for i in 0..n {
        for j in 0..n {
            let w = if i == j {
                0.0
            } else {
                s.get(i, j).max(0.0) as f64
            };
            deg[labels[i]] += w;
            if labels[i] == labels[j] {
                inner[labels[i]] += w;
            }
        }
    }
    let total: f64 = deg.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    (0..k)
        .map(|c| inner[c] / total - gamma * (deg[c] / total).powi(2))
        .sum()
}

/// Leiden clustering of `g` at resolution `gamma`; labels are 0..k in order of each
/// cluster's first node.
pub fn leiden(g: &Graph, gamma: f64, seed: u64) -> Vec<usize> {
    canonical(&split_disconnected(g, &iterate(g, gamma, seed)))
}

/// The Leiden iterations without the final split (which only guards the guarantee).
fn iterate(g: &Graph, gamma: f64, seed: u64) -> Vec<usize> {
    let n = g.n();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut labels: Vec<usize> = (0..n).collect();
    if g.total() <= 0.0 {
        return labels;
    }
    for _ in 0..MAX_ITERATIONS {
        let next = canonical(&iteration(g, &labels, gamma, &mut rng));
        let settled = next == labels;
        labels = next;
        if settled {
            break;
        }
    }
    labels
}

/// Relabels to 0..k in order of first occurrence.
fn canonical(labels: &[usize]) -> Vec<usize> {
    let mut map = vec![usize::MAX; labels.iter().max().map_or(0, |&m| m + 1)];
    let mut next = 0;
    labels
        .iter()
        .map(|&l| {
            if map[l] == usize::MAX {
                map[l] = next;
                next += 1;
            }
            map[l]
        })
        .collect()
}

/// One Leiden iteration from the partition `init` of `g`: levels of move → refine → aggregate
/// until every community is a single (aggregated) node.
fn iteration(g: &Graph, init: &[usize], gamma: f64, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let total = g.total();
    let mut level: Option<Graph> = None;
    let mut comm = canonical(init);
    // The aggregated node each original node is in.
    let mut node_of: Vec<usize> = (0..g.n()).collect();
    loop {
        let graph = level.as_ref().unwrap_or(g);
        move_nodes(graph, &mut comm, gamma, total, rng);
        comm = canonical(&comm);
        let n_comm = comm.iter().max().map_or(0, |&m| m + 1);
        if n_comm == graph.n() {
            break;
        }
        let refined = refine(graph, &comm, gamma, total, rng);
        let n_refined = refined.iter().max().map_or(0, |&m| m + 1);
        // When refinement merged nothing, aggregating by it would make no progress; the
        // unrefined partition does (`leidenalg` does the same).
        let by = if n_refined < graph.n() {
            refined
        } else {
            comm.clone()
        };
        let agg = aggregate(graph, &by);
        // Each aggregated node starts in the unrefined community of its members.
        let mut agg_comm = vec![0; agg.n()];
        for v in 0..graph.n() {
            agg_comm[by[v]] = comm[v];
        }
        for x in node_of.iter_mut() {
            *x = by[*x];
        }
        comm = agg_comm;
        level = Some(agg);
    }
    node_of.iter().map(|&v| comm[v]).collect()
}

/// Weights from `v` to each neighbouring group under `group`, accumulated into `acc` (which
/// must be all zero); the groups touched, in order of first neighbour.
fn weights_to(
    g: &Graph,
    v: usize,
    group: &[usize],
    acc: &mut [f64],
    seen: &mut [bool],
    touched: &mut Vec<usize>,
    filter: impl Fn(usize) -> bool,
) {
    touched.clear();
    for &(u, w) in &g.adj[v] {
        if !filter(u) {
            continue;
        }
        let c = group[u];
        if !seen[c] {
            seen[c] = true;
            touched.push(c);
        }
        acc[c] += w;
    }
}

fn clear(acc: &mut [f64], seen: &mut [bool], touched: &[usize]) {
    for &c in touched {
        acc[c] = 0.0;
        seen[c] = false;
    }
}

/// Phase 1, fast local moving: `comm` (ids < n) is improved in place; returns whether any
/// node moved. A move from community A to B changes Q by
/// `(w(v,B) − w(v,A∖v) − γ·K_v·(K_B − K_{A∖v})/2m) / (2m/2)`, so each node takes the community
/// maximising `w(v,C) − γ·K_v·K_C/2m` (C without v; an empty community scores 0).
pub fn move_nodes(
    g: &Graph,
    comm: &mut [usize],
    gamma: f64,
    total: f64,
    rng: &mut ChaCha8Rng,
) -> bool {
    let n = g.n();
    let mut ctot = vec![0f64; n];
    let mut csize = vec![0usize; n];
    for v in 0..n {
        ctot[comm[v]] += g.degree[v];
        csize[comm[v]] += 1;
    }
    let mut empty: Vec<usize> = (0..n).rev().filter(|&c| csize[c] == 0).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let mut queue: VecDeque<usize> = order.into();
    let mut queued = vec![true; n];
    let (mut acc, mut seen, mut touched) = (vec![0f64; n], vec![false; n], Vec::new());
    let mut changed = false;
    while let Some(v) = queue.pop_front() {
        queued[v] = false;
        let cur = comm[v];
        weights_to(g, v, comm, &mut acc, &mut seen, &mut touched, |_| true);
        ctot[cur] -= g.degree[v];
        csize[cur] -= 1;
        let scale = gamma * g.degree[v] / total;
        let mut best = cur;
        let mut best_gain = acc[cur] - scale * ctot[cur];
        // A move must beat staying by more than rounding, or two equal communities could
        // trade a node forever.
        let eps = 1e-12 * (1.0 + best_gain.abs());
        for &c in &touched {
            let gain = acc[c] - scale * ctot[c];
            if c != cur && gain > best_gain + eps {
                best = c;
                best_gain = gain;
            }
        }
        if best_gain < -eps && csize[cur] > 0 {
            // Alone is better than anywhere: a fresh community (one exists, since the other
            // n − 1 nodes occupy at most n − 1 of the n ids and `cur` is not empty).
            if let Some(e) = empty.pop() {
                best = e;
            }
        }
        clear(&mut acc, &mut seen, &touched);
        ctot[best] += g.degree[v];
        csize[best] += 1;
        comm[v] = best;
        if best != cur {
            changed = true;
            if csize[cur] == 0 {
                empty.push(cur);
            }
            for &(u, _) in &g.adj[v] {
                if !queued[u] && comm[u] != best {
                    queued[u] = true;
                    queue.push_back(u);
                }
            }
        }
    }
    changed
}

/// Phase 2, refinement of `comm`: returns a partition (ids 0..r) nested in it whose
/// communities are connected. A node is merged only while it is alone, only when it is well
/// connected to its community (`w(v, C∖v) ≥ γ·K_v·(K_C − K_v)/2m`), and only into a
/// sub-community T that is itself well connected (`w(T, C∖T) ≥ γ·K_T·(K_C − K_T)/2m`) with a
/// non-negative gain `w(v,T) − γ·K_v·K_T/2m`, drawn with probability ∝ exp(gain/θ) (staying
/// alone has gain 0).
pub fn refine(
    g: &Graph,
    comm: &[usize],
    gamma: f64,
    total: f64,
    rng: &mut ChaCha8Rng,
) -> Vec<usize> {
    let n = g.n();
    let mut ctot = vec![0f64; n];
    for v in 0..n {
        ctot[comm[v]] += g.degree[v];
    }
    let mut refined: Vec<usize> = (0..n).collect();
    let mut rtot = g.degree.clone();
    let mut rsize = vec![1usize; n];
    // ext[T] = w(T, C∖T) for each refined community T of community C.
    let mut ext: Vec<f64> = (0..n)
        .map(|v| {
            g.adj[v]
                .iter()
                .filter(|&&(u, _)| comm[u] == comm[v])
                .map(|&(_, w)| w)
                .sum()
        })
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let (mut acc, mut seen, mut touched) = (vec![0f64; n], vec![false; n], Vec::new());
    let mut cands: Vec<(usize, f64)> = Vec::new();
    for v in order {
        if rsize[refined[v]] != 1 {
            continue;
        }
        let c = comm[v];
        let kv = g.degree[v];
        if ext[v] < gamma * kv * (ctot[c] - kv) / total {
            continue;
        }
        weights_to(g, v, &refined, &mut acc, &mut seen, &mut touched, |u| {
            comm[u] == c
        });
        cands.clear();
        cands.push((refined[v], 0.0));
        for &t in &touched {
            if t == refined[v] {
                continue;
            }
            let well = ext[t] >= gamma * rtot[t] * (ctot[c] - rtot[t]) / total;
            let gain = acc[t] - gamma * kv * rtot[t] / total;
            if well && gain >= 0.0 {
                cands.push((t, gain));
            }
        }
        let top = cands.iter().map(|&(_, g)| g).fold(0.0, f64::max);
        let weights: Vec<f64> = cands
            .iter()
            .map(|&(_, g)| ((g - top) / THETA).exp())
            .collect();
        let sum: f64 = weights.iter().sum();
        let mut r = rng.random::<f64>() * sum;
        let mut chosen = cands[cands.len() - 1].0;
        for (&(t, _), &w) in cands.iter().zip(&weights) {
            if r < w {
                chosen = t;
                break;
            }
            r -= w;
        }
        if chosen != refined[v] {
            let wt = acc[chosen];
            let own = refined[v];
            ext[chosen] = ext[chosen] + ext[own] - 2.0 * wt;
            rtot[chosen] += kv;
            rsize[chosen] += 1;
            rsize[own] = 0;
            refined[v] = chosen;
        }
        clear(&mut acc, &mut seen, &touched);
    }
    canonical(&refined)
}

/// Phase 3: the graph whose nodes are the communities of `by` (ids 0..r): degrees add up,
/// edges between communities add up, and edges inside one become its self-loop weight.
pub fn aggregate(g: &Graph, by: &[usize]) -> Graph {
    let r = by.iter().max().map_or(0, |&m| m + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); r];
    for (v, &c) in by.iter().enumerate() {
        members[c].push(v);
    }
    let (mut acc, mut seen, mut touched) = (vec![0f64; r], vec![false; r], Vec::new());
    let mut adj = Vec::with_capacity(r);
    let mut self_loops = vec![0f64; r];
    for (c, ms) in members.iter().enumerate() {
        touched.clear();
        for &v in ms {
            self_loops[c] += g.self_loops[v];
            for &(u, w) in &g.adj[v] {
                let d = by[u];
                if d == c {
                    self_loops[c] += w;
                } else {
                    if !seen[d] {
                        seen[d] = true;
                        touched.push(d);
                    }
                    acc[d] += w;
                }
            }
        }
        adj.push(touched.iter().map(|&d| (d, acc[d])).collect());
        clear(&mut acc, &mut seen, &touched);
    }
    Graph::new(adj, self_loops)
}

/// Splits each community into its connected components (see the module docs: Q never drops).
fn split_disconnected(g: &Graph, labels: &[usize]) -> Vec<usize> {
    let n = g.n();
    let mut out = vec![usize::MAX; n];
    let mut next = 0;
    let mut stack = Vec::new();
    for s in 0..n {
        if out[s] != usize::MAX {
            continue;
        }
        out[s] = next;
        stack.push(s);
        while let Some(v) = stack.pop() {
            for &(u, _) in &g.adj[v] {
                if out[u] == usize::MAX && labels[u] == labels[s] {
                    out[u] = next;
                    stack.push(u);
                }
            }
        }
        next += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of the given sizes: edges inside a block with probability `p_in`, between blocks
    /// with `p_out`, weights uniform in [0.5, 1); the planted labels.
    fn planted(sizes: &[usize], p_in: f64, p_out: f64, seed: u64) -> (Graph, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let truth: Vec<usize> = sizes
            .iter()
            .enumerate()
            .flat_map(|(b, &s)| std::iter::repeat_n(b, s))
            .collect();
        let n = truth.len();
        let mut edges = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                let p = if truth[a] == truth[b] { p_in } else { p_out };
                if rng.random::<f64>() < p {
                    edges.push((a, b, 0.5 + 0.5 * rng.random::<f64>()));
                }
            }
        }
        (Graph::from_edges(n, &edges), truth)
    }

    fn connected_within(g: &Graph, labels: &[usize]) -> bool {
        let k = labels.iter().max().map_or(0, |&m| m + 1);
        (0..k).all(|c| {
            let members: Vec<usize> = (0..g.n()).filter(|&v| labels[v] == c).collect();
            let mut seen = vec![false; g.n()];
            let mut stack = vec![members[0]];
            seen[members[0]] = true;
            let mut count = 1;
            while let Some(v) = stack.pop() {
                for &(u, _) in g.neighbours(v) {
                    if !seen[u] && labels[u] == c {
                        seen[u] = true;
                        count += 1;
                        stack.push(u);
                    }
                }
            }
            count == members.len()
        })
    }

    /// Two and three dense blocks with sparse edges between are recovered exactly (labels are
    /// canonical, so equal to the planted ones in first-occurrence order), for several seeds.
    #[test]
    fn planted_partitions_are_recovered_exactly() {
        for (sizes, seed) in [
            (&[12usize, 12][..], 1u64),
            (&[10, 15, 20][..], 2),
            (&[8, 30, 14][..], 3),
        ] {
            let (g, truth) = planted(sizes, 0.8, 0.05, seed);
            for s in 0..5 {
                assert_eq!(leiden(&g, 1.0, s), truth, "blocks {sizes:?}, seed {s}");
            }
        }
    }

    /// Two triangles joined by one weak edge: two clusters at γ = 1; at a tiny resolution the
    /// null model hardly penalises, so one cluster; at a huge one every node is alone.
    #[test]
    fn resolution_controls_the_number_of_clusters() {
        let e = [
            (0, 1, 1.0),
            (1, 2, 1.0),
            (0, 2, 1.0),
            (3, 4, 1.0),
            (4, 5, 1.0),
            (3, 5, 1.0),
            (2, 3, 0.1),
        ];
        let g = Graph::from_edges(6, &e);
        assert_eq!(leiden(&g, 1.0, 7), [0, 0, 0, 1, 1, 1]);
        assert_eq!(leiden(&g, 0.01, 7), [0; 6]);
        assert_eq!(leiden(&g, 100.0, 7), [0, 1, 2, 3, 4, 5]);
    }

    /// On random sparse graphs: every node has one label in 0..k with every label used, each
    /// cluster's induced subgraph is connected, the same seed gives the same labels, and the
    /// modularity is at least that of every planted-free baseline we can compute cheaply (all
    /// in one cluster, all singletons) and of the local-moving phase alone (Louvain's first
    /// level).
    #[test]
    fn random_graphs_give_connected_deterministic_partitions() {
        for seed in 0..20u64 {
            let (g, _) = planted(&[15, 15, 15, 15], 0.2, 0.04, 100 + seed);
            let l = leiden(&g, 1.0, seed);
            assert_eq!(l.len(), g.n());
            let k = l.iter().max().unwrap() + 1;
            assert!((0..k).all(|c| l.contains(&c)));
            assert!(
                connected_within(&g, &l),
                "seed {seed}: a disconnected cluster"
            );
            assert_eq!(leiden(&g, 1.0, seed), l, "seed {seed}: not deterministic");
            let q = modularity(&g, &l, 1.0);
            let mut moved: Vec<usize> = (0..g.n()).collect();
            move_nodes(
                &g,
                &mut moved,
                1.0,
                g.total(),
                &mut ChaCha8Rng::seed_from_u64(seed),
            );
            assert!(q >= modularity(&g, &moved, 1.0) - 1e-12, "seed {seed}");
            assert!(q >= modularity(&g, &vec![0; g.n()], 1.0));
            assert!(q >= modularity(&g, &(0..g.n()).collect::<Vec<_>>(), 1.0));
        }
    }

    /// Refinement keeps its communities inside the given ones and connected, even when a given
    /// community is not connected (two far-apart triangles put in one community).
    #[test]
    fn refinement_is_nested_and_connected() {
        let e = [
            (0, 1, 1.0),
            (1, 2, 1.0),
            (0, 2, 1.0),
            (3, 4, 1.0),
            (4, 5, 1.0),
            (3, 5, 1.0),
            (5, 6, 1.0),
            (6, 7, 1.0),
        ];
        let g = Graph::from_edges(8, &e);
        let comm = [0, 0, 0, 1, 1, 0, 1, 1];
        for s in 0..10 {
            let r = refine(&g, &comm, 1.0, g.total(), &mut ChaCha8Rng::seed_from_u64(s));
            for a in 0..8 {
                for b in 0..8 {
                    if r[a] == r[b] {
                        assert_eq!(comm[a], comm[b], "seed {s}: {r:?} not nested");
                    }
                }
            }
            assert!(connected_within(&g, &r), "seed {s}: {r:?}");
        }
    }

    /// Aggregation preserves the total weight and the modularity of the partition it
    /// aggregates by (each node of the aggregate alone = that partition on the original).
    #[test]
    fn aggregation_preserves_weight_and_modularity() {
        let (g, truth) = planted(&[6, 7, 8], 0.6, 0.2, 9);
        let agg = aggregate(&g, &truth);
        assert!((agg.total() - g.total()).abs() < 1e-9);
        let own: Vec<usize> = (0..agg.n()).collect();
        for gamma in [0.5, 1.0, 2.0] {
            let a = modularity(&agg, &own, gamma);
            let b = modularity(&g, &truth, gamma);
            assert!((a - b).abs() < 1e-12, "γ {gamma}: {a} vs {b}");
        }
    }

    /// `from_similarity` drops negative similarities and the diagonal, and `knn` keeps an edge
    /// when either end ranks it among its top k.
    #[test]
    fn similarity_graph_and_knn() {
        #[rustfmt::skip]
        let v = vec![
            1.0, 0.9, 0.2, -0.5,
            0.9, 1.0, 0.1, 0.3,
            0.2, 0.1, 1.0, 0.05,
            -0.5, 0.3, 0.05, 1.0,
        ];
        let s = Similarity { n: 4, values: v };
        let full = Graph::from_similarity(&s, 0);
        assert_eq!(
            full.neighbours(0).iter().map(|e| e.0).collect::<Vec<_>>(),
            [1, 2]
        );
        let knn = Graph::from_similarity(&s, 1);
        // Top-1: 0→1, 1→0, 2→0, 3→1.
        let nb = |g: &Graph, v: usize| g.neighbours(v).iter().map(|e| e.0).collect::<Vec<_>>();
        assert_eq!(nb(&knn, 0), [1, 2]);
        assert_eq!(nb(&knn, 1), [0, 3]);
        assert_eq!(nb(&knn, 2), [0]);
        assert_eq!(nb(&knn, 3), [1]);
        assert!((knn.total() - 2.0 * (0.9 + 0.2 + 0.3)).abs() < 1e-6);
        for labels in [[0, 0, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0], [0, 1, 2, 3]] {
            let a = similarity_modularity(&s, &labels, 1.3);
            let b = modularity(&full, &labels, 1.3);
            assert!((a - b).abs() < 1e-6, "{labels:?}: {a} vs {b}");
        }
    }
}
