"""adag: circuit tracing for transformer language models, from Python.

Three entry points mirror circuit-tracer's names:

* :func:`attribute` — an attribution graph over transcoder features for one prompt, as a
  :class:`Graph` of numpy arrays (the tensors of adag's graph file);
* :func:`trace` — neuron circuits over many prompts, as a :class:`Circuit` of pandas tables
  (the Parquet files ``adag trace`` writes), with :meth:`Circuit.cluster` and
  :meth:`Circuit.steer`;
* :func:`serve` — the graph viewer in the browser, on a background thread.

With no model or transcoders given, everything runs on the demo bundle that ships in the wheel,
exactly as the ``adag`` command does. Compute runs in Rust with the GIL released; Ctrl-C
interrupts between batches; errors are ``ValueError`` / ``FileNotFoundError`` carrying adag's
messages.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Union

import numpy as np

from . import _adag

__version__ = _adag.__version__
__all__ = [
    "Graph",
    "PruneResult",
    "Model",
    "RunResult",
    "Circuit",
    "SteerResult",
    "attribute",
    "trace",
    "serve",
    "stop_servers",
    "demo_paths",
]

PathLike = Union[str, "os.PathLike[str]"]

# ---- the demo bundle --------------------------------------------------------------------------


def demo_paths() -> "tuple[Path, Path]":
    """The demo model and transcoder directories: the copy in the wheel, else where the ``adag``
    command finds them (``$ADAG_DEMO_MODEL``, the repository)."""
    here = Path(__file__).resolve().parent / "models" / "demo"
    if (here / "config.json").is_file() and (here / "transcoders" / "config.yaml").is_file():
        return here, here / "transcoders"
    model, tc = _adag.default_paths()
    return Path(model), Path(tc)


def _resolve_transcoders(transcoders: Optional[PathLike]) -> "tuple[Path, Path]":
    """The transcoder set and its default model, as the CLI resolves them: a directory, a
    config.yaml, a preset name or a hub reference (fetched into the HF cache); the model is the
    one the config's ``model_name`` names (a local directory or a hub id), else the demo model."""
    arg = str(demo_paths()[1]) if transcoders is None else os.fspath(transcoders)
    tc, named = _adag.resolve_transcoders(arg)
    return Path(tc), Path(named) if named is not None else demo_paths()[0]


# ---- progress bars ----------------------------------------------------------------------------


class _Progress:
    """A tqdm bar when tqdm is importable (``tqdm.auto``: a widget in notebooks), else silent.
    Called by the engine between batches as ``progress(done, total)``."""

    def __init__(self, desc: str, enabled: bool, unit: str) -> None:
        self.bar = None
        self.desc, self.unit = desc, unit
        if enabled:
            try:
                from tqdm.auto import tqdm  # type: ignore

                self._tqdm = tqdm
            except ImportError:
                self._tqdm = None
        else:
            self._tqdm = None

    def __call__(self, done: int, total: int) -> None:
        if self._tqdm is None:
            return
        if self.bar is None:
            self.bar = self._tqdm(total=total, desc=self.desc, unit=self.unit, leave=False)
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---- graph files ------------------------------------------------------------------------------

_DTYPES = {"F32": "<f4", "I64": "<i8", "F64": "<f8", "I32": "<i4", "U8": "u1", "BOOL": "?"}


