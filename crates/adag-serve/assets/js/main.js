// The viewer's entry point: loads the graph list and a screen-sized view of one graph, wires
// the toolbar, the canvas, the node panel and the subgraph pane to the shared state.

import { buildModel } from './model.js';
import { GraphView } from './canvas.js';
import { renderPanel } from './panel.js';
import { renderSubgraph } from './subgraph.js';
import * as S from './state.js';
import { el } from './util.js';

const $ = (id) => document.getElementById(id);
const state = S.state;
let model = null;
let view = null;
let budget = 1;

const hooks = { state, get model() { return model; }, get view() { return view; },
  screenPos: (id) => (view ? view.screenPos(id) : null), firstRenderMs: null, ready: false, loads: 0 };
window.adag = hooks;

function setStatus(text, isError = false, extra = null) {
  const s = $('status');
  s.replaceChildren(text, ...(extra ? [' ', extra] : []));
  s.classList.toggle('error', isError);
}

const actions = {
  select: (id) => S.update({ clickedId: id }, { persistent: false }),
  togglePin: (id) => S.togglePin(id),
  unpin: (ids) => S.unpin(ids),
  group: (name, ids) => S.group(name, ids),
  ungroup: (i) => S.ungroup(i),
  annotate: (id, text) => S.annotate(id, text),
  moveUnit: (key, x, y) => S.moveUnit(key, x, y),
};

function render(st, patch = null) {
  const all = !patch;
  const has = (...k) => all || k.some((x) => x in patch);
  if (view) view.requestDraw();
  if (model && has('pruningThreshold', 'pinnedIds') && statusBase) showCounts();
  if (view && has('annotations')) view.refreshTooltip();
  if (has('clickedId', 'pinnedIds')) renderPanel($('node-panel'), model, state, actions);
  else if (has('annotations')) {
    const n = model && model.byId.get(state.clickedId);
    const t = $('panel-title');
    if (n && t) t.textContent = state.annotations[n.id] || n.clerp || t.textContent;
  }
  if (has('pinnedIds', 'supernodes', 'annotations', 'clickedId', 'sgPos')) renderSubgraph($('subgraph-pane'), model, state, actions);
  $('save').classList.toggle('dirty', state.dirty);
  for (const b of document.querySelectorAll('.linktype button')) b.classList.toggle('active', b.dataset.link === state.linkType);
  $('prune').value = String(state.pruningThreshold);
  $('prune-value').textContent = Number(state.pruningThreshold).toFixed(2);
}

// The status line: the graph's size, and what the pruning slider leaves of it.
let statusBase = null;
function showCounts() {
  const { msg, more } = statusBase;
  const vis = view.visibleNodes();
  let text = msg;
  if (vis.length < model.nodes.length) {
    const shown = new Set(vis);
    const links = model.links.reduce((k, l) => k + (shown.has(l.s) && shown.has(l.t) ? 1 : 0), 0);
    text += ` · showing ${vis.length} nodes, ${links} links (prune ≤ ${Number(state.pruningThreshold).toFixed(2)})`;
  }
  setStatus(text, false, more);
}

async function fetchJson(url, opts) {
  const r = await fetch(url, opts);
  if (!r.ok) throw new Error(`${r.status} ${(await r.text()).trim()}`);
  return r.json();
}

