"""Type stubs of the adag package (see __init__.py and docs/python.md)."""

import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

PathLike = Union[str, os.PathLike[str]]

__version__: str

def demo_paths() -> Tuple[Path, Path]: ...

class PruneResult(NamedTuple):
    node_mask: npt.NDArray[np.bool_]
    edge_mask: npt.NDArray[np.bool_]
    cumulative_scores: npt.NDArray[np.float32]

class Graph:
    adjacency: npt.NDArray[np.float32]
    active_features: npt.NDArray[np.int64]
    activation_values: npt.NDArray[np.float32]
    selected_features: npt.NDArray[np.int64]
    input_tokens: npt.NDArray[np.int64]
    logit_tokens: npt.NDArray[np.int64]
    logit_probabilities: npt.NDArray[np.float32]
    meta: Dict[str, Any]
    def __init__(self, data: bytes, name: str = ...) -> None: ...
    @property
    def prompt(self) -> str: ...
    @property
    def tokens(self) -> List[str]: ...
    @property
    def logit_targets(self) -> List[str]: ...
    @property
    def n_nodes(self) -> int: ...
    @property
    def n_features(self) -> int: ...
    def to_bytes(self) -> bytes: ...
    def prune(self, node_threshold: float = ..., edge_threshold: float = ...) -> PruneResult: ...
    def scores(self) -> Dict[str, float]: ...
    def save(self, path: PathLike) -> Path: ...
    @classmethod
    def load(cls, path: PathLike) -> Graph: ...
    def to_frontend(
        self,
        dir: PathLike,
        slug: Optional[str] = ...,
        node_threshold: float = ...,
        edge_threshold: float = ...,
    ) -> Path: ...
    def to_circuit_tracer(self, as_torch: bool = ...) -> Dict[str, Any]: ...

class RunResult(NamedTuple):
    logits: npt.NDArray[np.float32]
    tokens: List[int]
    token_strings: List[str]

class Model:
    @classmethod
    def load(cls, path: Optional[PathLike] = ..., dtype: str = ...) -> Model: ...
    @property
    def path(self) -> Path: ...
    @property
    def n_layers(self) -> int: ...
    @property
    def d_vocab(self) -> int: ...
    def run(self, prompt: str, chat: bool = ...) -> RunResult: ...

def attribute(
    prompt: str,
    model: Union[None, PathLike, Model] = ...,
    transcoders: Optional[PathLike] = ...,
    max_n_logits: int = ...,
    desired_logit_prob: float = ...,
    max_feature_nodes: Optional[int] = ...,
    batch_size: int = ...,
    targets: Optional[Sequence[str]] = ...,
    progress: bool = ...,
) -> Graph: ...

class SteerResult(NamedTuple):
    summary: Any  # pandas.DataFrame
    runs: List[Dict[str, Any]]

class Circuit:
    path: Path
    manifest: Dict[str, Any]
    def __init__(self, path: PathLike, model: Optional[Model] = ...) -> None: ...
    @property
    def nodes(self) -> Any: ...  # pandas.DataFrame
    @property
    def edges(self) -> Any: ...  # pandas.DataFrame
    @property
    def prompts(self) -> Any: ...  # pandas.DataFrame
    def model(self) -> Model: ...
    def cluster(
        self,
        k: int = ...,
        combine: str = ...,
        weight_by_attribution: bool = ...,
        seed: int = ...,
        n_init: int = ...,
    ) -> Dict[str, Any]: ...
    def steer(
        self,
        cluster: Optional[str] = ...,
        neuron: Optional[str] = ...,
        scales: Iterable[float] = ...,
        all_positions: bool = ...,
        prompts: Optional[Sequence[int]] = ...,
        generate: int = ...,
    ) -> SteerResult: ...

def trace(
    model: Union[None, PathLike, Model],
    prompts: Union[PathLike, Sequence[str]],
    out: Optional[PathLike] = ...,
    overwrite: bool = ...,
    progress: bool = ...,
    backward_batch: int = ...,
    transcoders: Optional[PathLike] = ...,
    **options: Any,
) -> Circuit: ...
def serve(
    dir: PathLike = ..., port: int = ..., host: str = ..., slug: Optional[str] = ...
) -> str: ...
def stop_servers() -> None: ...
