"""Output heads: each owns its outputs, loss and decoding (see :class:`~ptpm_tf.heads.base.Head`).

``MODELS`` maps a model name of the CLI to the head that implements it, that head
family's settings (a frozen dataclass holding the defaults) and the settings that define
the model within the family; every model shares the tower. A head's settings resolve in
this order: the family's defaults, the model's defining settings, the preset's
(``ptpm_tf.config.PRESETS``), then the ones given explicitly (:func:`head_config`).

This module does not import TensorFlow (the command line reads the settings before it
loads TensorFlow): a head class is imported when it is first built (:func:`head_class`,
or ``ptpm_tf.heads.TreeHead`` and the like).
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, NamedTuple, Tuple

from ptpm_tf.heads.configs import DMLConfig, DurationGroupConfig, OrdinalConfig, WLRConfig
from ptpm_tf.heads.tree.config import TreeConfig
from ptpm_tf.settings import ConfigError, NoSettings


class ModelSpec(NamedTuple):
    """A model: its head class (``module:Class``), the head family's settings class and
    the settings that define the model within the family."""

    head: str
    config: type
    settings: Dict[str, Any]


#: model name -> its :class:`ModelSpec`
MODELS: Dict[str, ModelSpec] = {
    "ptpm": ModelSpec("ptpm_tf.heads.tree.head:TreeHead", TreeConfig, {}),
    "tpm": ModelSpec("ptpm_tf.heads.tree.head:TreeHead", TreeConfig,
                     {"tsl": False, "ucl": False, "leaf_values": "midpoint"}),
    # baselines of paper section 5.1.2 (docs/design.md section 3), same tower, own head
    "mse": ModelSpec("ptpm_tf.heads.regression:RegressionHead", NoSettings, {}),
    "wlr": ModelSpec("ptpm_tf.heads.wlr:WLRHead", WLRConfig, {}),
    "d2q": ModelSpec("ptpm_tf.heads.quantile:D2QHead", DurationGroupConfig, {}),
    "dml": ModelSpec("ptpm_tf.heads.quantile:DMLHead", DMLConfig, {}),
    "or": ModelSpec("ptpm_tf.heads.ordinal:OrdinalHead", OrdinalConfig, {}),
    "cread": ModelSpec("ptpm_tf.heads.ordinal:CreadHead", OrdinalConfig,
                       {"a": 2.0, "w_restore": 1.0, "w_ordinal": 1.0}),
}

#: the head classes by name, imported on first use (``from ptpm_tf.heads import TreeHead``)
HEAD_CLASSES = {"Head": "ptpm_tf.heads.base:Head",
                **{spec.head.rsplit(":", 1)[1]: spec.head for spec in MODELS.values()}}


def _spec(model: str) -> ModelSpec:
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    return MODELS[model]


def head_class(model: str):
    """The head class of ``model`` (imports it, and TensorFlow)."""
    module, name = _spec(model).head.split(":")
    return getattr(importlib.import_module(module), name)


def head_fields(model: str) -> Tuple[str, ...]:
    """The names of ``model``'s head settings."""
    import dataclasses
    return tuple(f.name for f in dataclasses.fields(_spec(model).config))


def head_config(model: str, preset: str = None, **overrides):
    """The settings ``model``'s head is built with (its family's settings class): the
    family's defaults, the model's defining settings, the preset's (default: the default
    preset), then ``overrides``. A setting the family does not have is a
    :class:`ConfigError`."""
    from ptpm_tf.config import DEFAULT_PRESET, PRESETS
    preset = DEFAULT_PRESET if preset is None else preset
    spec, names = _spec(model), head_fields(model)
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        have = f"its settings: {', '.join(names)}" if names else "it has no settings"
        raise ConfigError(f"model {model!r} has no setting {', '.join(unknown)} ({have})")
    return spec.config(**{**spec.settings, **PRESETS[preset].get(model, {}), **overrides})


def build_head(model: str, config=None, seed: int = 0):
    """The head of ``model`` built with ``config`` (default: :func:`head_config`)."""
    return head_class(model)(head_config(model) if config is None else config, seed=seed)


def __getattr__(name):
    if name in HEAD_CLASSES:
        module, cls = HEAD_CLASSES[name].split(":")
        return getattr(importlib.import_module(module), cls)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MODELS", "ModelSpec", "HEAD_CLASSES", "head_class", "head_fields", "head_config",
           "build_head", *HEAD_CLASSES]
