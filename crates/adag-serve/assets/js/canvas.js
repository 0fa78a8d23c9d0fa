// The graph view: one <canvas>, so that 10^4 nodes and 10^5 links draw in milliseconds where
// SVG would build 10^5 DOM elements. Nodes sit at (token position, layer): tokens along the
// bottom, layers upwards, target logits on top. Links are straight lines coloured by sign, with
// width by |weight|. Labels are placed greedily and skipped when they would overlap anything.

import { KIND, nodeLabel, passesThreshold } from './model.js';
import { fitText, showToken } from './util.js';
import { loadFeatureDetail, topTokens } from './features.js';

const ROW_H = 80;          // world units between layers
const SPACING = 26;        // world units between nodes of one cell
const MIN_COL = 70;
const MAX_TOKEN_COL = 130;
const GAP = 12;
const GUTTER = 56;         // screen px kept for the layer labels
const MARGIN = { left: GUTTER + 18, right: 24, top: 64, bottom: 44 };
const ROTATED_BOTTOM = 96;  // screen px below the token row when its labels are slanted
const AXIS_CHARS = 14;      // a slanted token label shows at most this many characters
const AXIS_FONT = '10px ui-monospace, Menlo, Consolas, monospace';
const AXIS_LINE = 11;       // px between slanted labels for them not to overlap
const PROMPT_LINE = 22;     // px at the top kept for the prompt line
const LABEL_FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const TOKEN_FONT = '12px ui-monospace, Menlo, Consolas, monospace';
const POS = [44, 111, 187], NEG = [210, 69, 44];
const FILL = { feature: '#f2b134', neuron: '#7fb85a', error: '#a3a7ad', embedding: '#e6e8ec', logit: '#b487d0' };
const STROKE = { feature: '#8a5a00', neuron: '#3f6f24', error: '#5f6368', embedding: '#5f6368', logit: '#6d3e8c' };

export class GraphView {
  constructor(canvas, tooltip, handlers) {
    this.canvas = canvas;
    this.tooltip = tooltip;
    this.handlers = handlers;
    this.ctx = canvas.getContext('2d');
    this.model = null;
    this.state = null;
    this.t = { sx: 1, sy: 1, tx: 0, ty: 0 };
    this.pending = false;
    this.drawn = 0;
    this.labelBoxes = [];
    this.bindEvents();
    new ResizeObserver(() => this.resize()).observe(canvas);
    this.resize();
  }

  resize() {
    const r = this.canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    this.W = Math.max(1, r.width);
    this.H = Math.max(1, r.height);
    this.canvas.width = Math.round(this.W * dpr);
    this.canvas.height = Math.round(this.H * dpr);
    this.dpr = dpr;
    if (this.model && !this.userMoved) this.fit();
    // Setting the canvas size has just cleared it: draw now rather than on the next animation
    // frame, which a background tab (or a headless capture) may not give before it is shown.
    this.draw();
  }

  setModel(model) {
    this.model = model;
    this.userMoved = false;
    this.layoutKey = null;
    this.relayout();
    this.fit();
    this.requestDraw();
  }

  /** Re-lays out the visible nodes when the visible set changed (slider, pins); true if so. */
  relayout() {
    const s = this.state;
    if (!this.model || !s) { if (this.model) this.layout(); return false; }
    const pinned = new Set(s.pinnedIds);
    const clicked = this.model.byId.get(s.clickedId);
    const clickedHidden = clicked && !passesThreshold(clicked, s.pruningThreshold, pinned);
    const key = `${s.pruningThreshold}|${s.pinnedIds.join(',')}|${clickedHidden ? s.clickedId : ''}`;
    if (key === this.layoutKey) return false;
    this.layoutKey = key;
    this.layout(this.visibleNodes());
    return true;
  }

  setState(state) {
    this.state = state;
    this.requestDraw();
  }

  // ---- layout ----

