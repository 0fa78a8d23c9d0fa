#!/usr/bin/env python3
"""Writes the viewer's fixture graphs in fixtures/graphs/, field by field in circuit-tracer's
frontend schema (circuit-tracer.md §4.1), with influence computed exactly as prune_graph does
(§3.3: influence over the row-normalised adjacency, then the rank-based cumulative score).

  austin-clt.json       transcoder features, old error ids `0_{l}_{p}`, 3 layers, 5 tokens
  capital-neurons.json  MLP neurons (feature_type "mlp neuron") with input/output profiles and
                        clusters saved as supernodes, as a neuron-basis circuit export writes
  graph-metadata.json   the list of both
  features/adag-demo-clt/{cantor}.json   per-feature detail files (§4.3 JSON fallback)

Run from the repository root: python3 crates/adag-serve/tools/make_fixture_graphs.py
"""
import json
import os

import numpy as np

OUT = "fixtures/graphs"


def cantor(l, f):
    return (l + f) * (l + f + 1) // 2 + f


def cumulative_influence(ids, edges, logit_probs):
    """prune_graph's node influence, then its cumulative score (lower = more important)."""
    n = len(ids)
    ix = {k: i for i, k in enumerate(ids)}
    a = np.zeros((n, n))
    for s, t, w in edges:
        a[ix[t], ix[s]] = w  # rows are targets
    norm = np.abs(a) / np.maximum(np.abs(a).sum(1, keepdims=True), 1e-10)
    w = np.zeros(n)
    for k, p in logit_probs.items():
        w[ix[k]] = p
    infl = np.zeros(n)
    term = w.copy()
    for _ in range(1000):
        term = term @ norm
        if not term.any():
            break
        infl += term
    order = np.argsort(-infl, kind="stable")
    cum = np.cumsum(infl[order]) / infl.sum()
    scores = np.zeros(n)
    scores[order] = cum
    return {k: float(round(scores[ix[k]], 6)) for k in ids}


def node(node_id, feature, layer, ctx, ftype, js, clerp="", influence=None, activation=None,
         token_prob=0.0, is_target=False, **extra):
    d = {
        "node_id": node_id,
        "feature": feature,
        "layer": layer,
        "ctx_idx": ctx,
        "feature_type": ftype,
        "token_prob": token_prob,
        "is_target_logit": is_target,
        "run_idx": 0,
        "reverse_ctx_idx": 0,
        "jsNodeId": js,
        "clerp": clerp,
        "influence": influence,
        "activation": activation,
    }
    d.update(extra)
    return d


