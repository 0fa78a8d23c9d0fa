// Feature-detail files (circuit-tracer's format, served from --features-dir under /features/):
//   {base}index.json.gz  gzip JSON, by layer: {"offsets": [d+1 byte offsets], "filename": "layer_i.bin"}
//   {base}layer_i.bin    records of 4-byte little-endian length N + N bytes of zlib JSON;
//                        feature f is bytes [offsets[f], offsets[f+1]) and is fetched with Range
//   {base}{cantor(layer, feature)}.json   the per-feature JSON fallback
// where base is /features/{scan}/ and then /features/.

const indexCache = new Map();

function bases(scan) {
  const out = [];
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

/** The detail JSON of a transcoder feature node, or null when there are no files for it. */
export async function loadFeatureDetail(scan, node) {
  const layer = node.layer;
  const f = node.unit;
  for (const base of bases(scan)) {
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
