// The graph as the viewer uses it, built from a file in circuit-tracer's frontend schema
// ({metadata, qParams, nodes, links}), plus adag's optional per-node fields
// (input_profile, output_profile) and metadata.target_logit_tokens.

import { showToken } from './util.js';

export const KIND = { EMB: 'embedding', LOGIT: 'logit', ERR: 'error', NEURON: 'neuron', FEAT: 'feature' };

export function kindOf(raw) {
  switch (raw.feature_type) {
    case 'embedding': return KIND.EMB;
    case 'logit': return KIND.LOGIT;
    case 'mlp reconstruction error': return KIND.ERR;
    case 'mlp neuron': return KIND.NEURON;
    default: return raw.layer === 'E' ? KIND.EMB : KIND.FEAT;
  }
}

const num = (x) => (typeof x === 'number' && Number.isFinite(x) ? x : null);

/** Parses `Emb: "tok"` (adag's and circuit-tracer's token-node clerp); null otherwise. */
function embToken(clerp) {
  const m = /^Emb: "(.*)"$/s.exec(clerp || '');
  return m ? m[1] : null;
}

/** Parses `Output "tok" (p=0.123)` into the token; null if it is not in that form. */
function logitToken(clerp) {
  const m = /^Output "(.*)" \(p=[^)]*\)$/s.exec(clerp || '');
  return m ? m[1] : null;
}

export function buildModel(data) {
  const meta = data.metadata || {};
  const promptTokens = Array.isArray(meta.prompt_tokens) ? meta.prompt_tokens.map(String) : [];
  const nodes = [];
  const byId = new Map();
  const duplicates = [];
  for (const raw of data.nodes || []) {
    if (!raw || typeof raw.node_id !== 'string') continue;
    const kind = kindOf(raw);
    const layerNum = parseInt(raw.layer, 10);
    const parts = raw.node_id.split('_');
    const n = {
      index: nodes.length,
      id: raw.node_id,
      raw,
      kind,
      layer: Number.isFinite(layerNum) ? layerNum : null,
      ctx: Number.isFinite(raw.ctx_idx) ? raw.ctx_idx : 0,
      influence: num(raw.influence),
      activation: num(raw.activation),
      clerp: typeof raw.clerp === 'string' ? raw.clerp : '',
      // The index within the layer (transcoder feature or neuron), from `{l}_{f}_{p}`.
      unit: (kind === KIND.FEAT || kind === KIND.NEURON) && parts.length === 3 ? parseInt(parts[1], 10) : null,
      inLinks: [],
      outLinks: [],
    };
    if (kind === KIND.LOGIT) n.token = logitToken(n.clerp);
    // A token node names its token: from its clerp, else (older exports wrote "") the prompt.
    if (kind === KIND.EMB) n.token = embToken(n.clerp) ?? (n.clerp ? null : promptTokens[n.ctx] ?? null);
    if (byId.has(n.id)) { duplicates.push(n.id); n.key = `${n.id}#${nodes.length}`; }
    else { n.key = n.id; byId.set(n.id, n); }
    nodes.push(n);
  }
  let nLayers = 0;
  for (const n of nodes) {
    if (n.kind !== KIND.LOGIT && n.kind !== KIND.EMB && n.layer !== null) nLayers = Math.max(nLayers, n.layer + 1);
  }
  let nPos = promptTokens.length;
  for (const n of nodes) nPos = Math.max(nPos, n.ctx + 1);
  for (const n of nodes) {
    n.row = n.kind === KIND.EMB ? 0 : n.kind === KIND.LOGIT ? nLayers + 1 : (n.layer ?? 0) + 1;
  }
  const links = [];
  for (const l of data.links || []) {
    const s = byId.get(l.source), t = byId.get(l.target);
    const w = Number(l.weight);
    if (!s || !t || !Number.isFinite(w)) continue;
    // `head_loadings`: per-head parts of the edge (adag attribute --head-loadings).
    const link = { s, t, w, heads: l.head_loadings || null };
    links.push(link);
    s.outLinks.push(link);
    t.inLinks.push(link);
  }
  const logits = nodes.filter((n) => n.kind === KIND.LOGIT)
    .sort((a, b) => (b.raw.token_prob || 0) - (a.raw.token_prob || 0));
  const targetTokens = Array.isArray(meta.target_logit_tokens)
    ? meta.target_logit_tokens.map(String)
    : logits.map((n) => n.token ?? String(n.raw.feature));
  return { meta, qParams: data.qParams || null, view: data.view || null, nodes, links, byId,
           duplicates, nLayers, nPos, promptTokens, logits, targetTokens };
}

/** The label a node is shown with: the annotation, else its clerp, else a name from its ids. */
export function nodeLabel(n, annotations) {
  const a = annotations && annotations[n.id];
  if (a) return a;
  switch (n.kind) {
    case KIND.LOGIT: return n.token !== null && n.token !== undefined ? `"${n.token}"` : (n.clerp || n.id);
    case KIND.EMB: return n.token !== null && n.token !== undefined ? `"${showToken(n.token)}"` : (n.clerp || `token ${n.ctx}`);
    case KIND.ERR: return n.clerp || `error L${n.layer ?? '?'} @${n.ctx}`;
    case KIND.NEURON: return n.clerp || `L${n.layer} N${n.unit}`;
    default: return n.clerp || `L${n.layer} F${n.unit ?? n.raw.feature}`;
  }
}

export function kindName(n) {
  return { embedding: 'token embedding', logit: 'target logit', error: 'reconstruction error',
           neuron: 'MLP neuron', feature: 'transcoder feature' }[n.kind];
}

/** Whether the pruning slider shows a node (the reference's rule: influence ≤ threshold;
 *  embeddings, logits and pinned nodes always). A missing influence counts as 0. */
export function passesThreshold(n, threshold, pinned) {
  if (n.kind === KIND.EMB || n.kind === KIND.LOGIT || pinned.has(n.id)) return true;
  return (n.influence ?? 0) <= threshold + 1e-12;
}
