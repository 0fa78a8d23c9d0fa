//! QK tracing for a graph: the attention scores behind its strongest head loadings, as
//! per-node `qk_tracing_results` for the frontend JSON.
//!
//! Default choice of scores: the kept edges from non-token sources by `|weight|`, each with the head carrying the
//! largest `|part|` of it; the score explained is that head's at (query = the target's
//! position, key = the source's position) — the step that moved the source's information for
//! a one-hop edge. Components are named by node id where the graph has the node; `bias` is the
//! constant no node carries.

use adag_core::Site;
use adag_graph::{frontend::node_id, Graph, HeadLoadings, NodeKind};
use adag_model::{Batch, CacheFilter, Transformer};
use serde_json::{json, Value};

use crate::basis::Basis;
use crate::error::Result;
use crate::frozen::FrozenModel;

use super::qk::{qk_attribution, QkAttribution, QkSite};

/// The QK sites behind the `n` strongest edges of `heads` (distinct sites), with the target
/// node each is shown on.
pub fn default_sites(graph: &Graph, heads: &HeadLoadings, n: usize) -> Vec<(usize, QkSite)> {
    let mut order: Vec<usize> = (0..heads.edges.len()).collect();
    let w = |e: usize| graph.edge(heads.edges[e][0] as usize, heads.edges[e][1] as usize);
    order.sort_by(|&a, &b| w(b).abs().total_cmp(&w(a).abs()));
    let pos = |i: usize| match graph.node_kind(i) {
        NodeKind::Feature { pos, .. }
        | NodeKind::Error { pos, .. }
        | NodeKind::Token { pos, .. } => pos as usize,
        NodeKind::Logit { .. } => graph.n_pos() - 1,
    };
    let mut out: Vec<(usize, QkSite)> = Vec::new();
    for e in order {
        if out.len() >= n {
            break;
        }
        let [t, s] = heads.edges[e];
        // Token sources only reach layer-0 heads, whose scores are token × token: the
        // informative scores are those between computed features.
        if matches!(graph.node_kind(s as usize), NodeKind::Token { .. }) {
            continue;
        }
        let row = heads.row(e);
        let Some(best) = (0..row.len() - 1).max_by(|&a, &b| row[a].abs().total_cmp(&row[b].abs()))
        else {
            continue;
        };
        if row[best] == 0.0 {
            continue;
        }
        let site = QkSite {
            layer: best / heads.n_heads,
            head: best % heads.n_heads,
            query_pos: pos(t as usize),
            key_pos: pos(s as usize),
        };
        if site.key_pos <= site.query_pos && !out.iter().any(|(_, x)| *x == site) {
            out.push((t as usize, site));
        }
    }
    out
}

/// The `qk_tracing_results` entry of one score: the `top` pairwise terms and marginals.
fn entry(
    a: &QkAttribution,
    graph: &Graph,
    n_active: usize,
    active: &[[u32; 3]],
    top: usize,
) -> Value {
    let f = graph.n_features();
    let mut rank = vec![usize::MAX; n_active];
    for (r, &s) in graph.selected_features.iter().enumerate() {
        rank[s as usize] = r;
    }
    let name = |c: usize| -> String {
        if c + 1 == a.n_components {
            "bias".into()
        } else if c < n_active {
            match rank[c] {
                usize::MAX => {
                    let [l, p, i] = active[c];
                    format!("unselected L{l}#{i}@{p}")
                }
                r => node_id(graph, r),
            }
        } else {
            node_id(graph, f + c - n_active)
        }
    };
    let marg = |m: Vec<f32>| -> Vec<Value> {
        let mut idx: Vec<usize> = (0..m.len()).filter(|&i| m[i] != 0.0).collect();
        idx.sort_by(|&x, &y| m[y].abs().total_cmp(&m[x].abs()));
        idx.truncate(top);
        idx.iter().map(|&i| json!([name(i), m[i]])).collect()
    };
    json!({
        "layer": a.site.layer,
        "head": a.site.head,
        "query_pos": a.site.query_pos,
        "key_pos": a.site.key_pos,
        "score": a.score,
        "pair_wise_contributors": a.top_pairs(top).iter().map(|&(i, j, v)| json!([name(i), name(j), v])).collect::<Vec<_>>(),
        "top_q_marginal_contributors": marg(a.query_marginals()),
        "top_k_marginal_contributors": marg(a.key_marginals()),
    })
}

/// QK attributions of `sites` for a graph made from `tokens` in `basis`: `(target node,
/// qk_tracing_results entry)` pairs with the `top` terms of each list.
pub fn qk_tracing(
    model: &Transformer,
    tokens: &[u32],
    basis: &dyn Basis,
    graph: &Graph,
    sites: &[(usize, QkSite)],
    top: usize,
) -> Result<Vec<(usize, Value)>> {
    let filter = FrozenModel::cache_filter()
        .union(&basis.cache_filter())
        .union(&CacheFilter::sites([Site::Ln1Normalized]));
    let out = model.forward(&Batch::single(tokens)?, &filter)?;
    let frozen = FrozenModel::new(model, &out.cache, 0)?;
    let nodes = basis.prompt(model, &out.cache, 0)?;
    let (_, write) = basis.sites();
    let active = nodes.active();
    sites
        .iter()
        .map(|&(t, site)| {
            let a = qk_attribution(&frozen, &out.cache, 0, nodes.as_ref(), write, site)?;
            Ok((t, entry(&a, graph, active.len(), active, top)))
        })
        .collect()
}