  /** Lays out `nodes` (default: all). Pruning lays out only the survivors, so that they spread
   *  over the view instead of keeping the places they had among thousands of others. */
  layout(nodes = this.model.nodes) {
    const m = this.model;
    const ctx = this.ctx;
    const P = Math.max(1, m.nPos);
    const rows = m.nLayers + 2;
    const cells = new Map();
    for (const n of nodes) {
      const key = n.row * P + n.ctx;
      if (!cells.has(key)) cells.set(key, []);
      cells.get(key).push(n);
    }
    ctx.font = LABEL_FONT;
    const colW = new Array(P).fill(MIN_COL);
    const order = (a, b) => {
      const ea = a.kind === KIND.ERR ? 1 : 0, eb = b.kind === KIND.ERR ? 1 : 0;
      if (ea !== eb) return ea - eb;
      if (a.kind === KIND.LOGIT) return (b.raw.token_prob || 0) - (a.raw.token_prob || 0);
      return (a.influence ?? 0) - (b.influence ?? 0) || a.index - b.index;
    };
    for (const [key, list] of cells) {
      list.sort(order);
      const p = key % P;
      const row = Math.floor(key / P);
      let w;
      if (row === rows - 1) {
        for (const n of list) n.labelW = ctx.measureText(canvasLabel(n)).width + 14;
        w = list.reduce((s, n) => s + n.labelW, 0) + 8;
      } else {
        w = list.length * SPACING + 16;
      }
      colW[p] = Math.max(colW[p], w);
    }
    ctx.font = TOKEN_FONT;
    for (let p = 0; p < P; p++) {
      const tok = showToken(m.promptTokens[p] ?? '');
      colW[p] = Math.max(colW[p], Math.min(ctx.measureText(tok).width + 14, MAX_TOKEN_COL));
    }
    const colX = new Array(P);
    let x = 0;
    for (let p = 0; p < P; p++) { colX[p] = x; x += colW[p] + GAP; }
    for (const [key, list] of cells) {
      const p = key % P;
      const row = Math.floor(key / P);
      const y = (rows - 1 - row) * ROW_H;
      if (row === rows - 1) {
        const total = list.reduce((s, n) => s + n.labelW, 0);
        let cx = colX[p] + (colW[p] - total) / 2;
        for (const n of list) { n.x = cx + n.labelW / 2; n.y = y; cx += n.labelW; }
      } else {
        const spacing = Math.min(SPACING, (colW[p] - 8) / Math.max(1, list.length));
        const start = colX[p] + colW[p] / 2 - ((list.length - 1) * spacing) / 2;
        list.forEach((n, k) => { n.x = start + k * spacing; n.y = y; });
      }
    }
    this.colX = colX;
    this.colW = colW;
    this.rows = rows;
    this.worldW = Math.max(1, x - GAP);
    this.worldH = (rows - 1) * ROW_H;
  }

  fit() {
    const aw = Math.max(50, this.W - MARGIN.left - MARGIN.right);
    // Slanted token labels (a long prompt) need room below the token row.
    const sx0 = Math.min(aw / this.worldW, 3);
    this.rotateTokens = this.tokensNeedRotation(sx0);
    // Logit labels that do not fit side by side stack upwards: keep room for the stack.
    const logits = this.model.logits;
    let levels = 1;
    if (logits.length) {
      const need = logits.reduce((w, n) => w + (n.labelW || 0), 0);
      const have = Math.max(1, (this.colW[logits[0].ctx] ?? 0) * sx0);
      levels = Math.min(logits.length, Math.max(1, Math.ceil(need / have)));
    }
    const top = Math.max(MARGIN.top, PROMPT_LINE + 18 + 14 * levels);
    const ah = Math.max(50, this.H - top - (this.rotateTokens ? ROTATED_BOTTOM : MARGIN.bottom));
    const sx = Math.min(aw / this.worldW, 3);
    const sy = Math.min(ah / Math.max(1, this.worldH), 1.8);
    this.t = {
      sx, sy,
      tx: MARGIN.left + (aw - this.worldW * sx) / 2,
      ty: top + (ah - this.worldH * sy) / 2,
    };
    this.userMoved = false;
    this.requestDraw();
  }

