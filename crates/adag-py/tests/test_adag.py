"""The adag wheel against the adag command line: same graphs bit for bit, same circuit tables,
errors as Python exceptions with adag's messages, Ctrl-C stops long calls.

The CLI is the binary cargo built (``$ADAG_BIN``, default ``target/debug/adag`` of this
repository); the demo bundle is the one in the installed wheel.
"""

import json
import os
import signal
import struct
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import adag

REPO = Path(__file__).resolve().parents[3]
PROMPT = "The capital of the state containing Dallas is"
TRACE_PROMPTS = ["The capital of Texas is", "36+59=", "The keys to the cabinet"]


def adag_cli(*args, check=True):
    exe = os.environ.get("ADAG_BIN", str(REPO / "target" / "debug" / "adag"))
    assert Path(exe).is_file(), f"{exe}: build the adag binary first (cargo build) or set ADAG_BIN"
    r = subprocess.run([exe, *map(str, args)], capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def tensor_section(data: bytes) -> bytes:
    """The raw tensor bytes of a safetensors file (everything after the JSON header)."""
    (n,) = struct.unpack("<Q", data[:8])
    return data[8 + n :]


@pytest.fixture(scope="module")
def demo_model():
    return adag.Model.load()


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, demo_model):
    """The same prompt attributed by the CLI and by Python, with the CLI's stdout."""
    d = tmp_path_factory.mktemp("graphs")
    model_dir, tc_dir = adag.demo_paths()
    r = adag_cli("attribute", "-p", PROMPT, "-m", model_dir, "-t", tc_dir, "--out", d / "cli.safetensors",
                 "--slug", "cli", "--graph-dir", d / "cli-frontend")
    py = adag.attribute(PROMPT, model=demo_model, progress=False)
    return py, adag.Graph.load(d / "cli.safetensors"), r.stdout, d


# ---- attribution -----------------------------------------------------------------------------


