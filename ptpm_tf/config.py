"""The experiment configuration: typed, nested, written once.

An :class:`ExperimentConfig` is what a run directory's ``config.json`` holds and all that
``train``, ``evaluate`` and ``export`` read:

- ``model``, ``preset``, ``seed`` (the seed draws the simulator's data, the split and the
  initial weights);
- ``data``: :class:`DataConfig` (which log, how much of it, how it is split);
- ``tower``: :class:`TowerConfig` (the shared tower, :class:`ptpm_tf.tower.Tower`);
- ``training``: :class:`TrainingConfig` (optimizer, epochs, early stopping, strategy);
- ``head``: the head settings given explicitly. They are laid over the model's defining
  settings and the preset's (:func:`ptpm_tf.heads.head_config`); the head family's own
  dataclass (e.g. :class:`ptpm_tf.heads.tree.config.TreeConfig`) holds the defaults.

Every field is declared with :func:`ptpm_tf.settings.setting`, whose metadata (help,
choices, bounds, flag name) both validation and the command line read, so a default, a
choice list or a bound is written in one place. A wrong value or a setting the model does
not have is a :class:`~ptpm_tf.settings.ConfigError` naming the flag.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Dict, Mapping, Optional

from ptpm_tf.heads import MODELS, head_config, head_fields
from ptpm_tf.data.registry import DATASETS
from ptpm_tf.settings import ConfigError, from_mapping, setting, validate


#: named sets of head settings laid over each model's defining settings
#: (``ptpm_tf.heads.MODELS``), per model. ``paper``: the paper's definitions (a tree over
#: seconds, decoded by its mean, Eq. 2), so tables compare with the paper. ``best``: what
#: won on the validation split in BENCHMARKS.md (a tree over watch time / duration,
#: decoded by its median, trained without ``L_reg`` and ``L_var``, which fit the mean in
#: seconds that the median decoder does not serve); the default.
_BEST_TREE = {"label_space": "ratio", "decode": "median", "w_reg": 0.0, "w_var": 0.0}
PRESETS: Dict[str, Dict[str, Dict[str, Any]]] = {
    "paper": {},
    "best": {"ptpm": dict(_BEST_TREE), "tpm": dict(_BEST_TREE)},
}
DEFAULT_PRESET = "best"
#: the model ``ptpm-tf train`` trains without ``--model``: with the ``best`` preset, TPM
#: won on the validation split against PTPM (BENCHMARKS.md, "The best preset")
DEFAULT_MODEL = "tpm"


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which log a run reads and how it is split."""

    dataset: str = setting("simulator", "dataset format (simulator: the built-in one)",
                           choices=DATASETS)
    data_dir: Optional[str] = setting(None, "folder holding the dataset's files")
    spec: Optional[str] = setting(None, "dataset spec (YAML/JSON) for --dataset csv")
    rows: Optional[int] = setting(None, "rows to generate (simulator) or read at most", low=1)
    strict: bool = setting(False, "fail on the first malformed row instead of dropping and "
                                  "counting it")
    split: tuple = setting((0.8, 0.1, 0.1), "train,validation,test fractions (by time if "
                                             "there is a timestamp)")
    history_features: bool = setting(False, "add each row's user and item viewing history "
                                            "(earlier views: count, mean watch ratio, "
                                            "completion rate) as numeric features; needs a "
                                            "timestamp, not with --prepared")
    prepared: Optional[str] = setting(None, "a prepared directory (ptpm-tf data prepare) to "
                                            "stream from instead of loading the data")
    fit_rows: int = setting(2_000_000, "with --prepared: the heads fit their constants (the "
                                       "tree's leaf boundaries, quantile tables) on a uniform "
                                       "sample of at most this many training labels, so "
                                       "memory does not grow with the log (CDF error "
                                       "<= 0.0014 at 2M, p = 0.999)", low=1)

    def __post_init__(self):
        validate(self)

    def check(self) -> None:
        split = self.split
        if len(split) != 3 or not all(isinstance(f, numbers.Real) and not isinstance(f, bool)
                                      and math.isfinite(f) and f > 0 for f in split) \
                or abs(sum(split) - 1.0) > 1e-6:
            raise ConfigError(f"split fractions must be three positive numbers summing to 1 "
                              f"(train,validation,test), got {','.join(map(str, split))}")
        object.__setattr__(self, "split", tuple(float(f) for f in split))
        if self.history_features and self.prepared is not None:
            raise ConfigError("--history-features is not available with --prepared yet "
                              "(computed in memory only)")


