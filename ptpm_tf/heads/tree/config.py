"""The tree model's settings, :class:`TreeConfig`, with their defaults (PTPM's). No
TensorFlow here: the command line builds its flags from this module.

TPM is the same family with ``tsl=False, ucl=False, leaf_values='midpoint'``
(``ptpm_tf.heads.MODELS``); the ``best`` and ``paper`` presets set ``label_space`` and
``decode`` (``ptpm_tf.config.PRESETS``).
"""
from __future__ import annotations

import dataclasses

from ptpm_tf.settings import ConfigError, setting, validate

#: decoders of the leaf distribution that can be served as ``watch_time``
DECODERS = ("mean", "median")
#: the quantile levels the serving signature returns (``quantiles`` output, [B, 5])
QUANTILE_LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9)
#: default number of within-leaf interpolation pieces ``K`` (``leaf_knots`` is [L*K+1])
LEAF_KNOTS = 8

#: what the pruning model can read
PRUNER_INPUTS = ("features", "features+tree")
#: what the global tree discretises
LABEL_SPACES = ("seconds", "ratio")


@dataclasses.dataclass(frozen=True)
class TreeConfig:
    """Settings of :class:`~ptpm_tf.heads.tree.head.TreeHead` (the paper's symbols in the
    help texts; docs/design.md section 2)."""

    depth: int = setting(6, "global tree depth D (2^D leaves)", low=1)
    label_space: str = setting(
        "seconds", "what the global tree splits: the watch time in seconds (paper) or the "
                   "watch ratio watch_time / duration (best; needs a duration)",
        choices=LABEL_SPACES)
    leaf_values: str = setting("mean", "node values: training means (PTPM) or midpoints "
                                       "(TPM) of the node's label interval",
                               choices=("mean", "midpoint"))
    tsl: bool = setting(True, "tree structure learning: the pruning model and its "
                              "REINFORCE loss (--no-tsl: the ablation)")
    ucl: bool = setting(True, "unbiased conditional learning: inverse-propensity weights on "
                              "the node classifiers (--no-ucl: the ablation)")
    ucl_max_weight: float = setting(10.0, "clip of the inverse propensities", above=0.0)
    ucl_self_normalize: bool = setting(True, "divide each node's UCL weights by their batch "
                                             "mean")
    w_reg: float = setting(1.0, "weight of L_reg", low=0.0)
    w_var: float = setting(0.1, "weight of L_var", low=0.0)
    w_tree: float = setting(1.0, "weight of L_tree", low=0.0)
    reward: str = setting("sample", "REINFORCE reward: per-sample (Shapley split of the batch "
                                    "reward) or the paper's batch reward",
                          choices=("sample", "batch"))
    reward_partners: int = setting(32, "per-sample reward: partners drawn per sample to "
                                       "estimate its XAUC share (0: every sample of the "
                                       "batch, counted exactly)", low=0)
    advantage_norm: bool = setting(True, "divide the per-sample advantages by their batch "
                                         "std")
    prune_bias_init: float = setting(-2.0, "initial bias of the pruning logits")
    tree_warmup_steps: int = setting(0, "steps before L_tree is switched on", low=0)
    decode: str = setting("mean", "decoder served as watch_time: mean (Eq. 2; paper) or "
                                  "median (best) of the tree's leaf distribution",
                          choices=DECODERS)
    reward_decode: str = setting("mean", "decoder the TSL reward scores", choices=DECODERS)
    reward_error: str = setting("squared", "error term of the TSL reward XAUC - error "
                                           "(squared: the paper)",
                                choices=("squared", "absolute"))
    quantile_levels: tuple = setting(QUANTILE_LEVELS, "levels of the served quantiles")
    leaf_knots: int = setting(LEAF_KNOTS, "knots of each leaf's within-leaf quantile "
                                          "function", low=1)
    pruner_input: str = setting("features", "what the pruning model reads: the tower's "
                                            "features, or also the global tree's classifier "
                                            "probabilities (Eq. 10's T_g)",
                                choices=PRUNER_INPUTS)

    def __post_init__(self):
        validate(self)

    def check(self) -> None:
        levels = self.quantile_levels
        if not levels or not all(isinstance(q, (int, float)) and 0.0 < q < 1.0
                                 for q in levels):
            raise ConfigError(f"quantile-levels must be in (0, 1), got {levels!r}")
        object.__setattr__(self, "quantile_levels", tuple(float(q) for q in levels))