def austin():
    n_layers = 3
    tokens = ["<|begin_of_text|>", "capital", " of", " Texas", " is"]
    tok_ids = [128000, 66163, 315, 8421, 374]
    P = len(tokens)
    logits = [(" Austin", 19816, 0.612), (" Dallas", 19051, 0.081), (" the", 279, 0.054)]
    feats = [  # (layer, feature, pos, activation, clerp)
        (0, 4010, 0, 12.5, "start of text"),
        (0, 112, 1, 4.1, "the word 'capital'"),
        (0, 2051, 3, 6.3, "Texas"),
        (0, 877, 3, 2.2, "US state names"),
        (0, 33, 4, 1.7, "'is' after a noun phrase"),
        (1, 3100, 1, 2.9, "seat of government"),
        (1, 771, 2, 1.4, "'of' in a relation"),
        (1, 530, 3, 5.0, "Texas (the entity)"),
        (1, 1204, 4, 3.3, "say a capital"),
        (1, 98, 4, 1.1, "a location comes next"),
        (2, 2990, 3, 1.9, "the southern United States"),
        (2, 845, 4, 7.2, "say Austin"),
        (2, 1502, 4, 2.6, "Texas cities"),
        (2, 66, 4, 2.0, "say a city name"),
        (2, 412, 4, 0.8, "suppress 'the'"),
    ]
    errors = [(0, 3), (1, 4), (2, 3), (2, 4)]  # (layer, pos); old scheme id 0_{l}_{p}
    fid = {(l, f, p): f"{l}_{f}_{p}" for l, f, p, _, _ in feats}
    emb = [f"E_{tok_ids[p]}_{p}" for p in range(P)]
    lid = {t: f"{n_layers + 1}_{v}_{P - 1}" for t, v, _ in logits}
    err = {(l, p): f"0_{l}_{p}" for l, p in errors}
    F = lambda l, f, p: fid[(l, f, p)]  # noqa: E731
    edges = [
        (emb[0], F(0, 4010, 0), 5.0),
        (emb[1], F(0, 112, 1), 3.1), (emb[1], F(1, 3100, 1), 0.9),
        (emb[2], F(1, 771, 2), 1.1),
        (emb[3], F(0, 2051, 3), 4.2), (emb[3], F(0, 877, 3), 1.5),
        (emb[4], F(0, 33, 4), 2.0),
        (F(0, 112, 1), F(1, 3100, 1), 1.4), (F(0, 112, 1), F(1, 1204, 4), 1.8),
        (F(0, 2051, 3), F(1, 530, 3), 2.6), (F(0, 2051, 3), F(2, 1502, 4), 0.7),
        (F(0, 877, 3), F(1, 530, 3), 0.8), (F(0, 877, 3), F(2, 2990, 3), 1.0),
        (F(0, 33, 4), F(1, 98, 4), 1.2), (F(0, 33, 4), F(1, 1204, 4), 0.6),
        (F(0, 4010, 0), F(1, 98, 4), -0.4),
        (err[(0, 3)], F(1, 530, 3), 0.5),
        (F(1, 530, 3), F(2, 1502, 4), 1.9), (F(1, 530, 3), F(2, 845, 4), 1.1),
        (F(1, 530, 3), F(2, 2990, 3), 0.6),
        (F(1, 1204, 4), F(2, 66, 4), 1.3), (F(1, 1204, 4), F(2, 845, 4), 1.6),
        (F(1, 1204, 4), F(2, 412, 4), 0.9),
        (F(1, 98, 4), F(2, 66, 4), 0.8),
        (F(1, 771, 2), F(2, 845, 4), 0.3),
        (F(1, 3100, 1), F(2, 66, 4), 0.5),
        (err[(1, 4)], F(2, 845, 4), 0.4), (err[(1, 4)], lid[" Austin"], 0.3),
        (F(2, 845, 4), lid[" Austin"], 3.4), (F(2, 845, 4), lid[" Dallas"], -0.6),
        (F(2, 1502, 4), lid[" Austin"], 1.2), (F(2, 1502, 4), lid[" Dallas"], 0.9),
        (F(2, 66, 4), lid[" Austin"], 0.7), (F(2, 66, 4), lid[" Dallas"], 0.5),
        (F(2, 66, 4), lid[" the"], -0.2),
        (F(2, 2990, 3), lid[" Dallas"], 0.3),
        (F(2, 412, 4), lid[" the"], -1.1),
        (err[(2, 4)], lid[" Austin"], 0.5), (err[(2, 4)], lid[" the"], 0.2),
        (err[(2, 3)], lid[" Dallas"], 0.2),
        (emb[3], lid[" Austin"], 0.4), (emb[4], lid[" the"], 0.6),
    ]
    ids = list(fid.values()) + list(err.values()) + emb + list(lid.values())
    infl = cumulative_influence(ids, edges, {lid[t]: p for t, _, p in logits})

    nodes = []
    for l, f, p, act, clerp in feats:
        nodes.append(node(F(l, f, p), cantor(l, f), str(l), p, "cross layer transcoder",
                          f"{l}_{f}-0", clerp, infl[F(l, f, p)], act))
    for (l, p), i in err.items():
        nodes.append(node(i, -1, str(l), p, "mlp reconstruction error", f"{l}_{p}-0",
                          "", infl[i], None))
    for p in range(P):
        nodes.append(node(emb[p], p, "E", p, "embedding", f"E_{tok_ids[p]}-{p}",
                          f'Emb: "{tokens[p]}"', infl[emb[p]], None))
    for k, (t, v, prob) in enumerate(logits):
        nodes.append(node(lid[t], v, str(n_layers + 1), P - 1, "logit", f"L_{v}-{P - 1}",
                          f'Output "{t}" (p={prob:.3f})', None, None, token_prob=prob,
                          is_target=(k == 0)))
    links = [{"source": s, "target": t, "weight": w} for s, t, w in edges]
    metadata = {
        "slug": "austin-clt",
        "scan": "adag-demo-clt",
        "transcoder_list": [],
        "prompt_tokens": tokens,
        "prompt": "<|begin_of_text|>capital of Texas is",
        "node_threshold": None,
        "schema_version": 1,
    }
    qparams = {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""}
    graph = {"metadata": metadata, "qParams": qparams, "nodes": nodes, "links": links}
    return graph, feats


