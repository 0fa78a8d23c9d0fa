// The subgraph pane: pinned nodes and named supernodes, as a list (select with the checkboxes,
// then "group") and as a small diagram whose boxes are laid out by layer and position without
// overlapping. Links between boxes are the summed weights of the member links.

import { nodeLabel } from './model.js';
import { el, fitText, fmt } from './util.js';

const selected = new Set();   // ids checked for grouping; survives re-renders
const BOX_W = 96, MAX_BOX_W = 260, BOX_H = 30, GAP_X = 14, GAP_Y = 46, PAD = 12;
let measure = null;

export function renderSubgraph(root, model, state, actions) {
  const pinned = state.pinnedIds;
  for (const id of [...selected]) if (!pinned.includes(id)) selected.delete(id);
  const label = (id) => {
    const n = model && model.byId.get(id);
    return n ? nodeLabel(n, state.annotations) : `${id} (not in view)`;
  };
  const chip = (id) => el('div', { class: 'chip', 'data-node-id': id }, [
    checkbox(id),
    el('label', { title: id, onclick: () => actions.select(id) }, label(id)),
    el('button', { class: 'unpin', title: 'unpin', onclick: () => actions.unpin([id]) }, '×'),
  ]);
  const checkbox = (id) => {
    const c = el('input', { type: 'checkbox', class: 'sel', 'aria-label': `select ${id}` });
    c.checked = selected.has(id);
    c.addEventListener('change', () => { if (c.checked) selected.add(id); else selected.delete(id); });
    return c;
  };
  const grouped = new Set();
  const groups = state.supernodes.map((g, i) => {
    const [name, ...members] = g;
    members.forEach((m) => grouped.add(m));
    const all = el('input', { type: 'checkbox', class: 'sel-group', 'aria-label': `select ${name}` });
    all.checked = members.length > 0 && members.every((m) => selected.has(m));
    all.addEventListener('change', () => {
      for (const m of members) { if (all.checked) selected.add(m); else selected.delete(m); }
      renderSubgraph(root, model, state, actions);
    });
    // A cluster's description (adag describe), keyed by cluster id: the name is "C3: label".
    const descs = model.meta.supernode_descriptions || {};
    const desc = descs[name] ?? descs[String(name).split(':')[0]];
    return el('div', { class: 'supernode', 'data-name': name }, [
      el('div', { class: 'sn-head' }, [all, el('span', { title: desc || name }, name),
        el('button', { class: 'ungroup', title: 'ungroup', onclick: () => actions.ungroup(i) }, 'ungroup')]),
      ...(typeof desc === 'string' && desc ? [el('div', { class: 'sn-desc' }, desc)] : []),
      ...members.map(chip),
    ]);
  });
  const loose = pinned.filter((id) => !grouped.has(id)).map(chip);
  const nameInput = el('input', { id: 'group-name', placeholder: 'supernode name', 'aria-label': 'supernode name' });
  const side = el('div', { class: 'sg-side' }, [
    el('h3', {}, `subgraph · ${pinned.length} pinned`),
    el('div', { class: 'sg-tools' }, [
      nameInput,
      el('button', { id: 'group-btn', title: 'group the checked nodes into a supernode', onclick: () => {
        const ids = pinned.filter((id) => selected.has(id));
        if (!ids.length) return;
        const name = nameInput.value.trim() || `group ${state.supernodes.length + 1}`;
        selected.clear();
        actions.group(name, ids);
      } }, 'group'),
      el('button', { id: 'unpin-all', title: 'unpin everything', onclick: () => actions.unpin([...pinned]) }, 'clear'),
    ]),
    pinned.length ? null : el('p', { class: 'hint' }, 'Ctrl/⌘+click nodes in the graph to pin them here.'),
    ...groups,
    ...loose,
  ]);
  const wrap = el('div', { id: 'subgraph-svg-wrap' });
  root.replaceChildren(side, wrap);
  drawDiagram(wrap, model, state, actions, label);
}

