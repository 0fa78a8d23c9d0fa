// Head loadings in the edge lists: which attention heads carried an edge (`adag attribute
// --head-loadings`). Each part is the share of the edge's paths whose first attention head
// above the source is that head; "direct" is the paths crossing no head. Parts sum to the
// edge, so shares are part / edge (they can exceed 100% when parts cancel).

import { el, fmt } from './util.js';

const SHOWN = 3;

/** The "via L2.H5: 71%, …" line of a link, or null when the graph has no loadings for it. */
export function headsLine(link) {
  const h = link && link.heads;
  if (!h || !Array.isArray(h.heads) || !link.w) return null;
  const parts = h.heads
    .filter((x) => Array.isArray(x) && x.length === 3)
    .map(([l, hd, v]) => [`L${l}.H${hd}`, Number(v)]);
  if (Number.isFinite(Number(h.direct)) && Number(h.direct) !== 0) parts.push(['direct', Number(h.direct)]);
  parts.sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
  const pct = (v) => `${fmt((100 * v) / link.w, 2)}%`;
  const text = parts.slice(0, SHOWN).map(([name, v]) => `${name}: ${pct(v)}`).join(', ');
  const title = parts.map(([name, v]) => `${name}: ${fmt(v)} (${pct(v)})`).join('\n');
  return el('div', { class: 'via hint', title }, `via ${text}${parts.length > SHOWN ? ', …' : ''}`);
}

/** The node panel's "why the head attended" section: each `qk_tracing_results` entry (adag
 *  attribute --head-loadings) as its score and top query × key terms and marginals. */
export function qkSection(n) {
  // adag's list of every traced score, else Neuronpedia's single object.
  const raw = n.raw || {};
  const list = Array.isArray(raw.adag_qk_tracing) ? raw.adag_qk_tracing
    : (raw.qk_tracing_results && typeof raw.qk_tracing_results === 'object' ? [raw.qk_tracing_results] : []);
  if (!list.length) return [];
  const out = [el('h3', {}, 'attention scores (QK)')];
  for (const r of list) {
    const rows = (title, items, fmtItem) => Array.isArray(items) && items.length
      ? [el('div', { class: 'hint' }, title), el('ul', { class: 'qk-list' }, items.slice(0, 5).map((x) => el('li', {}, fmtItem(x))))] : [];
    const box = el('details', { class: 'qk', 'data-head': `L${r.layer}.H${r.head}` }, [
      el('summary', {}, `L${r.layer}.H${r.head}: query ${r.query_pos} → key ${r.key_pos}, score ${fmt(r.score)}`),
      ...rows('query × key', r.pair_wise_contributors, ([q, k, v]) => `${q} × ${k}: ${fmt(v)}`),
      ...rows('query side', r.top_q_marginal_contributors, ([q, v]) => `${q}: ${fmt(v)}`),
      ...rows('key side', r.top_k_marginal_contributors, ([k, v]) => `${k}: ${fmt(v)}`),
    ]);
    out.push(box);
  }
  return out;
}
