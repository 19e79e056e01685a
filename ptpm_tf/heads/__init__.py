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


#: named sets of head settings laid over ``MODELS``' defining settings, per model.
#: ``paper``: the paper's definitions (a tree over seconds, decoded by its mean, Eq. 2), so
#: tables compare with the paper. ``best``: what won on the validation split in
#: BENCHMARKS.md (a tree over watch time / duration, decoded by its median); the default.
PRESETS: Dict[str, Dict[str, Dict[str, Any]]] = {
    "paper": {},
    "best": {"ptpm": {"label_space": "ratio", "decode": "median"},
             "tpm": {"label_space": "ratio", "decode": "median"}},
}
DEFAULT_PRESET = "best"


def head_settings(model: str, preset: str = DEFAULT_PRESET, **overrides) -> Dict[str, Any]:
    """The settings ``model``'s head is built with: its defining settings, the preset's,
    then ``overrides``."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(sorted(MODELS))}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return {**MODELS[model][1], **PRESETS[preset].get(model, {}), **overrides}


def build_head(model: str, preset: str = DEFAULT_PRESET, **overrides) -> Head:
    """The head of ``model`` with :func:`head_settings`."""
    settings = head_settings(model, preset, **overrides)
    try:
        return MODELS[model][0](**settings)
    except TypeError as err:  # a setting of another model (e.g. --no-tsl on mse)
        raise ValueError(f"model {model!r} does not take these settings: {err}") from None


__all__ = ["Head", "TreeHead", "RegressionHead", "WLRHead", "D2QHead", "DMLHead",
           "OrdinalHead", "CreadHead", "MODELS", "PRESETS", "DEFAULT_PRESET",
           "head_settings", "build_head"]
