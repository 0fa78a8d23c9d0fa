// Feature-detail files (circuit-tracer's format, served from --features-dir under /features/):
//   {base}index.json.gz  gzip JSON, by layer: {"offsets": [d+1 byte offsets], "filename": "layer_i.bin"}
//   {base}layer_i.bin    records of 4-byte little-endian length N + N bytes of zlib JSON;
//                        feature f is bytes [offsets[f], offsets[f+1]) and is fetched with Range
//   {base}{cantor(layer, feature)}.json   the per-feature JSON fallback
// where base is first /graph-features/{slug}/ (the dashboards the server finds for that graph
// from its metadata: its transcoders' or model's features/ folder), then /features/{scan}/ and
// /features/ (the --features-dir folder).

const indexCache = new Map();
const detailCache = new Map();

function bases(scan, slug) {
  const out = [];
  if (typeof slug === 'string' && /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(slug)) {
    out.push(`/graph-features/${encodeURIComponent(slug)}/`);
  }
  const clean = typeof scan === 'string' ? scan.replace(/^(\.\/|\/)+/, '') : '';
  if (clean && !clean.split('/').some((p) => p === '..' || p === '.' || p === '')) {
    out.push(`/features/${clean.split('/').map(encodeURIComponent).join('/')}/`);
  }
  out.push('/features/');
  return out;
}

async function inflate(bytes, format) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream(format));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function getIndex(base) {
  if (!indexCache.has(base)) {
    indexCache.set(base, (async () => {
      const head = await fetch(`${base}index.json.gz`, { method: 'HEAD' });
      if (!head.ok) return null;
      const r = await fetch(`${base}index.json.gz`);
      if (!r.ok) return null;
      const bytes = new Uint8Array(await r.arrayBuffer());
      // Served as bytes; a proxy may already have decoded it.
      const text = bytes[0] === 0x1f && bytes[1] === 0x8b
        ? new TextDecoder().decode(await inflate(bytes, 'gzip'))
        : new TextDecoder().decode(bytes);
      return JSON.parse(text);
    })().catch(() => null));
  }
  return indexCache.get(base);
}

async function fromBinary(base, index, layer, f) {
  const entry = Array.isArray(index) ? index[layer] : index[String(layer)];
  if (!entry || !Array.isArray(entry.offsets) || typeof entry.filename !== 'string') return null;
  const start = entry.offsets[f], end = entry.offsets[f + 1];
  if (!Number.isFinite(start) || !Number.isFinite(end) || end <= start + 4) return null;
  const r = await fetch(`${base}${encodeURIComponent(entry.filename)}`, { headers: { Range: `bytes=${start}-${end - 1}` } });
  if (!r.ok) return null;
  let buf = new Uint8Array(await r.arrayBuffer());
  if (r.status === 200) buf = buf.slice(start, end);   // the server ignored the range
  const len = new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getUint32(0, true);
  const json = await inflate(buf.slice(4, 4 + len), 'deflate');
  return JSON.parse(new TextDecoder().decode(json));
}

/** The detail JSON of a feature or neuron node, or null when there are no files for it.
 *  Cached per unit, so hovering and clicking the same node fetch it once. */
export function loadFeatureDetail(meta, node) {
  const key = `${meta.slug}|${meta.scan}|${node.layer}|${node.unit}|${node.raw.feature}`;
  if (!detailCache.has(key)) {
    const p = findDetail(meta, node);
    detailCache.set(key, p);
    p.catch(() => detailCache.delete(key));
  }
  return detailCache.get(key);
}

/** The tokens a unit fires on most: the peak token of each top example, distinct, in order. */
export function topTokens(detail, n = 5) {
  const q = Array.isArray(detail && detail.examples_quantiles) ? detail.examples_quantiles[0] : null;
  const out = [];
  for (const ex of (q && Array.isArray(q.examples) ? q.examples : [])) {
    const t = Array.isArray(ex.tokens) ? ex.tokens[ex.train_token_ind] : undefined;
    if (typeof t === 'string' && !out.includes(t)) out.push(t);
    if (out.length >= n) break;
  }
  return out;
}

async function findDetail(meta, node) {
  const layer = node.layer;
  const f = node.unit;
  for (const base of bases(meta.scan, meta.slug)) {
    const index = await getIndex(base);
    if (index && f !== null && Number.isFinite(f)) {
      const d = await fromBinary(base, index, layer, f);
      if (d) return d;
    }
    if (Number.isFinite(node.raw.feature)) {
      const r = await fetch(`${base}${node.raw.feature}.json`);
      if (r.ok) return r.json();
    }
  }
  return null;
}
