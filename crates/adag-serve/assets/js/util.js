// Small DOM and formatting helpers shared by the viewer's modules.

/** Creates an element: el('div', {class: 'x', onclick: f}, [children or strings]). */
export function el(tag, attrs = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else if (k === 'style' && typeof v === 'object') Object.assign(e.style, v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of [].concat(children)) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/** A number for display: 3 significant digits, or '—'. */
export function fmt(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  if (typeof x !== 'number') return String(x);
  if (x !== 0 && (Math.abs(x) >= 1e4 || Math.abs(x) < 1e-3)) return x.toExponential(2);
  return Number(x.toPrecision(digits)).toString();
}

/** A token as shown: newlines as ↵, tabs as →, empty as ∅. */
export function showToken(t) {
  if (t === undefined || t === null) return '';
  const s = String(t).replace(/\n/g, '↵').replace(/\t/g, '→');
  return s.length ? s : '∅';
}

/** Background colour for a signed value relative to max |value|: blue positive, red negative. */
export function heat(v, max) {
  if (!max || !v) return 'transparent';
  const a = Math.min(1, Math.abs(v) / max);
  return v > 0 ? `rgba(44,111,187,${(0.08 + 0.6 * a).toFixed(3)})`
               : `rgba(210,69,44,${(0.08 + 0.6 * a).toFixed(3)})`;
}

/** Truncates `text` with an ellipsis so that it fits `maxWidth` pixels in `ctx`'s font. */
export function fitText(ctx, text, maxWidth) {
  if (maxWidth <= 0) return '';
  if (ctx.measureText(text).width <= maxWidth) return text;
  let lo = 0, hi = text.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ctx.measureText(text.slice(0, mid) + '…').width <= maxWidth) lo = mid; else hi = mid - 1;
  }
  return lo === 0 ? '' : text.slice(0, lo) + '…';
}

export function debounce(f, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => f(...args), ms); };
}