function drawDiagram(wrap, model, state, actions, label) {
  if (!model || !state.pinnedIds.length) {
    wrap.append(el('div', { class: 'empty' }, 'No pinned nodes.'));
    return;
  }
  const unitOf = new Map();
  const units = [];
  const inGroup = new Set();
  state.supernodes.forEach(([name, ...members]) => {
    const nodes = members.map((m) => model.byId.get(m)).filter(Boolean);
    if (!nodes.length) return;
    const u = { key: `sn:${name}`, text: `${name} (${nodes.length})`, nodes, sn: true };
    units.push(u);
    for (const n of nodes) { unitOf.set(n, u); inGroup.add(n.id); }
  });
  for (const id of state.pinnedIds) {
    const n = model.byId.get(id);
    if (!n || inGroup.has(id) || unitOf.has(n)) continue;
    const u = { key: id, text: label(id), nodes: [n], sn: false };
    units.push(u);
    unitOf.set(n, u);
  }
  if (!measure) { measure = document.createElement('canvas').getContext('2d'); }
  measure.font = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
  for (const u of units) {
    u.row = Math.max(...u.nodes.map((n) => n.row));
    u.ctx = u.nodes.reduce((s, n) => s + n.ctx, 0) / u.nodes.length;
    // Boxes as wide as their names (up to MAX_BOX_W), so that names are not cut.
    u.w = Math.min(MAX_BOX_W, Math.max(BOX_W, Math.ceil(measure.measureText(u.text).width) + 16));
  }
  const rows = [...new Set(units.map((u) => u.row))].sort((a, b) => b - a);
  const width0 = Math.max(wrap.clientWidth || 600, 300);
  // Positions spread over the whole width by rank (not by raw position, which bunched every
  // box near the last tokens).
  const slots = [...new Set(units.map((u) => u.ctx))].sort((a, b) => a - b);
  const slotOf = new Map(slots.map((c, i) => [c, i]));
  const maxW = Math.max(...units.map((u) => u.w));
  let width = width0;
  // Rows as close as the pane needs to show them all (but never closer than 16 px).
  const avail = wrap.clientHeight || 240;
  const gapY = rows.length > 1
    ? Math.max(16, Math.min(GAP_Y, (avail - 2 * PAD - rows.length * BOX_H) / (rows.length - 1)))
    : GAP_Y;
  rows.forEach((row, ri) => {
    const us = units.filter((u) => u.row === row).sort((a, b) => a.ctx - b.ctx);
    let prev = -Infinity;
    for (const u of us) {
      const f = slots.length > 1 ? slotOf.get(u.ctx) / (slots.length - 1) : 0.5;
      const want = PAD + f * (width0 - 2 * PAD - maxW) + (maxW - u.w) / 2;
      u.x = Math.max(want, prev + GAP_X);
      prev = u.x + u.w;
      u.y = PAD + ri * (BOX_H + gapY);
    }
  });
  // Where the user dragged a box, it stays (saved as qParams.sg_pos).
  for (const u of units) {
    const p = state.sgPos && state.sgPos[u.key];
    if (p) { u.x = Math.max(0, p[0]); u.y = Math.max(0, p[1]); }
  }
  for (const u of units) width = Math.max(width, u.x + u.w + PAD);
  const height = Math.max(...units.map((u) => u.y + BOX_H + PAD));
  const agg = new Map();
  for (const l of model.links) {
    const a = unitOf.get(l.s), b = unitOf.get(l.t);
    if (!a || !b || a === b) continue;
    const k = `${a.key}\u0000${b.key}`;
    const e = agg.get(k) || { a, b, w: 0 };
    e.w += l.w;
    agg.set(k, e);
  }
  const edges = [...agg.values()];
  const maxAbs = Math.max(1e-12, ...edges.map((e) => Math.abs(e.w)));
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('width', width);
  svg.setAttribute('height', height);
  svg.setAttribute('id', 'subgraph-svg');
  const mk = (tag, attrs) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  };
  // From the source box's border to the target's (top/bottom by which one is lower).
  const place = (e) => {
    const [lo, hi] = e.a.y >= e.b.y ? [e.a, e.b] : [e.b, e.a];
    e.line.setAttribute('x1', lo.x + lo.w / 2);
    e.line.setAttribute('y1', lo.y);
    e.line.setAttribute('x2', hi.x + hi.w / 2);
    e.line.setAttribute('y2', hi.y + BOX_H);
  };
  for (const e of edges) {
    e.line = mk('line', {
      stroke: e.w >= 0 ? '#2c6fbb' : '#d2452c', 'stroke-opacity': 0.75,
      'stroke-width': (1 + 4 * Math.abs(e.w) / maxAbs).toFixed(2),
    });
    place(e);
    const t = mk('title', {});
    t.textContent = `${e.a.text} → ${e.b.text}: ${fmt(e.w)}`;
    e.line.append(t);
    svg.append(e.line);
  }
  for (const u of units) {
    const clicked = u.nodes.some((n) => n.id === state.clickedId);
    const g = mk('g', { class: `unit${u.sn ? ' sn' : ''}${clicked ? ' clicked' : ''}`, 'data-key': u.key,
                        transform: `translate(${u.x},${u.y})` });
    g.append(mk('rect', { width: u.w, height: BOX_H, rx: 5 }));
    const text = mk('text', { x: 7, y: BOX_H / 2 + 4 });
    text.textContent = fitText(measure, u.text, u.w - 14);
    const title = mk('title', {});
    title.textContent = u.text;
    g.append(text, title);
    // Drag to move a box (its edges follow); a click without moving selects it.
    g.addEventListener('mousedown', (ev) => {
      ev.preventDefault();
      const x0 = ev.clientX, y0 = ev.clientY, ux = u.x, uy = u.y;
      let moved = false;
      const move = (m) => {
        const dx = m.clientX - x0, dy = m.clientY - y0;
        if (!moved && dx * dx + dy * dy < 9) return;
        moved = true;
        u.x = Math.max(0, ux + dx);
        u.y = Math.max(0, uy + dy);
        g.setAttribute('transform', `translate(${u.x},${u.y})`);
        for (const e of edges) if (e.a === u || e.b === u) place(e);
      };
      const up = () => {
        window.removeEventListener('mousemove', move);
        window.removeEventListener('mouseup', up);
        if (moved) actions.moveUnit(u.key, u.x, u.y);
        else actions.select(u.nodes[0].id);
      };
      window.addEventListener('mousemove', move);
      window.addEventListener('mouseup', up);
    });
    svg.append(g);
  }
  wrap.append(svg);
}