def test_numpy_graph_equals_cli_graph_file_bit_for_bit(graphs):
    py, cli, _, d = graphs
    raw = (d / "cli.safetensors").read_bytes()
    # Every tensor byte of the file, in the same layout.
    assert tensor_section(py.to_bytes()) == tensor_section(raw)
    for name in ["adjacency", "active_features", "activation_values", "selected_features",
                 "input_tokens", "logit_tokens", "logit_probabilities"]:
        a, b = getattr(py, name), getattr(cli, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name
    assert py.adjacency.dtype == np.float32 and py.adjacency.shape == (py.n_nodes, py.n_nodes)
    assert py.active_features.shape[1] == 3
    assert py.tokens == cli.tokens and py.logit_targets == cli.logit_targets


def test_prune_and_scores_agree_with_cli_summary(graphs):
    py, _, stdout, _ = graphs
    pruned = py.prune(0.8, 0.98)
    line = next(l for l in stdout.splitlines() if l.startswith("graph:"))
    kept = line.split("pruned to ")[1]
    n_nodes, n_edges = int(kept.split(" nodes")[0]), int(kept.split(", ")[1].split(" edges")[0])
    assert int(pruned.node_mask.sum()) == n_nodes
    assert int(pruned.edge_mask.sum()) == n_edges
    assert pruned.edge_mask.shape == py.adjacency.shape
    s = py.scores()
    assert f"scores: replacement {s['replacement']:.3f}, completeness {s['completeness']:.3f}" in stdout
    assert py.meta["scores"] == pytest.approx(s)


def test_save_load_round_trip(graphs, tmp_path):
    py = graphs[0]
    p = py.save(tmp_path / "sub" / "g.safetensors")
    assert p.read_bytes() == py.to_bytes()
    back = adag.Graph.load(p)
    assert back.adjacency.tobytes() == py.adjacency.tobytes()
    assert back.meta == py.meta


def test_frontend_json_equals_cli(graphs, tmp_path):
    py, _, _, d = graphs
    out = py.to_frontend(tmp_path, "cli")
    assert out == tmp_path / "cli.json"
    ours, theirs = json.loads(out.read_text()), json.loads((d / "cli-frontend" / "cli.json").read_text())
    assert ours["nodes"] == theirs["nodes"] and ours["links"] == theirs["links"]


def test_to_circuit_tracer_field_layout(graphs):
    py = graphs[0]
    ct = py.to_circuit_tracer(as_torch=False)
    assert set(ct) == {"input_string", "adjacency_matrix", "cfg", "active_features", "logit_targets",
                       "logit_probabilities", "vocab_size", "input_tokens", "selected_features",
                       "activation_values", "scan"}
    assert ct["input_string"] == PROMPT
    assert ct["adjacency_matrix"] is py.adjacency
    assert [t[1] if isinstance(t, tuple) else t.vocab_idx for t in ct["logit_targets"]] == list(py.logit_tokens)
    # circuit-tracer's node count: features, errors and tokens per layer and position, logits.
    n_pos, n_layers = len(py.input_tokens), ct["cfg"]["n_layers"]
    assert ct["adjacency_matrix"].shape[0] == len(ct["selected_features"]) + (n_layers + 1) * n_pos + len(ct["logit_targets"])


def test_explicit_targets(demo_model):
    g = adag.attribute(PROMPT, model=demo_model, targets=[" Austin"], max_feature_nodes=50, progress=False)
    assert g.logit_targets == [" Austin"] and g.n_features == 50


def test_progress_reports_every_row(demo_model):
    seen = []
    data = adag._adag.attribute(demo_model._native, str(adag.demo_paths()[1]), PROMPT, 10, 0.95, 20, 4,
                                None, lambda done, total: seen.append((done, total)))
    g = adag.Graph(data)
    rows = len(g.logit_tokens) + g.n_features
    assert seen[-1] == (rows, rows)
    assert all(a[0] < b[0] for a, b in zip(seen, seen[1:]))


# ---- the model -------------------------------------------------------------------------------


def test_model_run_matches_the_bundles_reference_logits(demo_model):
    ref = json.loads((adag.demo_paths()[0] / "reference_logits.json").read_text())
    for p in ref["prompts"]:
        r = demo_model.run(p["prompt"])
        assert r.tokens == p["ids"]
        assert r.logits.shape == (len(p["ids"]), demo_model.d_vocab)
        np.testing.assert_allclose(r.logits, np.array(p["logits"], dtype=np.float32), atol=1e-4, rtol=1e-4)


# ---- errors ----------------------------------------------------------------------------------


def _cache_repo(cache: Path, repo: str, files) -> Path:
    """One repository of an HF cache as huggingface_hub lays it out (refs/main, a snapshot)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    d = cache / ("models--" + repo.replace("/", "--"))
    snap = d / "snapshots" / commit
    snap.mkdir(parents=True)
    (d / "refs").mkdir()
    (d / "refs" / "main").write_text(commit)
    for name, data in files.items():
        (snap / name).write_bytes(data)
    return snap


def test_models_and_transcoders_by_hub_id_from_the_hf_cache(tmp_path, monkeypatch, graphs):
    model_dir, tc_dir = adag.demo_paths()
    model_snap = _cache_repo(tmp_path, "adag-test/demo-model", {
        f: (model_dir / f).read_bytes()
        for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"]
    })
    config = (tc_dir / "config.yaml").read_text().replace(
        "model_name: adag-demo", "model_name: adag-test/demo-model")
    # The default set is the CLT (W_enc_i / W_dec_i files); copy whatever weights it has.
    tc_files = {p.name: p.read_bytes() for p in tc_dir.glob("*.safetensors")}
    tc_files["config.yaml"] = config.encode()
    _cache_repo(tmp_path, "adag-test/demo-transcoders", tc_files)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    m = adag.Model.load("adag-test/demo-model")
    assert m.path == model_snap
    # The transcoders' config names the model by hub id: it is resolved as the CLI does.
    g = adag.attribute(PROMPT, transcoders="adag-test/demo-transcoders", progress=False)
    assert g.meta["model"] == str(model_snap)
    py = graphs[0]
    assert g.adjacency.tobytes() == py.adjacency.tobytes()
    assert g.active_features.tobytes() == py.active_features.tobytes()

    with pytest.raises(ValueError, match="adag-test/absent@main: `config.json` is not in the HF cache"):
        adag.Model.load("adag-test/absent")


def test_missing_model_is_file_not_found_naming_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        adag.Model.load(missing)


def test_multi_token_target_is_value_error(demo_model):
    with pytest.raises(ValueError, match="a target must be exactly one token"):
        adag.attribute(PROMPT, model=demo_model, targets=[" Austin Dallas"], progress=False)


def test_not_a_graph_file_is_value_error(tmp_path):
    p = tmp_path / "junk.safetensors"
    p.write_bytes(b"not a graph")
    with pytest.raises(ValueError, match="junk.safetensors: not a safetensors file"):
        adag.Graph.load(p)
    with pytest.raises(FileNotFoundError, match="absent.safetensors"):
        adag.Graph.load(tmp_path / "absent.safetensors")


def test_bad_thresholds_and_options_are_value_errors(graphs, tmp_path):
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        graphs[0].prune(node_threshold=1.5)
    with pytest.raises(ValueError, match="unknown field `no_such_option`"):
        adag.trace(None, ["a"], out=tmp_path / "c", no_such_option=1, progress=False)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        adag.attribute(PROMPT, batch_size=0, progress=False)


# ---- Ctrl-C ----------------------------------------------------------------------------------


def _sigint_after(seconds):
    t = threading.Timer(seconds, lambda: os.kill(os.getpid(), signal.SIGINT))
    t.start()
    return t


def test_keyboard_interrupt_stops_a_long_attribution(demo_model):
    # Every active feature of an eight-sentence prompt, one per backward pass: seconds of work
    # (about 4 s on two idle cores). The interrupt must stop it within a few batches, not at the end.
    long_prompt = " ".join([PROMPT] * 8)
    t = _sigint_after(0.3)
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            adag.attribute(long_prompt, model=demo_model, max_feature_nodes=None, batch_size=1,
                           progress=False)
    finally:
        # If the call returned before the timer fired, a late SIGINT would escape pytest itself.
        t.cancel()
    t.join()
    assert time.monotonic() - start < 2.0


def test_keyboard_interrupt_stops_a_long_trace(demo_model, tmp_path):
    t = _sigint_after(0.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            adag.trace(demo_model, [f"Prompt number {i} is" for i in range(2000)],
                       out=tmp_path / "c", progress=False)
    finally:
        t.cancel()
    t.join()
    assert not (tmp_path / "c" / "manifest.json").exists()


# ---- circuits --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def circuits(tmp_path_factory, demo_model):
    d = tmp_path_factory.mktemp("circuits")
    ds = d / "prompts.jsonl"
    ds.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in TRACE_PROMPTS))
    adag_cli("trace", "--dataset", ds, "--out", d / "cli", "-m", adag.demo_paths()[0], "--quiet")
    py = adag.trace(demo_model, TRACE_PROMPTS, out=d / "py", progress=False)
    return py, d / "cli"


@pytest.mark.parametrize("table", ["nodes", "edges", "prompts"])
def test_circuit_tables_equal_the_cli_parquet_files(circuits, table):
    py, cli_dir = circuits
    ours = getattr(py, table)
    theirs = pq.read_table(cli_dir / f"{table}.parquet").to_pandas()
    assert isinstance(ours, pd.DataFrame) and len(ours) > 0
    pd.testing.assert_frame_equal(ours, theirs)
    assert ours.equals(pq.read_table(py.path / f"{table}.parquet").to_pandas())


def test_cluster_then_steer(circuits):
    c = circuits[0]
    state = c.cluster(k=2)
    assert len(state["clusters"]) == 2
    first = state["clusters"][0]["id"]
    r = c.steer(cluster=first, scales=[1.0, 0.0])
    assert list(r.summary["scale"]) == [1.0, 0.0]
    # Scaling by 1 is no intervention: the output distribution does not move.
    assert r.summary["mean_kl"].iloc[0] == pytest.approx(0.0, abs=1e-6)
    assert len(r.runs) == 2
    with pytest.raises(ValueError, match="give exactly one of"):
        c.steer()


def test_feature_circuits_equal_the_cli_and_steer(tmp_path, demo_model):
    # The transcoder basis through trace, cluster and steer: the same tables as `adag trace
    # --transcoders`, feature units, and ×1 steering is the identity.
    ds = tmp_path / "prompts.jsonl"
    ds.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in TRACE_PROMPTS))
    model_dir, tc_dir = adag.demo_paths()
    adag_cli("trace", "--dataset", ds, "--out", tmp_path / "cli", "-m", model_dir,
             "--transcoders", tc_dir, "--quiet")
    py = adag.trace(demo_model, TRACE_PROMPTS, out=tmp_path / "py", progress=False,
                    transcoders=tc_dir)
    for table in ["nodes", "edges", "prompts"]:
        theirs = pq.read_table(tmp_path / "cli" / f"{table}.parquet").to_pandas()
        pd.testing.assert_frame_equal(getattr(py, table), theirs)
    assert py.manifest["config"]["basis"] == "transcoder"
    state = py.cluster(k=2)
    r = py.steer(cluster=state["clusters"][0]["id"], scales=[1.0])
    assert r.summary["mean_kl"].iloc[0] == pytest.approx(0.0, abs=1e-6)


# ---- the viewer ------------------------------------------------------------------------------


def test_serve_returns_a_url_that_serves_the_graph(graphs, tmp_path):
    graphs[0].to_frontend(tmp_path, "demo")
    url = adag.serve(tmp_path, slug="demo")
    try:
        assert url.startswith("http://127.0.0.1:") and "slug=demo" in url
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200
        base = url.split("?")[0].rstrip("/")
        with urllib.request.urlopen(base + "/data/graph-metadata.json", timeout=10) as r:
            assert "demo" in r.read().decode()
    finally:
        adag.stop_servers()


# ---- packaging -------------------------------------------------------------------------------


def test_the_wheel_carries_the_demo_bundle():
    model_dir, tc_dir = adag.demo_paths()
    pkg = Path(adag.__file__).resolve().parent
    assert model_dir == pkg / "models" / "demo"
    assert (model_dir / "model.safetensors").is_file() and (tc_dir / "config.yaml").is_file()


def test_the_example_notebook_runs_end_to_end(tmp_path, monkeypatch):
    """examples/demo.ipynb, cell by cell in one namespace (as a kernel runs it), in a scratch
    directory: attribute → prune → view, trace → cluster → steer."""
    nb = json.loads((REPO / "examples" / "demo.ipynb").read_text())
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    try:
        for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
            src = "".join(cell["source"])
            exec(compile(src, f"demo.ipynb[{i}]", "exec"), ns)
    finally:
        adag.stop_servers()
    assert ns["graph"].logit_targets[0] == " Austin"
    assert (tmp_path / "graphs" / "dallas.json").is_file()
    assert len(ns["circuit"].prompts) == 4
    assert list(ns["steered"].summary["scale"]) == [0.0, 2.0]
