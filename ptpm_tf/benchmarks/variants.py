"""The benchmark's variants and the paper's tables: which runs, in which order, under which
label. Everything model-specific of the benchmark is here, as data; the runner
(:mod:`ptpm_tf.benchmarks.suite`) and the figures only read it.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

from ptpm_tf.config import PRESETS

#: variant name -> (model name of ``MODELS``, head overrides). Every variant is built on
#: the ``paper`` preset, so the paper's names keep the paper's definitions; ``*-ratio``
#: are the same models with the tree over watch time / duration, ``*-best`` the ``best``
#: preset (the default of ``ptpm-tf train``).
VARIANTS: Dict[str, Tuple[str, Dict[str, Any]]] = {
    "mse": ("mse", {}), "wlr": ("wlr", {}), "d2q": ("d2q", {}), "or": ("or", {}),
    "dml": ("dml", {}), "cread": ("cread", {}), "tpm": ("tpm", {}), "ptpm": ("ptpm", {}),
    "ptpm-no-tsl": ("ptpm", {"tsl": False}), "ptpm-no-ucl": ("ptpm", {"ucl": False}),
    # PTPM settings searched for a TSL/UCL that pays (docs/design.md section 2); compare them on
    # the validation columns of their table, never on test.
    "tpm-mean-leaves": ("ptpm", {"tsl": False, "ucl": False}),
    "ptpm-batch-reward": ("ptpm", {"reward": "batch"}),
    "ptpm-exact-reward": ("ptpm", {"reward_partners": 0}),
    "ptpm-best-exact-reward": ("ptpm", {**PRESETS["best"]["ptpm"], "reward_partners": 0}),
    "ptpm-raw-advantage": ("ptpm", {"advantage_norm": False}),
    "ptpm-prune-bias0": ("ptpm", {"prune_bias_init": 0.0}),
    "ptpm-w-tree5": ("ptpm", {"w_tree": 5.0}),
    "ptpm-warmup": ("ptpm", {"tree_warmup_steps": 300}),
    "ptpm-ucl-clip2": ("ptpm", {"ucl_self_normalize": False, "ucl_max_weight": 2.0}),
    "ptpm-ucl-clip8": ("ptpm", {"ucl_self_normalize": False, "ucl_max_weight": 8.0}),
    "tpm-decode-median": ("tpm", {"decode": "median"}),
    "ptpm-decode-median": ("ptpm", {"decode": "median"}),
    "tpm-ratio": ("tpm", {"label_space": "ratio"}),
    "ptpm-ratio": ("ptpm", {"label_space": "ratio"}),
    "tpm-ratio-mean-leaves": ("tpm", {"label_space": "ratio", "leaf_values": "mean"}),
    "ptpm-ratio-no-tsl": ("ptpm", {"label_space": "ratio", "tsl": False}),
    "ptpm-ratio-no-ucl": ("ptpm", {"label_space": "ratio", "ucl": False}),
    "tpm-best": ("tpm", PRESETS["best"]["tpm"]),
    "ptpm-best": ("ptpm", PRESETS["best"]["ptpm"]),
    # the best preset of 2026-12-02 (ratio tree, median decoder, L_reg and L_var on):
    # the rows the tables kept until L_reg/L_var were found to cost the median decoder
    "tpm-ratio-median-reg": ("tpm", {"label_space": "ratio", "decode": "median"}),
    "ptpm-ratio-median-reg": ("ptpm", {"label_space": "ratio", "decode": "median"}),
    # PTPM's reward on what the best preset serves: the median, by its absolute error
    "ptpm-best-median-reward": ("ptpm", {**PRESETS["best"]["ptpm"], "reward_decode": "median",
                                         "reward_error": "absolute"}),
    # Table 3's ablations on the best preset: which of PTPM's parts costs against TPM
    "ptpm-best-no-tsl": ("ptpm", {**PRESETS["best"]["ptpm"], "tsl": False}),
    "ptpm-best-no-ucl": ("ptpm", {**PRESETS["best"]["ptpm"], "ucl": False}),
}
SETTINGS_ORDER = ("ptpm", "ptpm-no-tsl", "ptpm-no-ucl", "tpm", "tpm-mean-leaves", "ptpm-batch-reward",
                  "ptpm-raw-advantage", "ptpm-prune-bias0", "ptpm-w-tree5", "ptpm-warmup",
                  "ptpm-ucl-clip2", "ptpm-ucl-clip8", "tpm-decode-median", "ptpm-decode-median")
TABLE2_ORDER = ("mse", "wlr", "d2q", "or", "dml", "cread", "tpm", "ptpm")
#: Table 2's rows: the tree models also decoded by their other decoder (issue 7), from the
#: same runs (``<variant>-median`` when the run served the mean, ``-mean`` otherwise)
TABLE2_ROWS = ("mse", "wlr", "d2q", "or", "dml", "cread", "tpm", "tpm-median", "tpm-mean",
               "ptpm", "ptpm-median", "ptpm-mean", "tpm-ratio", "tpm-ratio-median",
               "ptpm-ratio", "ptpm-ratio-median", "tpm-best", "tpm-best-mean", "ptpm-best",
               "ptpm-best-mean", "tpm-ratio-median-reg", "ptpm-ratio-median-reg",
               "ptpm-best-median-reward", "ptpm-best-no-tsl", "ptpm-best-no-ucl")
#: the tree models' rows compared with the duration-aware baselines (``BASELINES_TO_BEAT``)
TREE_ROWS = tuple(v for v in TABLE2_ROWS if "tpm" in v)
BASELINES_TO_BEAT = ("dml", "d2q")
TABLE3_ORDER = ("ptpm", "ptpm-no-tsl", "ptpm-no-ucl", "tpm")
LABELS = {"mse": "MSE", "wlr": "WLR", "d2q": "D2Q", "or": "OR", "dml": "DML",
          "cread": "CREAD", "tpm": "TPM", "ptpm": "PTPM", "ptpm-no-tsl": "PTPM w/o TSL",
          "ptpm-no-ucl": "PTPM w/o UCL", "oracle": "oracle",
          "tpm-median": "TPM, median decoder", "ptpm-median": "PTPM, median decoder",
          "tpm-mean": "TPM, mean decoder", "ptpm-mean": "PTPM, mean decoder",
          "tpm-ratio": "TPM, ratio tree, mean decoder",
          "tpm-ratio-median": "TPM, ratio tree, median decoder",
          "ptpm-ratio": "PTPM, ratio tree, mean decoder",
          "ptpm-ratio-median": "PTPM, ratio tree, median decoder",
          "tpm-best": "TPM, best preset (ratio, median, no L_reg/L_var)",
          "tpm-best-mean": "TPM, best preset, mean decoder",
          "ptpm-best": "PTPM, best preset (ratio, median, no L_reg/L_var)",
          "ptpm-best-mean": "PTPM, best preset, mean decoder",
          "tpm-ratio-median-reg": "TPM, ratio tree, median, with L_reg/L_var",
          "ptpm-ratio-median-reg": "PTPM, ratio tree, median, with L_reg/L_var",
          "ptpm-best-median-reward": "PTPM, best preset, reward on the median",
          "ptpm-best-no-tsl": "PTPM, best preset, w/o TSL",
          "ptpm-best-no-ucl": "PTPM, best preset, w/o UCL"}
DEFAULT_MODELS = TABLE2_ORDER
CURVE_VARIANTS = ("ptpm", "tpm")
#: the model the tables test against the runner-up (the * of Table 2)
FOCUS = "ptpm"
#: the runs Table 3 adds when FOCUS is benchmarked (unless --no-ablations)
ABLATIONS = ("ptpm-no-tsl", "ptpm-no-ucl", "tpm")
#: the variants of the Fig. 8 depth sweep (PTPM and w/o TSL)
SWEEP_VARIANTS = ("ptpm", "ptpm-no-tsl")
