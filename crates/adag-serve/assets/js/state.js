// UI state: what is pinned, grouped, clicked and annotated. It lives in the URL (shareable) and
// is saved into the graph file's qParams by POST /save_graph/{slug}.

const listeners = new Set();

export const state = {
  slug: '',
  pinnedIds: [],
  supernodes: [],   // [[name, id, ...], ...] as in circuit-tracer
  clickedId: '',
  hoveredId: '',
  linkType: 'both',
  pruningThreshold: 1,
  annotations: {},
  sgPos: {},        // subgraph diagram: unit key → [x, y] where the user dragged it
  dirty: false,
};

export function subscribe(f) { listeners.add(f); }

/** Applies a patch, updates the URL, marks unsaved changes when `persistent`, and notifies. */
export function update(patch, { persistent = true, url = true } = {}) {
  Object.assign(state, patch);
  if (persistent) state.dirty = true;
  if (url) writeUrl();
  for (const f of listeners) f(state, patch);
}

function parsePinned(v) {
  if (Array.isArray(v)) return v.filter((x) => typeof x === 'string' && x);
  if (typeof v === 'string') return v.split(',').filter(Boolean);
  return [];
}

function parseSupernodes(v) {
  if (typeof v === 'string') { try { v = JSON.parse(v); } catch { return []; } }
  if (!Array.isArray(v)) return [];
  return v.filter((g) => Array.isArray(g) && g.length >= 1 && g.every((x) => typeof x === 'string'));
}

/** `sg_pos` is a string in the reference's qParams; adag stores JSON {key: [x, y]} in it. */
function parseSgPos(v) {
  if (typeof v === 'string') { try { v = v ? JSON.parse(v) : {}; } catch { return {}; } }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return {};
  return Object.fromEntries(Object.entries(v).filter(([, p]) =>
    Array.isArray(p) && p.length === 2 && p.every((x) => typeof x === 'number' && Number.isFinite(x))));
}

/** State from the file's qParams. */
export function fromQParams(q) {
  q = q || {};
  const ann = q.annotations && typeof q.annotations === 'object' ? q.annotations : {};
  return {
    pinnedIds: parsePinned(q.pinnedIds),
    supernodes: parseSupernodes(q.supernodes),
    clickedId: typeof q.clickedId === 'string' ? q.clickedId : '',
    linkType: ['inputs', 'outputs', 'both'].includes(q.linkType) ? q.linkType : 'both',
    annotations: Object.fromEntries(Object.entries(ann).filter(([, v]) => typeof v === 'string')),
    sgPos: parseSgPos(q.sg_pos),
  };
}

/** State given in the URL; only keys that are present. */
export function fromUrl() {
  const p = new URLSearchParams(location.search);
  const out = {};
  if (p.has('slug')) out.slug = p.get('slug');
  if (p.has('pinnedIds')) out.pinnedIds = parsePinned(p.get('pinnedIds'));
  if (p.has('supernodes')) out.supernodes = parseSupernodes(p.get('supernodes'));
  if (p.has('clickedId')) out.clickedId = p.get('clickedId');
  if (p.has('linkType') && ['inputs', 'outputs', 'both'].includes(p.get('linkType'))) out.linkType = p.get('linkType');
  if (p.has('pruningThreshold')) {
    const t = parseFloat(p.get('pruningThreshold'));
    if (Number.isFinite(t)) out.pruningThreshold = Math.min(1, Math.max(0, t));
  }
  return out;
}

export function writeUrl() {
  const p = new URLSearchParams();
  p.set('slug', state.slug);
  if (state.pinnedIds.length) p.set('pinnedIds', state.pinnedIds.join(','));
  if (state.supernodes.length) p.set('supernodes', JSON.stringify(state.supernodes));
  if (state.clickedId) p.set('clickedId', state.clickedId);
  if (state.linkType !== 'both') p.set('linkType', state.linkType);
  p.set('pruningThreshold', String(state.pruningThreshold));
  history.replaceState(null, '', `${location.pathname}?${p}`);
}

/** The qParams object that is saved into the file. */
export function toQParams() {
  const annotations = Object.fromEntries(Object.entries(state.annotations).filter(([, v]) => v));
  return { pinnedIds: state.pinnedIds, supernodes: state.supernodes, linkType: state.linkType,
           clickedId: state.clickedId,
           sg_pos: Object.keys(state.sgPos).length ? JSON.stringify(state.sgPos) : '', annotations };
}

// ---- edits ----

export function togglePin(id) {
  if (state.pinnedIds.includes(id)) unpin([id]);
  else update({ pinnedIds: [...state.pinnedIds, id] });
}

export function unpin(ids) {
  const drop = new Set(ids);
  const supernodes = state.supernodes
    .map(([name, ...members]) => [name, ...members.filter((m) => !drop.has(m))])
    .filter((g) => g.length > 1);
  update({ pinnedIds: state.pinnedIds.filter((x) => !drop.has(x)), supernodes });
}

/** Groups pinned nodes (and members of selected supernodes) into one named supernode. */
export function group(name, ids) {
  const members = new Set(ids);
  const kept = [];
  for (const g of state.supernodes) {
    const rest = g.slice(1).filter((m) => !members.has(m));
    if (rest.length) kept.push([g[0], ...rest]);
  }
  const ordered = state.pinnedIds.filter((x) => members.has(x));
  update({ supernodes: [...kept, [name, ...ordered]] });
}

/** Remembers where the user dragged a subgraph box. */
export function moveUnit(key, x, y) {
  update({ sgPos: { ...state.sgPos, [key]: [Math.round(x), Math.round(y)] } }, { url: false });
}

export function ungroup(index) {
  update({ supernodes: state.supernodes.filter((_, i) => i !== index) });
}

export function annotate(id, text) {
  const annotations = { ...state.annotations };
  if (text) annotations[id] = text; else delete annotations[id];
  update({ annotations }, { url: false });
}