@dataclasses.dataclass(frozen=True)
class TowerConfig:
    """The shared tower (paper section 4.4): embeddings, DCN cross layers, an MLP."""

    embedding_dim: int = setting(16, "embedding size of every categorical id", low=1)
    n_cross: int = setting(2, "DCN cross layers", low=0)
    hidden: tuple = setting((256, 128), "MLP layer sizes")
    dropout: float = setting(0.0, "dropout after each MLP layer", low=0.0)

    def __post_init__(self):
        validate(self)

    def check(self) -> None:
        if not all(isinstance(u, numbers.Integral) and not isinstance(u, bool) and u > 0
                   for u in self.hidden):
            raise ConfigError(f"hidden must be positive layer sizes, got {self.hidden!r}")
        if self.dropout >= 1.0:
            raise ConfigError(f"dropout must be < 1, got {self.dropout!r}")


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """How the model is fitted: ``model.fit`` with early stopping on the validation split."""

    epochs: int = setting(10, "maximum epochs", low=1)
    batch_size: int = setting(1024, "global batch size", low=1)
    learning_rate: float = setting(2e-3, "Adam learning rate", above=0.0)
    patience: int = setting(2, "early-stopping patience in epochs, on the validation split",
                            low=0)
    monitor: str = setting("val_mae", "validation quantity early stopping watches",
                           choices=("val_mae", "val_loss"))
    strategy: str = setting("default", "tf.distribute strategy: one device, the local devices "
                                       "(mirrored), or the workers of TF_CONFIG (multi_worker); "
                                       "--batch-size is the global batch (docs/distributed.md)",
                            choices=("default", "mirrored", "multi_worker"))
    backup_every: Optional[int] = setting(None, "back up training every STEPS steps (default: "
                                                "every epoch); a killed run resumes from its "
                                                "last backup when rerun with the same command",
                                          low=1)

    def __post_init__(self):
        validate(self)


#: the sections of an experiment and their classes
SECTIONS = {"data": DataConfig, "tower": TowerConfig, "training": TrainingConfig}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines a training run (the module docstring)."""

    model: str = DEFAULT_MODEL
    preset: str = DEFAULT_PRESET
    seed: int = 0
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    tower: TowerConfig = dataclasses.field(default_factory=TowerConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    #: head settings given explicitly, over the model's and the preset's
    head: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; choose one of "
                              f"{', '.join(MODELS)}")
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; choose one of "
                              f"{', '.join(PRESETS)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        for name, cls in SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, from_mapping(cls, value, name))
            elif not isinstance(value, cls):
                raise ConfigError(f"{name} must be a {cls.__name__}, got {value!r}")
        object.__setattr__(self, "head", dict(self.head))
        self.head_config()  # an unknown or invalid head setting fails here

    def head_config(self):
        """The resolved settings of the model's head (its family's dataclass)."""
        return head_config(self.model, self.preset, **self.head)

    def resolved(self) -> "ExperimentConfig":
        """This config with every head setting written out in ``head`` (what a run
        saves: it rebuilds the same head whatever the defaults and presets become)."""
        return dataclasses.replace(self, head=dataclasses.asdict(self.head_config()))

    def replace(self, **changes) -> "ExperimentConfig":
        """A copy with top-level fields or section fields changed: ``replace(rows=10)``
        changes ``data.rows``; a head setting goes to ``head``."""
        return ExperimentConfig.from_flat(**{**self.flat(), **changes})

    def flat(self) -> Dict[str, Any]:
        """Every setting by its own name (the inverse of :meth:`from_flat`)."""
        out = {"model": self.model, "preset": self.preset, "seed": self.seed}
        for name in SECTIONS:
            out.update(dataclasses.asdict(getattr(self, name)))
        out.update(self.head)
        return out

    @classmethod
    def from_flat(cls, **settings) -> "ExperimentConfig":
        """Build a config from settings by their own names, each routed to the section
        that declares it (``from_flat(model='tpm', rows=3000, epochs=1, depth=4)``);
        anything no section declares is a head setting. ``head={...}`` and a section (a
        mapping or its dataclass: ``tower={...}``, ``data=DataConfig(...)``) are merged in."""
        top = {k: settings.pop(k) for k in ("model", "preset", "seed") if k in settings}
        head = dict(settings.pop("head", None) or {})
        sections: Dict[str, Dict[str, Any]] = {}
        for name in SECTIONS:
            given = settings.pop(name, None) or {}
            sections[name] = (dataclasses.asdict(given) if dataclasses.is_dataclass(given)
                              else dict(given))
        for key, value in settings.items():
            for name, section in SECTIONS.items():
                if key in {f.name for f in dataclasses.fields(section)}:
                    sections[name][key] = value
                    break
            else:
                head[key] = value
        return cls(**top, **{name: SECTIONS[name](**values)
                             for name, values in sections.items()}, head=head)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> "ExperimentConfig":
        """The inverse of :meth:`to_dict`; a run saved before configs were nested (one flat
        mapping, no preset: the paper's settings) is read too."""
        if "data" in saved or "training" in saved:
            unknown = sorted(set(saved) - {f.name for f in dataclasses.fields(cls)})
            if unknown:
                raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
            return cls(**saved)
        flat = {"preset": "paper", **saved}
        flat.update(flat.pop("tower", None) or {})
        if "depth" not in head_fields(flat.get("model", "ptpm")):
            flat.pop("depth", None)  # the flat form carried a depth for every model
        return cls.from_flat(**flat)
