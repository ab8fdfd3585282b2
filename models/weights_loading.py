"""Loading a checkpoint into a model: published weights through the hub's cache, or a file.

Checkpoints in the wild wrap the state dict. Training scripts save ``{'state_dict': ...,
'epoch': ..., 'best_prec1': ...}`` (or ``'model'`` / ``'model_state_dict'``), and models
trained under DataParallel prefix every key with ``module.`` (torch.compile: ``_orig_mod.``).
Both are unwrapped here; then the model loads strictly, so that a checkpoint made for
another architecture is refused with the keys that differ."""
import collections.abc
import os

import numpy as np

from .. import hub, io
from ..io import CheckpointError
from ..tensor import Tensor
from ._api import WeightsEnum

__all__ = ["load_weights", "unwrap_state_dict"]

CONTAINER_KEYS = ("state_dict", "model_state_dict", "model")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def load_weights(model, weights, progress=True):
    """Load `weights` into `model` and return it: a ``WeightsEnum`` member (fetched into the
    hub's cache, verified) or a path to any checkpoint ``pf.io.load`` reads."""
    if isinstance(weights, WeightsEnum):
        path = hub.cached_checkpoint(weights.url, weights.sha256_prefix, weights.file_name,
                                     progress)
    else:
        path = os.fspath(weights)
    state = unwrap_state_dict(io.load(path, map_location="cpu"), path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not fit {type(model).__name__}: {e}", path) from e
    return model


def _is_state_dict(obj):
    return isinstance(obj, collections.abc.Mapping) and all(
        isinstance(k, str) and isinstance(v, (Tensor, np.ndarray)) for k, v in obj.items())


def _describe(obj):
    if isinstance(obj, collections.abc.Mapping):
        keys = list(obj)
        shown = ", ".join(repr(k) for k in keys[:6]) + (", ..." if len(keys) > 6 else "")
        return f"a dict with keys {shown} and not only tensors in it"
    return f"a {type(obj).__name__}"


def unwrap_state_dict(obj, path):
    """The ``{parameter name: tensor}`` dict inside a loaded checkpoint `obj` (see the module
    doc); CheckpointError naming `path` if there is none."""
    while not _is_state_dict(obj) and isinstance(obj, collections.abc.Mapping):
        key = next((k for k in CONTAINER_KEYS if k in obj), None)
        if key is None:
            break
        obj = obj[key]
    if not _is_state_dict(obj):
        raise CheckpointError(
            f"{path}: not a state dict: it holds {_describe(obj)}; expected parameter names "
            f"mapping to tensors, or a dict holding them under one of "
            f"{', '.join(map(repr, CONTAINER_KEYS))}", path)
    for prefix in WRAPPER_PREFIXES:
        if obj and all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj
