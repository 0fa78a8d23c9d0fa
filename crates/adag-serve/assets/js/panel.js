// The node panel: what the clicked node is, its strongest edges (clickable), its annotation,
// neuron profiles and, for transcoder features with detail files, examples and logits.

import { KIND, kindName, nodeLabel } from './model.js';
import { el, fmt, heat, showToken } from './util.js';
import { loadFeatureDetail } from './features.js';
import { accountingSection } from './accounting.js';
import { headsLine, qkSection } from './heads.js';

const TOP_EDGES = 12;

export function renderPanel(root, model, state, actions) {
  const n = model && model.byId.get(state.clickedId);
  root.replaceChildren();
  if (!n) {
    root.append(el('p', { class: 'hint' }, 'Click a node to inspect it. Ctrl/⌘+click pins it to the subgraph; drag to pan, scroll to zoom.'));
    if (model && model.duplicates.length) {
      root.append(el('p', { class: 'hint' }, `${model.duplicates.length} node id(s) occur twice (old error-id scheme); links attach to the first: ${model.duplicates.slice(0, 5).join(', ')}`));
    }
    return;
  }
  const tok = model.promptTokens[n.ctx];
  const pinned = state.pinnedIds.includes(n.id);
  root.append(
    el('h2', { id: 'panel-title' }, nodeLabel(n, state.annotations)),
    el('div', { class: 'panel-actions' }, [
      el('button', { id: 'pin-toggle', onclick: () => actions.togglePin(n.id) }, pinned ? 'unpin' : 'pin to subgraph'),
    ]),
  );
  const facts = [
    ['kind', kindName(n)],
    ['layer', n.kind === KIND.EMB ? 'embedding' : n.kind === KIND.LOGIT ? 'output' : String(n.layer)],
    ['position', `${n.ctx}${tok !== undefined ? `  "${showToken(tok)}"` : ''}`],
  ];
  if (n.kind === KIND.FEAT) facts.push(['feature', n.unit !== null ? String(n.unit) : String(n.raw.feature)]);
  if (n.kind === KIND.NEURON) facts.push(['neuron', String(n.unit)]);
  if (n.kind === KIND.LOGIT) facts.push(['token', `"${showToken(n.token ?? '')}"  (id ${n.raw.feature})`], ['probability', fmt(n.raw.token_prob)]);
  facts.push(['activation', fmt(n.activation)], ['influence', fmt(n.influence)], ['node id', n.id]);
  if (n.clerp && state.annotations[n.id]) facts.push(['description', n.clerp]);
  root.append(el('table', { class: 'facts' }, facts.map(([k, v]) =>
    el('tr', { 'data-fact': k }, [el('th', {}, k), el('td', {}, v)]))));
  root.append(...accountingSection(n));
  root.append(...qkSection(n));

  root.append(el('h3', {}, 'annotation'));
  const ta = el('textarea', { id: 'annotation', placeholder: 'your note (saved with the graph)' });
  ta.value = state.annotations[n.id] || '';
  ta.addEventListener('input', () => actions.annotate(n.id, ta.value));
  root.append(ta);

  if (Array.isArray(n.raw.input_profile) && n.raw.input_profile.length) root.append(...inputProfile(n, model));
  if (Array.isArray(n.raw.output_profile) && n.raw.output_profile.length) root.append(...outputProfile(n, model));

  root.append(edgeList('incoming', n.inLinks.map((l) => [l.s, l.w, l]), state, actions));
  root.append(edgeList('outgoing', n.outLinks.map((l) => [l.t, l.w, l]), state, actions));

  // Neurons use the same files (`adag features --basis neurons`), indexed by neuron.
  if ((n.kind === KIND.FEAT || n.kind === KIND.NEURON) && n.layer !== null) {
    const box = el('div', { id: 'feature-detail' }, el('p', { class: 'hint' }, 'looking for feature details…'));
    root.append(el('h3', {}, 'feature details'), box);
    loadFeatureDetail(model.meta, n).then((d) => {
      if (!box.isConnected) return;
      box.replaceChildren(...(d ? featureDetail(d) : [el('p', { class: 'hint' }, 'no feature-detail files for this unit (adag features writes them next to the transcoders or model, where adag serve looks; elsewhere: adag serve --features-dir DIR)')]));
    }).catch((e) => {
      if (box.isConnected) box.replaceChildren(el('p', { class: 'hint' }, `feature details failed: ${e.message}`));
    });
  }
}