def capital_neurons():
    n_layers = 3
    tokens = ["<|begin_of_text|>", "capital", " of", " France", " is"]
    tok_ids = [128000, 66163, 315, 9822, 374]
    P = len(tokens)
    targets = [(" Paris", 12366, 0.701), (" Lyon", 64125, 0.044), (" the", 279, 0.031)]
    neurons = [  # (layer, neuron, pos, activation, description, input_profile, output_profile)
        (0, 1187, 1, 0.91, "capital as a noun", [0, .92, .05, 0, .03], [.4, .3, .3]),
        (0, 402, 3, 1.32, "France / French", [0, 0, 0, 1.0, 0], [.6, .35, .05]),
        (0, 2733, 3, 0.44, "European country names", [0, .1, 0, .85, .05], [.5, .4, .1]),
        (1, 96, 3, 0.77, "France (entity)", [0, .05, .05, .9, 0], [.7, .25, .05]),
        (1, 3050, 4, 1.05, "asks for a capital city", [0, .7, .1, .1, .1], [.8, .1, .1]),
        (1, 610, 4, -0.38, "copula 'is'", [.1, 0, 0, 0, .9], [.2, .2, .6]),
        (2, 1441, 4, 2.21, "say Paris", [0, .35, .05, .55, .05], [1.0, -.1, -.05]),
        (2, 77, 4, 0.63, "French cities", [0, .1, 0, .85, .05], [.55, .45, 0]),
        (2, 2219, 4, -0.52, "suppress function words", [0, .1, .2, .1, .6], [.1, .0, -.9]),
        (2, 808, 2, 0.29, "relation 'of'", [0, .2, .8, 0, 0], [.3, .3, .4]),
    ]
    nid = {(l, n, p): f"{l}_{n}_{p}" for l, n, p, *_ in neurons}
    N = lambda l, n, p: nid[(l, n, p)]  # noqa: E731
    emb = [f"E_{tok_ids[p]}_{p}" for p in range(P)]
    lid = {t: f"{n_layers + 1}_{v}_{P - 1}" for t, v, _ in targets}
    edges = [
        (emb[1], N(0, 1187, 1), 0.9), (emb[3], N(0, 402, 3), 1.0), (emb[3], N(0, 2733, 3), 0.6),
        (emb[2], N(2, 808, 2), 0.4), (emb[4], N(1, 610, 4), 0.5),
        (N(0, 402, 3), N(1, 96, 3), 0.8), (N(0, 2733, 3), N(1, 96, 3), 0.3),
        (N(0, 1187, 1), N(1, 3050, 4), 0.7), (N(1, 610, 4), N(1, 3050, 4), 0.0),
        (N(1, 96, 3), N(2, 1441, 4), 0.9), (N(1, 96, 3), N(2, 77, 4), 0.5),
        (N(1, 3050, 4), N(2, 1441, 4), 0.8), (N(1, 3050, 4), N(2, 2219, 4), 0.2),
        (N(1, 610, 4), N(2, 2219, 4), 0.4), (N(2, 808, 2), N(2, 1441, 4), 0.0),
        (N(2, 1441, 4), lid[" Paris"], 1.0), (N(2, 1441, 4), lid[" Lyon"], -0.2),
        (N(2, 77, 4), lid[" Paris"], 0.4), (N(2, 77, 4), lid[" Lyon"], 0.5),
        (N(2, 2219, 4), lid[" the"], -0.7), (N(2, 808, 2), lid[" Paris"], 0.1),
    ]
    edges = [e for e in edges if e[2] != 0.0]
    ids = list(nid.values()) + emb + list(lid.values())
    infl = cumulative_influence(ids, edges, {lid[t]: p for t, _, p in targets})
    nodes = []
    for l, n, p, act, desc, inp, outp in neurons:
        nodes.append(node(N(l, n, p), cantor(l, n), str(l), p, "mlp neuron", f"{l}_{n}-0",
                          desc, infl[N(l, n, p)], act, input_profile=inp, output_profile=outp))
    for p in range(P):
        nodes.append(node(emb[p], p, "E", p, "embedding", f"E_{tok_ids[p]}-{p}",
                          f'Emb: "{tokens[p]}"', infl[emb[p]], None))
    for k, (t, v, prob) in enumerate(targets):
        nodes.append(node(lid[t], v, str(n_layers + 1), P - 1, "logit", f"L_{v}-{P - 1}",
                          f'Output "{t}" (p={prob:.3f})', None, None, token_prob=prob,
                          is_target=(k == 0)))
    links = [{"source": s, "target": t, "weight": w} for s, t, w in edges]
    clusters = [
        ["C1: France", N(0, 402, 3), N(0, 2733, 3), N(1, 96, 3)],
        ["C2: say capital", N(1, 3050, 4), N(2, 1441, 4)],
    ]
    pinned = [i for c in clusters for i in c[1:]] + [emb[3], emb[1], lid[" Paris"]]
    metadata = {
        "slug": "capital-neurons",
        "scan": "adag-demo-llama",
        "transcoder_list": [],
        "prompt_tokens": tokens,
        "prompt": "<|begin_of_text|>capital of France is",
        "node_threshold": None,
        "schema_version": 1,
        "target_logit_tokens": [t for t, _, _ in targets],
        # What `adag describe` writes for described clusters, keyed by cluster id (shown under the supernode "C1: ...").
        "supernode_descriptions": {
            "C1": "the token \" France\" and other country names | promotes their capitals",
        },
    }
    qparams = {"pinnedIds": pinned, "supernodes": clusters, "linkType": "both",
               "clickedId": "", "sg_pos": ""}
    return {"metadata": metadata, "qParams": qparams, "nodes": nodes, "links": links}


