"""The baselines' settings, one frozen dataclass per head family, with their defaults.
No TensorFlow here: the command line builds its flags from this module. The tree model's
settings are :class:`ptpm_tf.heads.tree.config.TreeConfig`.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from ptpm_tf.settings import ConfigError, setting, validate


@dataclasses.dataclass(frozen=True)
class WLRConfig:
    """Settings of :class:`ptpm_tf.heads.wlr.WLRHead`."""

    short_play_quantile: float = setting(
        0.2, "WLR: training-label quantile under which (inclusive) a play is a negative",
        above=0.0)
    short_play_seconds: Optional[float] = setting(
        None, "WLR: a fixed short-play threshold in seconds instead of the quantile",
        above=0.0)
    max_logit: float = setting(20.0, "WLR: clip of the logit at decode time (exp overflows "
                                     "otherwise)", above=0.0)

    def __post_init__(self):
        validate(self)

    def check(self) -> None:
        if not self.short_play_quantile < 1.0:
            raise ConfigError(f"short-play-quantile must be in (0, 1), got "
                              f"{self.short_play_quantile}")


@dataclasses.dataclass(frozen=True)
class DurationGroupConfig:
    """Settings of :class:`ptpm_tf.heads.quantile.D2QHead` (and DML's duration groups)."""

    n_groups: int = setting(20, "D2Q/DML: equal-frequency duration groups", low=1,
                            flag="--duration-groups")
    n_knots: int = setting(101, "D2Q/DML: knots of each group's quantile function", low=2,
                           flag="--quantile-knots")

    def __post_init__(self):
        validate(self)


@dataclasses.dataclass(frozen=True)
class DMLConfig(DurationGroupConfig):
    """Settings of :class:`ptpm_tf.heads.quantile.DMLHead`."""

    n_thresholds: int = setting(16, "OR/CREAD/DML: number of thresholds", low=1)
    granularity_power: float = setting(2.0, "DML: p of the coarse-to-fine thresholds "
                                            "(1 = equal steps)", above=0.0)


@dataclasses.dataclass(frozen=True)
class OrdinalConfig:
    """Settings of :mod:`ptpm_tf.heads.ordinal`'s OR and CREAD heads (the defaults are OR's)."""

    n_thresholds: int = setting(63, "OR/CREAD/DML: number of thresholds", low=1)
    a: float = setting(0.0, "OR/CREAD threshold shape a (0: equal-frequency thresholds; "
                            "CREAD: chosen on the validation split)",
                       flag="--cread-a")
    w_restore: float = setting(0.0, "OR/CREAD: weight of the restoration loss", low=0.0)
    w_ordinal: float = setting(0.0, "OR/CREAD: weight of the ordinal prior", low=0.0)

    def __post_init__(self):
        validate(self)