def _read_safetensors(data: bytes) -> "tuple[Dict[str, np.ndarray], Dict[str, str]]":
    """Tensors (numpy views of ``data``) and metadata of a safetensors file."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, t in header.items():
        start, end = t["data_offsets"]
        dt = np.dtype(_DTYPES[t["dtype"]])
        arr = np.frombuffer(data, dtype=dt, count=(end - start) // dt.itemsize, offset=base + start)
        out[name] = arr.reshape(t["shape"])
    return out, meta


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class PruneResult(NamedTuple):
    """What survives pruning (circuit-tracer's ``prune_graph``)."""

    node_mask: np.ndarray
    """``[n_nodes]`` bool: kept nodes."""
    edge_mask: np.ndarray
    """``[n_nodes, n_nodes]`` bool: kept edges (rows are targets)."""
    cumulative_scores: np.ndarray
    """``[n_nodes]`` f32: rank-based cumulative share of influence."""


class Graph:
    """A dense attribution graph: the tensors of adag's graph file as read-only numpy arrays.

    Node order (rows and columns of ``adjacency``; rows are targets):
    selected features, errors (``layer * n_pos + pos``), tokens (``pos``), logits.
    """

    adjacency: np.ndarray
    active_features: np.ndarray
    activation_values: np.ndarray
    selected_features: np.ndarray
    input_tokens: np.ndarray
    logit_tokens: np.ndarray
    logit_probabilities: np.ndarray
    meta: Dict[str, Any]

    def __init__(self, data: bytes, name: str = "graph") -> None:
        """Parses graph-file bytes (checked by adag first; ``name`` names them in errors)."""
        _adag.graph_validate(data, name)
        self._data = bytes(data)
        tensors, meta = _read_safetensors(self._data)
        self.adjacency = tensors["adjacency"]
        self.active_features = tensors["active_features"]
        self.activation_values = tensors["activation_values"]
        self.selected_features = tensors["selected_features"]
        self.input_tokens = tensors["input_tokens"]
        self.logit_tokens = tensors["logit_tokens"]
        self.logit_probabilities = tensors["logit_probabilities"]
        self.meta = json.loads(meta["meta"])

    # -- descriptive properties
    @property
    def prompt(self) -> str:
        """The prompt as given."""
        return self.meta["prompt"]

    @property
    def tokens(self) -> List[str]:
        """Each input token decoded on its own."""
        return list(self.meta["token_strings"])

    @property
    def logit_targets(self) -> List[str]:
        """The target tokens' strings (in ``logit_tokens`` order)."""
        return [t["token"] for t in self.meta["logit_targets"]]

    @property
    def n_nodes(self) -> int:
        return int(self.adjacency.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.selected_features.shape[0])

    def __repr__(self) -> str:
        return (
            f"Graph({self.prompt!r}, {self.n_features} features, {self.n_nodes} nodes, "
            f"targets {self.logit_targets})"
        )

    # -- operations
    def to_bytes(self) -> bytes:
        """The graph file's bytes."""
        return self._data

    def prune(self, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> PruneResult:
        """Keeps the nodes and edges that carry these shares of cumulative influence."""
        nodes, edges, scores = _adag.graph_prune(self._data, node_threshold, edge_threshold)
        n = self.n_nodes
        return PruneResult(
            np.frombuffer(nodes, dtype=np.uint8).astype(bool),
            np.frombuffer(edges, dtype=np.uint8).astype(bool).reshape(n, n),
            np.frombuffer(scores, dtype="<f4"),
        )

    def scores(self) -> Dict[str, float]:
        """Replacement and completeness scores (circuit-tracer's definitions)."""
        r, c = _adag.graph_scores(self._data)
        return {"replacement": r, "completeness": c}

    def save(self, path: PathLike) -> Path:
        """Writes the graph file (atomically); readable by ``adag`` and ``Graph.load``."""
        p = Path(path)
        _write_atomic(p, self._data)
        return p

    @classmethod
    def load(cls, path: PathLike) -> "Graph":
        """Reads a graph file written by ``adag attribute --out`` or :meth:`save`."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{p}: no such graph file") from None
        return cls(data, str(p))

    def to_frontend(
        self,
        dir: PathLike,
        slug: Optional[str] = None,
        node_threshold: float = 0.8,
        edge_threshold: float = 0.98,
    ) -> Path:
        """Writes ``{dir}/{slug}.json`` and ``graph-metadata.json`` for :func:`serve` (the
        pruned graph in circuit-tracer's frontend schema); returns the JSON's path."""
        slug = slug or _slug_from(self.prompt)
        out = _adag.graph_to_frontend(self._data, str(dir), slug, node_threshold, edge_threshold)
        return Path(out)

    def to_circuit_tracer(self, as_torch: bool = True) -> Dict[str, Any]:
        """The fields of circuit-tracer's ``Graph`` / ``.pt`` file: ``input_string``,
        ``adjacency_matrix``, ``cfg``, ``active_features``, ``logit_targets``,
        ``logit_probabilities``, ``vocab_size``, ``input_tokens``, ``selected_features``,
        ``activation_values``, ``scan``. Arrays become torch tensors (torch is imported only
        here) unless ``as_torch=False``; ``logit_targets`` are circuit-tracer ``LogitTarget``
        objects when circuit_tracer is importable, else ``(token_str, vocab_idx)`` tuples.
        ``torch.save(graph.to_circuit_tracer(), "g.pt")`` gives a file ``Graph.from_pt`` reads.
        """
        arrays = {
            "adjacency_matrix": self.adjacency,
            "active_features": self.active_features,
            "logit_probabilities": self.logit_probabilities,
            "input_tokens": self.input_tokens,
            "selected_features": self.selected_features,
            "activation_values": self.activation_values,
        }
        if as_torch:
            import torch  # lazily: the package itself needs no torch

            arrays = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
        try:
            from circuit_tracer.attribution.targets import LogitTarget  # type: ignore
        except ImportError:
            LogitTarget = None  # noqa: N806
        targets = [
            LogitTarget(t["token"], t["vocab_idx"]) if LogitTarget else (t["token"], t["vocab_idx"])
            for t in self.meta["logit_targets"]
        ]
        return {
            "input_string": self.prompt,
            "cfg": {
                "n_layers": self.meta["n_layers"],
                "d_vocab": self.meta["d_vocab"],
                "model_name": self.meta["model"],
            },
            "logit_targets": targets,
            "vocab_size": self.meta["d_vocab"],
            "scan": self.meta.get("scan"),
            **arrays,
        }


def _slug_from(prompt: str) -> str:
    """The CLI's slug rule: lower-case words joined by ``-``, at most 48 characters."""
    words, slug = [], ""
    cur = ""
    for ch in prompt:
        if ch.isalnum():
            cur += ch
        elif cur:
            words.append(cur.lower())
            cur = ""
    if cur:
        words.append(cur.lower())
    for w in words:
        if len(slug) + len(w) + 1 > 48:
            break
        slug = f"{slug}-{w}" if slug else w
    return slug or "graph"


# ---- models -----------------------------------------------------------------------------------


class RunResult(NamedTuple):
    """A forward pass: logits for every position and the tokens as the model saw them."""

    logits: np.ndarray
    """``[n_pos, d_vocab]`` float32."""
    tokens: List[int]
    token_strings: List[str]


class Model:
    """A transformer loaded from a HuggingFace-style directory, on the CPU."""

    def __init__(self, native: Any) -> None:
        self._native = native

    @classmethod
    def load(cls, path: Optional[PathLike] = None, dtype: str = "f32") -> "Model":
        """Loads ``path`` (default: the demo model) with weights in ``dtype``
        (``"f32"``, ``"bf16"``, ``"f16"``). ``path`` is a model directory or a hub id
        (``org/name[@revision]``, ``hf://…``), fetched into the HF cache (``HF_HOME``,
        ``HF_TOKEN``, ``HF_HUB_OFFLINE`` as for transformers)."""
        p = demo_paths()[0] if path is None else Path(_adag.resolve_model(os.fspath(path)))
        return cls(_adag.Model.load(str(p), dtype))

    @property
    def path(self) -> Path:
        return Path(self._native.path)

    @property
    def n_layers(self) -> int:
        return self._native.n_layers

    @property
    def d_vocab(self) -> int:
        return self._native.d_vocab

    def run(self, prompt: str, chat: bool = False) -> RunResult:
        """Runs the model on ``prompt`` (tokenised as ``adag run``; ``chat`` wraps it in the
        chat template)."""
        data, d_vocab, ids, strings = self._native.run(prompt, chat)
        logits = np.frombuffer(data, dtype="<f4").reshape(-1, d_vocab)
        return RunResult(logits, list(ids), list(strings))

    def __repr__(self) -> str:
        return repr(self._native)


def _as_model(model: Union[None, PathLike, Model], default: Callable[[], Path]) -> Model:
    if isinstance(model, Model):
        return model
    return Model.load(default() if model is None else model)


# ---- attribution ------------------------------------------------------------------------------


def attribute(
    prompt: str,
    model: Union[None, PathLike, Model] = None,
    transcoders: Optional[PathLike] = None,
    max_n_logits: int = 10,
    desired_logit_prob: float = 0.95,
    max_feature_nodes: Optional[int] = 7500,
    batch_size: int = 256,
    targets: Optional[Sequence[str]] = None,
    progress: bool = True,
) -> Graph:
    """Attribution graph of ``prompt`` over transcoder features, as ``adag attribute``.

    Defaults are the CLI's: the demo transcoders, and the model their config names (else the
    demo model). ``targets`` explains these tokens' logits (each one token) instead of the most
    likely ones. ``max_feature_nodes=None`` visits every active feature.
    """
    tc, default_model = _resolve_transcoders(transcoders)
    m = _as_model(model, lambda: default_model)
    bar = _Progress("attribution", progress, "rows")
    try:
        data = _adag.attribute(
            m._native,
            str(tc),
            prompt,
            max_n_logits,
            desired_logit_prob,
            max_feature_nodes,
            batch_size,
            list(targets) if targets else None,
            bar,
        )
    finally:
        bar.close()
    return Graph(data)


# ---- circuits ---------------------------------------------------------------------------------


class SteerResult(NamedTuple):
    """Steering results: one summary row per scale, and every prompt's details."""

    summary: Any
    """pandas DataFrame: target, scale, n_prompts, mean_kl, ... (as ``adag steer``'s table)."""
    runs: List[Dict[str, Any]]


class Circuit:
    """A circuit directory written by :func:`trace` or ``adag trace``: ``nodes``, ``edges``
    and ``prompts`` are its Parquet tables as pandas DataFrames (read with pyarrow)."""

    def __init__(self, path: PathLike, model: Optional[Model] = None) -> None:
        self.path = Path(path)
        manifest = self.path / "manifest.json"
        if not manifest.is_file():
            raise FileNotFoundError(f"{self.path}: no manifest.json (not a finished circuit)")
        self.manifest: Dict[str, Any] = json.loads(manifest.read_text())
        self._model = model
        self._tables: Dict[str, Any] = {}

    def _table(self, name: str) -> Any:
        if name not in self._tables:
            import pandas as pd

            self._tables[name] = pd.read_parquet(self.path / f"{name}.parquet", engine="pyarrow")
        return self._tables[name]

    @property
    def nodes(self) -> Any:
        """One row per (prompt, node)."""
        return self._table("nodes")

    @property
    def edges(self) -> Any:
        """One row per (prompt, edge)."""
        return self._table("edges")

    @property
    def prompts(self) -> Any:
        """One row per prompt."""
        return self._table("prompts")

    def model(self) -> Model:
        """The model the circuit was traced with (loaded on first use)."""
        if self._model is None:
            self._model = Model.load(self.manifest["model"])
        return self._model

    def cluster(
        self,
        k: int = 20,
        combine: str = "harmonic",
        weight_by_attribution: bool = False,
        seed: int = 42,
        n_init: int = 10,
    ) -> Dict[str, Any]:
        """Spectral clustering of the circuit's units, as ``adag cluster``; writes
        ``clusters.json`` in the circuit and returns its content."""
        out = _adag.cluster(str(self.path), k, combine, weight_by_attribution, seed, n_init)
        return json.loads(Path(out).read_text())

    def steer(
        self,
        cluster: Optional[str] = None,
        neuron: Optional[str] = None,
        scales: Iterable[float] = (0.0, 2.0),
        all_positions: bool = False,
        prompts: Optional[Sequence[int]] = None,
        generate: int = 0,
    ) -> SteerResult:
        """Scales a cluster's neurons (or one neuron ``"LAYER:NEURON"``) by each factor and
        reports the effect on the outputs, as ``adag steer`` (run :meth:`cluster` first)."""
        if (cluster is None) == (neuron is None):
            raise ValueError("give exactly one of cluster= or neuron=")
        target = neuron if neuron is not None else str(cluster)
        out = _adag.steer(
            self.model()._native,
            str(self.path),
            target,
            neuron is not None,
            [float(s) for s in scales],
            all_positions,
            list(prompts) if prompts else None,
            generate,
        )
        result = json.loads(out)
        import pandas as pd

        summary = pd.DataFrame(result["summary"])
        first = [c for c in ("target", "scale", "n_prompts") if c in summary.columns]
        summary = summary[first + [c for c in summary.columns if c not in first]]
        return SteerResult(summary, result["runs"])

    def __repr__(self) -> str:
        m = self.manifest
        return f"Circuit({str(self.path)!r}, {m.get('n_prompts')} prompts, {m.get('n_nodes')} nodes)"


def trace(
    model: Union[None, PathLike, Model],
    prompts: Union[PathLike, Sequence[str]],
    out: Optional[PathLike] = None,
    overwrite: bool = False,
    progress: bool = True,
    backward_batch: int = 128,
    transcoders: Optional[PathLike] = None,
    **options: Any,
) -> Circuit:
    """Circuits of a dataset, as ``adag trace``: of MLP neurons, or of transcoder features
    with ``transcoders`` (a transcoder directory or its config.yaml; ``adag trace
    --transcoders``).

    ``model`` is a :class:`Model`, a model directory, or None for the demo model. ``prompts`` is a dataset file (.jsonl, .csv, .yaml) or a list of prompt strings. ``out`` is
    the circuit directory (default: a new temporary directory). ``options`` are ``adag trace``'s
    run-config keys (``k``, ``percentage_threshold``, ``edge_threshold``, ``batch_size``,
    ``rule``, ``use_chat_format``, ``true_answers``, ...), checked as in a config file.
    """
    m = _as_model(model, lambda: demo_paths()[0])
    out_dir = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="adag-circuit-"))
    tmp = None
    if isinstance(prompts, (str, os.PathLike)):
        dataset = Path(prompts)
    else:
        items = list(prompts)
        if not all(isinstance(p, str) for p in items):
            raise ValueError("prompts: expected a dataset path or a list of strings")
        fd, tmp = tempfile.mkstemp(suffix=".jsonl", prefix="adag-prompts-")
        with os.fdopen(fd, "w") as f:
            for p in items:
                f.write(json.dumps({"prompt": p}) + "\n")
        dataset = Path(tmp)
    config = dict(options)
    config.update(dataset=str(dataset), output_path=str(out_dir), model=str(m.path))
    config.setdefault("dtype", m._native.dtype)
    bar = _Progress("trace", progress, "prompts")
    try:
        _adag.trace(
            m._native,
            json.dumps(config),
            overwrite,
            backward_batch,
            bar,
            None if transcoders is None else str(_resolve_transcoders(transcoders)[0]),
        )
    finally:
        bar.close()
        if tmp is not None:
            os.unlink(tmp)
    return Circuit(out_dir, m)


# ---- the viewer -------------------------------------------------------------------------------

_servers: List[Any] = []


def serve(
    dir: PathLike = ".",
    port: int = 0,
    host: str = "127.0.0.1",
    slug: Optional[str] = None,
) -> str:
    """Starts the graph viewer for the frontend files in ``dir`` on a background thread and
    returns its URL (``port=0``: any free port). It serves until :func:`stop_servers` or the
    end of the process."""
    s = _adag.Server(str(dir), port, host, slug)
    _servers.append(s)
    return s.url


def stop_servers() -> None:
    """Stops every viewer :func:`serve` started."""
    while _servers:
        _servers.pop().shutdown()