  // ---- drawing ----

  requestDraw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  /** Whether some token label is wider than its column at horizontal scale `sx`. */
  tokensNeedRotation(sx) {
    const ctx = this.ctx;
    ctx.font = TOKEN_FONT;
    for (let p = 0; p < this.colX.length; p++) {
      const w = ctx.measureText(showToken(this.model.promptTokens[p] ?? '')).width;
      if (w > (this.colW[p] + GAP) * sx - 8) return true;
    }
    return false;
  }

  visibleNodes() {
    const s = this.state;
    const pinned = new Set(s.pinnedIds);
    if (s.clickedId) pinned.add(s.clickedId);
    return this.model.nodes.filter((n) => passesThreshold(n, s.pruningThreshold, pinned));
  }

  draw() {
    const { ctx, model: m, state: s } = this;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.clearRect(0, 0, this.W, this.H);
    if (!m || !s) return;
    if (this.relayout() && !this.userMoved) { this.fit(); }
    const { sx, sy, tx, ty } = this.t;
    const vis = this.visibleNodes();
    const visible = new Set(vis);
    for (const n of m.nodes) { n.sx = n.x * sx + tx; n.sy = n.y * sy + ty; n.visible = visible.has(n); }
    this.vis = vis;

    this.drawGuides();

    const links = m.links.filter((l) => l.s.visible && l.t.visible);
    const focus = m.byId.get(s.hoveredId) || m.byId.get(s.clickedId) || null;
    const focusLinks = new Set();
    const near = new Set();
    if (focus) {
      near.add(focus);
      if (s.linkType !== 'outputs') for (const l of focus.inLinks) if (l.s.visible) { focusLinks.add(l); near.add(l.s); }
      if (s.linkType !== 'inputs') for (const l of focus.outLinks) if (l.t.visible) { focusLinks.add(l); near.add(l.t); }
    }
    let maxW = 0;
    for (const l of links) maxW = Math.max(maxW, Math.abs(l.w));
    const widthOf = (w) => 0.6 + 3.4 * Math.sqrt(Math.abs(w) / (maxW || 1));
    const baseAlpha = focus ? 0.07 : links.length < 300 ? 0.5 : links.length < 5000 ? 0.25 : 0.1;
    this.strokeLinks(links, widthOf, baseAlpha, focus ? focusLinks : null);
    if (focus) this.strokeLinks([...focusLinks], widthOf, 0.95, null);

    for (const n of vis) {
      const dim = focus && !near.has(n);
      this.drawNode(n, dim, pinnedSet(s), s.clickedId === n.id, s.hoveredId === n.id);
    }
    this.drawLabels(vis, focus, near);
    this.drawTokens();
    this.drawn++;
    if (this.drawn === 1 && this.handlers.onFirstDraw) this.handlers.onFirstDraw();
  }

  strokeLinks(links, widthOf, alpha, skip) {
    const ctx = this.ctx;
    const buckets = new Map();
    for (const l of links) {
      if (skip && skip.has(l)) continue;
      const wb = Math.min(8, Math.max(1, Math.round(widthOf(l.w) * 2)));
      const key = (l.w >= 0 ? 'p' : 'n') + wb;
      let b = buckets.get(key);
      if (!b) { b = []; buckets.set(key, b); }
      b.push(l);
    }
    for (const [key, list] of buckets) {
      const c = key[0] === 'p' ? POS : NEG;
      ctx.strokeStyle = `rgba(${c[0]},${c[1]},${c[2]},${alpha})`;
      ctx.lineWidth = Number(key.slice(1)) / 2;
      ctx.beginPath();
      for (const l of list) { ctx.moveTo(l.s.sx, l.s.sy); ctx.lineTo(l.t.sx, l.t.sy); }
      ctx.stroke();
    }
  }

