// Graph accounting in the node panel: a logit's de-meaned value or a feature's pre-activation
// split into the edges drawn (features, errors, tokens) and the constant terms no node carries
// (decoder and attention biases, the BOS position), so the parts visibly add up to the value.

import { el, fmt } from './util.js';

export function accountingSection(n) {
  const a = n.raw && n.raw.accounting;
  if (!a || !Number.isFinite(a.value)) return [];
  const rows = [
    ['feature edges', a.features],
    ['error edges', a.errors],
    ['token edges', a.tokens],
    ...(Array.isArray(a.terms) ? a.terms.map((t) => [t.name, t.value]) : []),
    ['residual (rounding)', a.residual],
  ];
  const what = n.raw.feature_type === 'logit' ? 'de-meaned logit' : 'pre-activation';
  const table = el('table', { class: 'facts', id: 'accounting' }, [
    el('tr', { class: 'total' }, [el('th', {}, what), el('td', {}, fmt(a.value))]),
    ...rows.map(([k, v]) => el('tr', { 'data-term': k }, [el('th', {}, `${Number(v) >= 0 ? '+' : '−'} ${k}`), el('td', {}, fmt(Math.abs(Number(v))))])),
  ]);
  const out = [el('h3', {}, 'where the value comes from'), table];
  if (Number.isFinite(a.demean_constant)) {
    out.push(el('p', { class: 'hint' }, `logit ${fmt(a.value + a.demean_constant)} = ${fmt(a.value)} + mean logit ${fmt(a.demean_constant)}`));
  }
  return out;
}
