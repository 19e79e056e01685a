"""Output heads: each owns its outputs, loss and decoding (see :class:`Head`).

``MODELS`` maps a model name of the CLI to the head that implements it and that head's
settings; every model shares the tower.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

from ptpm_tf.heads.base import Head
from ptpm_tf.heads.tree import TreeHead

#: model name -> (head class, keyword arguments that define the model)
MODELS: Dict[str, Tuple[Callable[..., Head], Dict[str, Any]]] = {
    "ptpm": (TreeHead, {"tsl": True, "ucl": True, "leaf_values": "mean"}),
    "tpm": (TreeHead, {"tsl": False, "ucl": False, "leaf_values": "midpoint"}),
}


def build_head(model: str, **overrides) -> Head:
    """The head of ``model`` with its defining settings, updated by ``overrides``."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(sorted(MODELS))}")
    cls, base = MODELS[model]
    return cls(**{**base, **overrides})


__all__ = ["Head", "TreeHead", "MODELS", "build_head"]