  nodeRadius() {
    return Math.max(2.5, Math.min(7, 6 * Math.sqrt(Math.min(this.t.sx, this.t.sy * 1.2))));
  }

  drawNode(n, dim, pinned, clicked, hovered) {
    const ctx = this.ctx;
    const r = this.nodeRadius();
    const { sx: x, sy: y } = n;
    if (x < -20 || y < -20 || x > this.W + 20 || y > this.H + 20) return;
    ctx.globalAlpha = dim ? 0.25 : 1;
    ctx.fillStyle = FILL[n.kind];
    ctx.strokeStyle = STROKE[n.kind];
    ctx.lineWidth = 1;
    ctx.beginPath();
    if (n.kind === KIND.ERR) ctx.rect(x - r * 0.9, y - r * 0.9, r * 1.8, r * 1.8);
    else if (n.kind === KIND.EMB || n.kind === KIND.LOGIT) ctx.roundRect(x - r * 1.3, y - r * 0.85, r * 2.6, r * 1.7, 3);
    else ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.fill();
    ctx.stroke();
    if (pinned.has(n.id) || clicked || hovered) {
      ctx.lineWidth = clicked ? 2.5 : 2;
      ctx.strokeStyle = clicked ? '#e4572e' : hovered ? '#1d1d1f' : '#3a3a3c';
      ctx.beginPath();
      ctx.arc(x, y, r + 3.5, 0, 2 * Math.PI);
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
  }

  drawGuides() {
    const ctx = this.ctx;
    const { sy, ty } = this.t;
    ctx.fillStyle = 'rgba(251,251,249,0.94)';
    ctx.fillRect(0, 0, GUTTER, this.H);
    ctx.font = LABEL_FONT;
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'left';
    for (let row = 0; row < this.rows; row++) {
      const y = (this.rows - 1 - row) * ROW_H * sy + ty;
      if (y < -10 || y > this.H + 10) continue;
      ctx.strokeStyle = 'rgba(0,0,0,0.06)';
      ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(GUTTER, y); ctx.lineTo(this.W, y); ctx.stroke();
      const name = row === 0 ? 'tokens' : row === this.rows - 1 ? 'logits' : `L${row - 1}`;
      ctx.fillStyle = '#6b6b70';
      ctx.fillText(name, 8, y);
    }
  }

  drawTokens() {
    const ctx = this.ctx;
    const m = this.model;
    const { sx, sy, tx, ty } = this.t;
    const y = (this.rows - 1) * ROW_H * sy + ty + 22;
    ctx.font = TOKEN_FONT;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillStyle = '#1d1d1f';
    // A long prompt's tokens do not fit their columns: slant them (at most AXIS_CHARS
    // characters; the full token is in the tooltip) rather than cutting them to "…".
    const rotate = this.tokensNeedRotation(sx);
    this.tokenBoxes = [];
    // Slant at 60° where neighbours stay apart, else stand upright; if even upright labels
    // would touch, label every k-th position (hover shows any token).
    let step = Infinity;
    for (let p = 1; p < this.colX.length; p++) step = Math.min(step, (this.colX[p] - this.colX[p - 1]) * sx);
    const angle = step * Math.sin(Math.PI / 3) >= AXIS_LINE ? Math.PI / 3 : Math.PI / 2;
    const every = Math.max(1, Math.ceil(AXIS_LINE / (step * Math.sin(angle))));
    if (rotate) ctx.font = AXIS_FONT;
    for (let p = 0; p < this.colX.length; p++) {
      const cx = (this.colX[p] + this.colW[p] / 2) * sx + tx;
      const maxW = (this.colW[p] + GAP) * sx - 8;
      if (cx < GUTTER || cx > this.W + 50) continue;
      const full = showToken(m.promptTokens[p] ?? '');
      if (rotate) {
        const shown = p % every === 0 || p === this.colX.length - 1;
        const text = !shown ? '' : full.length > AXIS_CHARS ? full.slice(0, AXIS_CHARS - 1) + '…' : full;
        ctx.save();
        ctx.translate(cx, y - 8);
        ctx.rotate(-angle);
        ctx.textAlign = 'right';
        ctx.textBaseline = 'middle';
        if (text) ctx.fillText(text, 0, 0); else ctx.fillRect(-4, -0.5, 4, 1);
        ctx.restore();
        this.tokenBoxes.push({ p, cx, y0: y - 10, y1: y + ROTATED_BOTTOM - 24, angle, text, full, rotated: true });
      } else {
        const text = fitText(ctx, full, Math.min(maxW, MAX_TOKEN_COL * Math.max(1, sx)));
        if (text) ctx.fillText(text, cx, y);
        this.tokenBoxes.push({ p, x0: cx - maxW / 2, x1: cx + maxW / 2, y0: y - 9, y1: y + 9, text, full, rotated: false });
      }
    }
    ctx.textAlign = 'left';
  }

  /** The prompt position whose axis label is under (x, y), or -1. */
  tokenAt(x, y) {
    // Slanted labels overlap their neighbours' boxes: the nearest column centre wins.
    let best = -1, bd = Infinity;
    for (const b of this.tokenBoxes || []) {
      if (y < b.y0 || y > b.y1) continue;
      // A slanted label runs from (cx, y0 + 2) down and to the left at its angle.
      const c = b.rotated ? b.cx - (y - b.y0 - 2) / Math.tan(b.angle) : (b.x0 + b.x1) / 2;
      const d = Math.abs(x - c);
      if (d < bd && (b.rotated ? d < 12 : x >= b.x0 && x <= b.x1)) { bd = d; best = b.p; }
    }
    return best;
  }

  drawLabels(vis, focus, near) {
    const ctx = this.ctx;
    const s = this.state;
    const r = this.nodeRadius();
    ctx.font = LABEL_FONT;
    ctx.textBaseline = 'middle';
    const placed = [];
    // Everything a label must not cover: the gutter, the token row, and every visible node.
    const tokY = (this.rows - 1) * ROW_H * this.t.sy + this.t.ty + 22;
    placed.push({ x0: 0, y0: 0, x1: GUTTER, y1: this.H });
    placed.push({ x0: 0, y0: 0, x1: this.W, y1: PROMPT_LINE });
    placed.push({ x0: 0, y0: tokY - 9, x1: this.W, y1: tokY + 9 });
    const grid = new Map();
    const CELL = 32;
    const gkey = (i, j) => i * 100003 + j;
    for (const n of vis) {
      const k = gkey(Math.floor(n.sx / CELL), Math.floor(n.sy / CELL));
      if (!grid.has(k)) grid.set(k, []);
      grid.get(k).push(n);
    }
    const hitsNode = (b, own) => {
      for (let i = Math.floor((b.x0 - r) / CELL); i <= Math.floor((b.x1 + r) / CELL); i++) {
        for (let j = Math.floor((b.y0 - r) / CELL); j <= Math.floor((b.y1 + r) / CELL); j++) {
          for (const n of grid.get(gkey(i, j)) || []) {
            if (n === own) continue;
            if (n.sx + r + 1 > b.x0 && n.sx - r - 1 < b.x1 && n.sy + r + 1 > b.y0 && n.sy - r - 1 < b.y1) return true;
          }
        }
      }
      return false;
    };
    const overlaps = (b) => placed.some((p) => b.x0 < p.x1 && b.x1 > p.x0 && b.y0 < p.y1 && b.y1 > p.y0);
    const pinned = pinnedSet(s);
    const cand = [];
    for (const n of vis) {
      if (n.kind === KIND.EMB) continue;   // the token row names them
      let prio;
      if (n.kind === KIND.LOGIT) prio = 0 - (n.raw.token_prob || 0);
      else if (n.id === s.clickedId) prio = 1;
      else if (focus === n) prio = 1.5;
      else if (pinned.has(n.id)) prio = 2;
      else if (focus && near.has(n)) prio = 3;
      else prio = 4 + (n.influence ?? 0);
      cand.push([prio, n]);
    }
    cand.sort((a, b) => a[0] - b[0]);
    const boxes = [];
    const H = 14;
    for (const [, n] of cand.slice(0, 400)) {
      if (n.sx < GUTTER || n.sx > this.W || n.sy < 0 || n.sy > this.H) continue;
      const full = canvasLabel(n, s.annotations);
      const text = fitText(ctx, full, n.kind === KIND.LOGIT ? 160 : 150);
      if (!text) continue;
      const w = ctx.measureText(text).width + 4;
      // Logit labels stack upwards (and lean sideways) rather than vanish when they collide.
      const tries = n.kind === KIND.LOGIT
        ? [0, 1, 2, 3, 4, 5, 6, 7].flatMap((k) => [-w / 2, -w + r, -r].map((dx) => [n.sx + dx, n.sy - r - 4 - H * (k + 1)]))
        : [[n.sx + r + 4, n.sy - H / 2], [n.sx - r - 4 - w, n.sy - H / 2], [n.sx - w / 2, n.sy - r - 4 - H]];
      for (const [x0, y0] of tries) {
        const b = { x0, y0, x1: x0 + w, y1: y0 + H };
        if (b.x0 < 0 || b.x1 > this.W || b.y0 < 0 || b.y1 > this.H) continue;
        if (overlaps(b) || hitsNode(b, n)) continue;
        placed.push(b);
        boxes.push({ ...b, text, id: n.id });
        break;
      }
    }
    for (const b of boxes) {
      const dim = focus && !near.has(this.model.byId.get(b.id));
      ctx.lineJoin = 'round';
      ctx.lineWidth = 3;
      ctx.strokeStyle = 'rgba(251,251,249,0.9)';
      ctx.strokeText(b.text, b.x0 + 2, (b.y0 + b.y1) / 2);
      ctx.fillStyle = dim ? 'rgba(29,29,31,0.35)' : '#1d1d1f';
      ctx.fillText(b.text, b.x0 + 2, (b.y0 + b.y1) / 2);
    }
    this.labelBoxes = boxes;
  }

  // ---- interaction ----

  nodeAt(x, y) {
    if (!this.vis) return null;
    const r = Math.max(8, this.nodeRadius() + 3);
    let best = null, bd = r * r;
    for (const n of this.vis) {
      const d = (n.sx - x) ** 2 + (n.sy - y) ** 2;
      if (d <= bd) { bd = d; best = n; }
    }
    return best;
  }

  /** Where a node is on the page (CSS pixels), for tests and tooltips. */
  screenPos(id) {
    const n = this.model && this.model.byId.get(id);
    if (!n || !this.visibleNodes().includes(n)) return null;
    if (this.relayout() && !this.userMoved) this.fit();
    const rect = this.canvas.getBoundingClientRect();
    // From the current transform, not the last frame, which may not have been drawn yet.
    return { x: rect.left + n.x * this.t.sx + this.t.tx, y: rect.top + n.y * this.t.sy + this.t.ty };
  }

  bindEvents() {
    const c = this.canvas;
    let drag = null;
    const local = (e) => { const r = c.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
    c.addEventListener('mousedown', (e) => {
      const [x, y] = local(e);
      drag = { x, y, tx: this.t.tx, ty: this.t.ty, moved: false };
    });
    window.addEventListener('mousemove', (e) => {
      const [x, y] = local(e);
      if (drag) {
        const dx = x - drag.x, dy = y - drag.y;
        if (!drag.moved && dx * dx + dy * dy > 16) { drag.moved = true; c.classList.add('dragging'); }
        if (drag.moved) {
          this.t.tx = drag.tx + dx; this.t.ty = drag.ty + dy;
          this.userMoved = true;
          this.requestDraw();
          return;
        }
      }
      if (e.target !== c) return;
      const n = this.nodeAt(x, y);
      this.showTooltip(n, x, y);
      if (!n) this.showTokenTooltip(this.tokenAt(x, y), x, y);
      const id = n ? n.id : '';
      if (id !== this.state.hoveredId) this.handlers.onHover(id);
    });
    window.addEventListener('mouseup', (e) => {
      if (!drag) return;
      const wasDrag = drag.moved;
      drag = null;
      c.classList.remove('dragging');
      if (wasDrag || e.target !== c) return;
      const [x, y] = local(e);
      this.handlers.onClick(this.nodeAt(x, y), e);
    });
    c.addEventListener('mouseleave', () => { this.showTooltip(null); if (this.state.hoveredId) this.handlers.onHover(''); });
    c.addEventListener('wheel', (e) => {
      e.preventDefault();
      const [x, y] = local(e);
      const f = Math.exp(-e.deltaY * 0.0015);
      this.zoomAt(x, y, f);
    }, { passive: false });
  }

  zoomAt(x, y, f) {
    const t = this.t;
    t.tx = x - (x - t.tx) * f;
    t.ty = y - (y - t.ty) * f;
    t.sx *= f;
    t.sy *= f;
    this.userMoved = true;
    this.requestDraw();
  }

  /** The full token under the axis, for labels that were slanted or cut. */
  showTokenTooltip(p, x, y) {
    if (p < 0) return;
    const tt = this.tooltip;
    tt.textContent = `token ${p}: "${showToken(this.model.promptTokens[p] ?? '')}"`;
    tt.dataset.token = String(p);
    tt.hidden = false;
    tt.style.left = `${Math.min(x + 14, this.W - 330)}px`;
    tt.style.top = `${Math.max(0, y - 30)}px`;
  }

  /** Re-renders the tooltip in place (its node's label may have changed: an annotation). */
  refreshTooltip() {
    if (this.tip && !this.tooltip.hidden && this.tip.n) this.showTooltip(this.tip.n, this.tip.x, this.tip.y);
  }

  showTooltip(n, x, y) {
    const tt = this.tooltip;
    this.tip = { n, x, y };
    delete tt.dataset.token;
    if (!n) { tt.hidden = true; return; }
    const s = this.state;
    const where = n.kind === KIND.LOGIT ? 'logit' : n.kind === KIND.EMB ? 'token' : `L${n.layer}`;
    tt.textContent = `${nodeLabel(n, s.annotations)} · ${where} @ ${n.ctx} "${showToken(this.model.promptTokens[n.ctx] ?? '')}"`;
    tt.hidden = false;
    tt.style.left = `${Math.min(x + 14, this.W - 330)}px`;
    tt.style.top = `${y + 14}px`;
    if ((n.kind === KIND.FEAT || n.kind === KIND.NEURON) && n.layer !== null) this.addTopTokens(n);
  }

  /** Appends the unit's top tokens (from its dashboard, fetched once) if the tooltip still
   *  shows the same node when they arrive. */
  addTopTokens(n) {
    loadFeatureDetail(this.model.meta, n).then((d) => {
      const toks = topTokens(d);
      const tt = this.tooltip;
      if (!toks.length || tt.hidden || !this.tip || this.tip.n !== n || tt.querySelector('.tt-top')) return;
      const line = document.createElement('div');
      line.className = 'tt-top';
      line.textContent = `fires on: ${toks.map((t) => `"${showToken(t)}"`).join(', ')}`;
      tt.append(line);
    }).catch(() => {});
  }
}

/** Logits carry their probability on the canvas: `"Austin" 61%`. */
function canvasLabel(n, annotations) {
  const base = nodeLabel(n, annotations);
  if (n.kind !== KIND.LOGIT || !n.raw.token_prob) return base;
  return `${base} ${(100 * n.raw.token_prob).toFixed(n.raw.token_prob < 0.1 ? 1 : 0)}%`;
}

function pinnedSet(s) {
  if (s._pinCache !== s.pinnedIds) { s._pinCache = s.pinnedIds; s._pinSet = new Set(s.pinnedIds); }
  return s._pinSet;
}
