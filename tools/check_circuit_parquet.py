#!/usr/bin/env python3
"""Check that an adag circuit directory reads directly with pandas + pyarrow.

Usage: python3 tools/check_circuit_parquet.py CIRCUIT_DIR

Reads nodes.parquet, edges.parquet, prompts.parquet and manifest.json, checks the column
names and dtypes documented in crates/adag-circuit/src/circuit.rs, and checks the tables
against each other (prompt ids, profile lengths, polarity = sign of activation, positions
inside each prompt, edge endpoints among the prompt's nodes). Exits non-zero on any failure.
Needs `pip install pandas pyarrow`.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

NODE_COLS = {
    "prompt_id": "int64", "label": "object", "layer": "int32", "position": "uint32",
    "neuron": "uint32", "activation": "float32", "attribution": "float32", "polarity": "int8",
    "input_profile": "object", "output_profile": "object",
}
EDGE_COLS = {
    "prompt_id": "int64", "label": "object", "source_layer": "int32",
    "source_position": "uint32", "source_neuron": "uint32", "target_layer": "int32",
    "target_position": "uint32", "target_neuron": "uint32", "weight": "float32",
    "attribution": "float32",
}
PROMPT_COLS = {
    "prompt_id": "int64", "label": "object", "prompt": "object", "seed": "object",
    "token_ids": "object", "token_strings": "object", "answers": "object",
    "target_ids": "object", "target_strings": "object", "target_probs": "object",
    "target_logits": "object", "goal": "float32", "traced_position": "uint32",
}


def check_columns(name, df, expected):
    got = {c: str(t) for c, t in df.dtypes.items()}
    assert list(got) == list(expected), f"{name}: columns {list(got)} != {list(expected)}"
    for c, t in expected.items():
        # pandas shows strings and lists as object; pandas >= 3 may use a string dtype
        ok = got[c] == t or (t == "object" and got[c] in ("str", "string"))
        assert ok, f"{name}.{c}: dtype {got[c]}, expected {t}"


def main(d):
    d = Path(d)
    manifest = json.loads((d / "manifest.json").read_text())
    nodes = pd.read_parquet(d / "nodes.parquet")
    edges = pd.read_parquet(d / "edges.parquet")
    prompts = pd.read_parquet(d / "prompts.parquet")
    check_columns("nodes", nodes, NODE_COLS)
    check_columns("edges", edges, EDGE_COLS)
    check_columns("prompts", prompts, PROMPT_COLS)
    assert manifest["format"] == "adag-circuit", manifest["format"]
    assert manifest["n_prompts"] == len(prompts), (manifest["n_prompts"], len(prompts))
    assert manifest["n_nodes"] == len(nodes) and manifest["n_edges"] == len(edges)
    assert prompts.prompt_id.is_monotonic_increasing and prompts.prompt_id.is_unique
    assert set(nodes.prompt_id) <= set(prompts.prompt_id)
    assert set(edges.prompt_id) <= set(prompts.prompt_id)
    n_layers = None
    for p in prompts.itertuples():
        n_tok = len(p.token_ids)
        assert len(p.token_strings) == n_tok
        assert p.traced_position == n_tok - 1
        k = len(p.target_ids)
        assert len(p.target_strings) == k == len(p.target_probs) == len(p.target_logits)
        pn = nodes[nodes.prompt_id == p.prompt_id]
        assert (pn.position < n_tok).all(), f"prompt {p.prompt_id}: position out of range"
        neurons = pn[(pn.layer >= 0) & (pn.input_profile.map(len) > 0)]
        for r in neurons.itertuples():
            assert len(r.input_profile) == n_tok, (r.input_profile, n_tok)
            assert len(r.output_profile) == k
        logits = pn[pn.layer == pn.layer.max()]
        n_layers = int(pn.layer.max())
        assert (logits.position == p.traced_position).all()
        keys = set(zip(pn.layer, pn.position, pn.neuron))
        pe = edges[edges.prompt_id == p.prompt_id]
        for e in pe.itertuples():
            assert (e.source_layer, e.source_position, e.source_neuron) in keys, e
            assert (e.target_layer, e.target_position, e.target_neuron) in keys, e
    assert (nodes.polarity == np.sign(nodes.activation).astype("int8")).all()
    # the reference's clustering unit: (layer, position, neuron, polarity) per prompt
    units = nodes[(nodes.layer >= 0) & (nodes.layer < n_layers)].groupby(
        ["layer", "neuron", "polarity"]).size()
    print(
        f"ok: {d}: {len(prompts)} prompts, {len(nodes)} nodes, {len(edges)} edges, "
        f"{len(units)} (layer, neuron, polarity) units; pandas {pd.__version__}"
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