async function loadGraph(slug, urlState) {
  setStatus(`loading ${slug}…`);
  const c = $('graph-canvas');
  const area = Math.max(1, c.clientWidth * c.clientHeight);
  const maxNodes = Math.round(Math.min(12000, Math.max(1500, area / 80)) * budget);
  const maxLinks = Math.round(Math.min(60000, Math.max(10000, maxNodes * 8)) * budget);
  const keepIds = [...(urlState.pinnedIds || state.pinnedIds || []), urlState.clickedId || state.clickedId || ''].filter(Boolean);
  const q = new URLSearchParams({ max_nodes: maxNodes, max_links: maxLinks });
  if (keepIds.length && keepIds.length <= 300) q.set('keep', keepIds.join(','));
  const data = await fetchJson(`/api/graph/${encodeURIComponent(slug)}?${q}`);
  model = buildModel(data);
  const meta = model.meta;
  const fromFile = S.fromQParams(data.qParams);
  const threshold = Number.isFinite(meta.node_threshold) ? meta.node_threshold : 1;
  const { slug: _ignored, _retried: _r, ...fromUrl } = urlState;
  Object.assign(state, { slug, hoveredId: '', pruningThreshold: threshold }, fromFile, fromUrl);
  // Clusters saved as supernodes (adag cluster/describe) are pinned on open, as the reference
  // does, so that they show in the subgraph diagram and on the canvas.
  const members = state.supernodes.flatMap(([, ...ids]) => ids).filter((id) => !state.pinnedIds.includes(id));
  if (members.length) state.pinnedIds = [...state.pinnedIds, ...new Set(members)];
  state.dirty = false;
  S.writeUrl();
  $('prompt-line').textContent = meta.prompt ? `prompt: ${meta.prompt}` : '';
  statusBase = null;
  view.setState(state);
  view.setModel(model);
  render(state);
  const v = model.view;
  let msg = `${model.nodes.length} nodes · ${model.links.length} links`;
  let more = null;
  if (v && (v.truncated_nodes || v.truncated_links)) {
    msg += ` (screen view of ${v.total_nodes} nodes / ${v.total_links} links)`;
    more = el('button', { id: 'load-more', onclick: () => { budget *= 2; loadGraph(slug, currentUrlState()); } }, 'more');
  }
  if (model.duplicates.length) msg += ` · ${model.duplicates.length} duplicate ids`;
  const missing = [...state.pinnedIds, state.clickedId].filter((id) => id && !model.byId.has(id));
  if (missing.length && v && v.truncated_nodes && !urlState._retried && missing.length <= 300) {
    // Saved pins that the screen budget cut: ask again, keeping them.
    return loadGraph(slug, { ...currentUrlState(), _retried: true });
  }
  statusBase = { msg, more };
  showCounts();
  hooks.loads++;
  hooks.ready = true;
  document.body.dataset.ready = String(hooks.loads);
}

function currentUrlState() {
  return { pinnedIds: state.pinnedIds, supernodes: state.supernodes, clickedId: state.clickedId,
           linkType: state.linkType, pruningThreshold: state.pruningThreshold };
}

// The server accepts a save only as JSON from its own page: the browser adds a same-origin
// Origin, and the token the server wrote into this page backs it up (docs/security.md).
const saveToken = document.querySelector('meta[name="adag-save-token"]')?.content || '';

async function save() {
  try {
    await fetchJson(`/save_graph/${encodeURIComponent(state.slug)}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Adag-Token': saveToken },
      body: JSON.stringify(S.toQParams()),
    });
    state.dirty = false;
    render(state, {});
    setStatus(`saved to ${state.slug}.json`);
    document.body.dataset.saved = String((Number(document.body.dataset.saved) || 0) + 1);
  } catch (e) {
    setStatus(`save failed: ${e.message}`, true);
  }
}

async function boot() {
  view = new GraphView($('graph-canvas'), $('tooltip'), {
    onClick: (n, e) => {
      if (!n) { if (state.clickedId) actions.select(''); return; }
      if (e.ctrlKey || e.metaKey) S.togglePin(n.id);
      else actions.select(n.id);
    },
    onHover: (id) => S.update({ hoveredId: id }, { persistent: false, url: false }),
    onFirstDraw: () => {
      hooks.firstRenderMs = performance.now();
      document.body.dataset.rendered = '1';
    },
  });
  S.subscribe(render);
  $('prune').addEventListener('input', (e) => S.update({ pruningThreshold: Number(e.target.value) }, { persistent: false }));
  for (const b of document.querySelectorAll('.linktype button')) {
    b.addEventListener('click', () => S.update({ linkType: b.dataset.link }));
  }
  $('fit').addEventListener('click', () => view.fit());
  $('save').addEventListener('click', save);
  window.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && document.activeElement.tagName !== 'TEXTAREA') actions.select('');
    if ((e.ctrlKey || e.metaKey) && e.key === 's') { e.preventDefault(); save(); }
  });
  window.addEventListener('beforeunload', (e) => { if (state.dirty) e.preventDefault(); });

  const urlState = S.fromUrl();
  let graphs = [];
  try {
    graphs = (await fetchJson('/api/graphs')).graphs || [];
  } catch (e) {
    setStatus(`cannot list graphs: ${e.message}`, true);
    return;
  }
  const sel = $('graph-select');
  for (const g of graphs) {
    const label = g.prompt ? `${g.slug} — ${g.prompt}` : g.slug;
    sel.append(el('option', { value: g.slug }, label.length > 70 ? label.slice(0, 69) + '…' : label));
  }
  sel.addEventListener('change', () => { location.search = `?slug=${encodeURIComponent(sel.value)}`; });
  const slug = urlState.slug || (graphs[0] && graphs[0].slug);
  if (!slug) { setStatus('no graphs in this folder', true); return; }
  sel.value = slug;
  try {
    await loadGraph(slug, urlState);
  } catch (e) {
    setStatus(`cannot open ${slug}: ${e.message}`, true);
  }
}

boot();