def feature_details(feats, scan):
    texts = {
        "start of text": ["<|begin_of_text|>", "The", " weather"],
        "Texas": [" in", " Texas", ",", " the", " Lone", " Star", " State"],
        "say Austin": [" the", " capital", " of", " Texas", " is", " Austin"],
    }
    rng = np.random.default_rng(0)
    out = {}
    for l, f, p, act, clerp in feats:
        toks = texts.get(clerp, [" a", " note", " on", f" {clerp.split()[-1]}", " here", "."])
        examples = []
        for q, scale in [("Top activations", 1.0), ("Subsample Interval 0", 0.4)]:
            ex = []
            for k in range(2):
                acts = [round(float(v), 3) for v in
                        rng.uniform(0, 0.3, len(toks)) * act * scale]
                acts[len(toks) - 1 - k] = round(act * scale * (1 - 0.1 * k), 3)
                ex.append({"tokens_acts_list": acts, "train_token_ind": len(toks) - 1 - k,
                           "is_repeated_datapoint": False, "tokens": toks})
            examples.append({"quantile_name": q, "examples": ex})
        out[cantor(l, f)] = {
            "transcoder_id": f"{scan}/layer_{l}",
            "index": f,
            "examples_quantiles": examples,
            "top_logits": [" Austin", " Houston", " Dallas", " Texas", " TX"][: 3 + l],
            "bottom_logits": [" the", " and", " of"],
            "act_min": 0.0,
            "act_max": act,
            "quantile_values": [act * 0.2, act * 0.5, act * 0.9],
            "histogram": [12, 7, 3, 1],
            "activation_frequency": 0.0012 * (l + 1),
        }
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    a, feats = austin()
    n = capital_neurons()
    for g in (a, n):
        with open(f"{OUT}/{g['metadata']['slug']}.json", "w") as fh:
            json.dump(g, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
    with open(f"{OUT}/graph-metadata.json", "w") as fh:
        json.dump({"graphs": [a["metadata"], n["metadata"]]}, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    scan = a["metadata"]["scan"]
    fdir = f"{OUT}/features/{scan}"
    os.makedirs(fdir, exist_ok=True)
    for idx, d in feature_details(feats, scan).items():
        with open(f"{fdir}/{idx}.json", "w") as fh:
            json.dump(d, fh, indent=1)
            fh.write("\n")


if __name__ == "__main__":
    main()