function edgeList(title, pairs, state, actions) {
  const sorted = pairs.sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
  const total = sorted.reduce((s, [, w]) => s + Math.abs(w), 0) || 1;
  const items = sorted.slice(0, TOP_EDGES).map(([other, w, link]) =>
    el('li', { 'data-node-id': other.id, title: `${other.id}: ${fmt(w)} (${fmt(100 * Math.abs(w) / total, 2)}% of |${title}|)`,
               onclick: () => actions.select(other.id) }, [
      el('span', { class: `w ${w >= 0 ? 'pos' : 'neg'}` }, (w >= 0 ? '+' : '') + fmt(w)),
      el('span', { class: 'lbl' }, `${nodeLabel(other, state.annotations)}  ·  ${other.kind === KIND.EMB ? 'tok' : other.kind === KIND.LOGIT ? 'out' : 'L' + other.layer}@${other.ctx}`),
      headsLine(link),
    ]));
  const more = sorted.length > TOP_EDGES ? el('li', { class: 'hint' }, `… ${sorted.length - TOP_EDGES} more`) : null;
  return el('section', { class: `edges edges-${title}` }, [
    el('h3', {}, `${title} edges (${sorted.length})`),
    sorted.length ? el('ul', { class: 'edge-list', id: `edges-${title}` }, [...items, more]) : el('p', { class: 'hint' }, 'none'),
  ]);
}

function inputProfile(n, model) {
  const prof = n.raw.input_profile;
  const max = Math.max(...prof.map((v) => Math.abs(Number(v) || 0)));
  const toks = prof.map((v, i) => el('span', {
    class: 'tok', title: `${fmt(Number(v))}`, 'data-weight': String(v),
    style: { background: heat(Number(v) || 0, max) },
  }, showToken(model.promptTokens[i] ?? `#${i}`)));
  return [el('h3', {}, 'input attribution (prompt tokens)'), el('div', { class: 'tokens', id: 'input-profile' }, toks)];
}

function outputProfile(n, model) {
  const prof = n.raw.output_profile;
  const max = Math.max(...prof.map((v) => Math.abs(Number(v) || 0))) || 1;
  const rows = [];
  prof.forEach((v, i) => {
    v = Number(v) || 0;
    rows.push(el('span', { class: 'tok' }, showToken(model.targetTokens[i] ?? `target ${i}`)),
      el('div', {}, el('div', { class: 'bar', style: { width: `${(100 * Math.abs(v)) / max}%`, background: v >= 0 ? 'var(--pos)' : 'var(--neg)' } })),
      el('span', { class: 'num' }, fmt(v)));
  });
  return [el('h3', {}, 'output profile (target tokens)'), el('div', { class: 'bars', id: 'output-profile' }, rows)];
}

function featureDetail(d) {
  const out = [];
  if (Number.isFinite(d.activation_frequency)) out.push(el('p', { class: 'hint' }, `activation frequency ${fmt(d.activation_frequency)}, max activation ${fmt(d.act_max)}`));
  const logits = (cls, title, list) => Array.isArray(list) && list.length
    ? [el('h3', {}, title), el('div', { class: `logit-list ${cls}` }, list.map((t) => el('span', {}, showToken(t))))] : [];
  out.push(...logits('top', 'top logits', d.top_logits), ...logits('bottom', 'bottom logits', d.bottom_logits));
  const quantiles = Array.isArray(d.examples_quantiles) ? d.examples_quantiles : [];
  for (const q of quantiles.slice(0, 3)) {
    const exs = Array.isArray(q.examples) ? q.examples.slice(0, 4) : [];
    if (!exs.length) continue;
    out.push(el('h3', {}, q.quantile_name || 'examples'));
    for (const ex of exs) {
      const acts = Array.isArray(ex.tokens_acts_list) ? ex.tokens_acts_list : [];
      const max = Math.max(1e-9, ...acts.map((a) => Math.abs(Number(a) || 0)));
      out.push(el('div', { class: 'example tokens' }, (ex.tokens || []).map((t, i) =>
        el('span', { class: 'tok', title: fmt(acts[i]), style: { background: heat(Number(acts[i]) || 0, max) } }, showToken(t)))));
    }
  }
  return out;
}
