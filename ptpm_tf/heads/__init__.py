"""Output heads: each owns its outputs, loss and decoding (see :class:`Head`).

``MODELS`` maps a model name of the CLI to the head that implements it and that head's
settings; every model shares the tower.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

from ptpm_tf.heads.base import Head
from ptpm_tf.heads.ordinal import CreadHead, OrdinalHead
from ptpm_tf.heads.quantile import D2QHead, DMLHead
from ptpm_tf.heads.regression import RegressionHead
from ptpm_tf.heads.tree import TreeHead
from ptpm_tf.heads.wlr import WLRHead

#: model name -> (head class, keyword arguments that define the model)
MODELS: Dict[str, Tuple[Callable[..., Head], Dict[str, Any]]] = {
    "ptpm": (TreeHead, {"tsl": True, "ucl": True, "leaf_values": "mean"}),
    "tpm": (TreeHead, {"tsl": False, "ucl": False, "leaf_values": "midpoint"}),
    # baselines of paper section 5.1.2 (DESIGN.md section 3), same tower, own head
    "mse": (RegressionHead, {}),
    "wlr": (WLRHead, {}),
    "d2q": (D2QHead, {}),
    "dml": (DMLHead, {}),
    "or": (OrdinalHead, {"a": 0.0, "w_restore": 0.0, "w_ordinal": 0.0}),
    "cread": (CreadHead, {}),
}


def build_head(model: str, **overrides) -> Head:
    """The head of ``model`` with its defining settings, updated by ``overrides``."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(sorted(MODELS))}")
    cls, base = MODELS[model]
    return cls(**{**base, **overrides})


__all__ = ["Head", "TreeHead", "RegressionHead", "WLRHead", "D2QHead", "DMLHead",
           "OrdinalHead", "CreadHead", "MODELS", "build_head"]
