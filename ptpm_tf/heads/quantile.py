"""Duration-debiased quantile baselines: D2Q and DML (paper section 5.1.2, refs. [16], [17];
docs/design.md section 3).

Both map the label into the **within-duration-group quantile** of D2Q (Zhan et al., KDD
2022): the training rows are split into ``n_groups`` equal-frequency groups of the item's
duration (edges = training quantiles of ``duration``); in each group the watch time's
empirical quantile function is kept as ``n_knots`` knots ``Q_g(j / (n_knots - 1))``; the
label becomes ``u = F_g(y)`` in [0, 1] (piecewise-linear inverse of the knots; a label tied
with a run of equal knots, e.g. a spike of exact completions, gets the middle of the run),
and a prediction ``u_hat`` goes back to seconds by ``Q_g(u_hat)``. Group edges and knots are
non-trainable weights, and the group lookup (``tf.searchsorted``) and the interpolation
(``tf.gather``) run in the graph, so a SavedModel decodes from the raw ``duration`` feature
alone. ``F_g`` and ``Q_g`` round-trip: ``Q_g(F_g(y)) = y`` inside the group's range.

**Missing duration.** Rows whose duration is NaN, and every row when the dataset has no
``duration`` column or the model's inputs lack the ``duration`` feature (CIKM16), use one
extra group fitted on all training labels: D2Q then degenerates to regressing the global
quantile of the watch time (and warns once at ``adapt``), which is a documented fallback,
not a silent one.

**D2Q** (model ``d2q``): one output ``u_hat = sigmoid(z)``, squared error against ``u``;
prediction ``Q_g(u_hat)``.

**DML** (model ``dml``; Zhang et al., CIKM 2023, "Leveraging watch-time feedback for
short-video recommendations: a causal labeling framework"). That paper builds *labels*,
not a regressor, and leaves the point prediction open; the reading implemented here, after
the PTPM paper's one-line summary ("similar to D2Q, it considers the difficulty of
estimating watch time across different intervals and sets coarser granularity at the
beginning"):

1. *Debiased*: the label is D2Q's duration-group quantile ``u`` (duration is the
   confounder; grouping by it is the backdoor adjustment the DML paper's causal labelling
   amounts to for a single confounder).
2. *Multiple semantics*: ``K`` (default 16) binary labels ``1[u > tau_k]``, one output each,
   trained with the mean binary cross-entropy: each label is one "semantic" (watched longer
   than a share ``tau_k`` of comparable plays).
3. *Coarse to fine*: ``tau_k = 1 - (1 - k / (K + 1))^p`` (``p = granularity_power``, 2):
   wide steps at the low (short-watch) end, where the labels are hard to tell apart, and
   fine ones at the high end.
4. *Prediction* (our addition, needed for MAE): the expected quantile
   ``u_hat = int_0^1 P(u > t) dt`` by the trapezoid rule over ``0, tau_1..tau_K, 1`` with
   ``P(u > 0) = 1`` and ``P(u > 1) = 0``, mapped back to seconds as D2Q does:
   ``Q_g(u_hat)``.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Dict, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from ptpm_tf.data.dataset import DURATION, LABEL
from ptpm_tf.heads.base import Head, prior_logit, set_output_bias
from ptpm_tf.heads.configs import DMLConfig, DurationGroupConfig


@dataclasses.dataclass
class DurationQuantiles:
    """Duration-group edges and per-group quantile knots (NumPy side of the heads)."""

    edges: np.ndarray  # [G-1] inner edges, +inf padded when durations tie
    knots: np.ndarray  # [G+1, M]; row G: all training labels (unknown duration)

    @property
    def n_groups(self) -> int:
        return self.knots.shape[0] - 1

    @property
    def probs(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.knots.shape[1])

    def group(self, duration: Optional[np.ndarray], n: Optional[int] = None) -> np.ndarray:
        """Group of each row (``n_groups`` = unknown duration)."""
        if duration is None:
            return np.full(n, self.n_groups, np.int64)
        d = np.asarray(duration, np.float64)
        g = np.searchsorted(self.edges, d, side="right")
        return np.where(np.isnan(d), self.n_groups, g).astype(np.int64)

    def quantile_of(self, y: np.ndarray, group: np.ndarray) -> np.ndarray:
        """``u = F_g(y)``: piecewise-linear inverse of the group's knots; the middle of the
        run for a label equal to several knots; 0 / 1 below / above the group's range."""
        y = np.asarray(y, np.float64)
        u = np.empty(len(y))
        probs = self.probs
        for g in np.unique(group):
            rows = np.flatnonzero(group == g)
            u[rows] = _inverse_knots(y[rows], self.knots[g].astype(np.float64), probs)
        return u

    def value_at(self, u: np.ndarray, group: np.ndarray) -> np.ndarray:
        """``Q_g(u)``: linear interpolation between the group's knots (as in the graph)."""
        m = self.knots.shape[1]
        pos = np.clip(np.asarray(u, np.float64), 0.0, 1.0) * (m - 1)
        i = np.clip(np.floor(pos).astype(np.int64), 0, m - 2)
        frac = pos - i
        k = self.knots.astype(np.float64)
        lo, hi = k[group, i], k[group, i + 1]
        return lo + frac * (hi - lo)


def _inverse_knots(y: np.ndarray, knots: np.ndarray, probs: np.ndarray) -> np.ndarray:
    left = np.searchsorted(knots, y, side="left")
    right = np.searchsorted(knots, y, side="right")
    tied = right > left
    u = np.empty(len(y))
    # labels equal to knots left..right-1: middle of their probability run
    u[tied] = 0.5 * (probs[left[tied]] + probs[right[tied] - 1])
    # labels strictly between knots[left-1] and knots[left]
    free = ~tied
    lo = np.clip(left[free] - 1, 0, len(knots) - 1)
    hi = np.clip(left[free], 0, len(knots) - 1)
    span = knots[hi] - knots[lo]
    frac = np.divide(y[free] - knots[lo], span, out=np.zeros(free.sum()), where=span > 0)
    u[free] = probs[lo] + np.clip(frac, 0.0, 1.0) * (probs[hi] - probs[lo])
    u[free & (y < knots[0])] = 0.0
    u[free & (y > knots[-1])] = 1.0
    return u


def fit_duration_quantiles(y: np.ndarray, duration: Optional[np.ndarray], n_groups: int,
                           n_knots: int) -> DurationQuantiles:
    """Equal-frequency duration groups (on rows with a known duration) and each group's
    ``n_knots`` label quantiles; the extra last row holds the quantiles of all labels."""
    if n_groups < 1 or n_knots < 2:
        raise ValueError(f"need n_groups >= 1 and n_knots >= 2, got {n_groups}, {n_knots}")
    y = np.asarray(y, np.float64)
    probs = np.linspace(0.0, 1.0, n_knots)
    global_knots = np.quantile(y, probs)
    known = (np.zeros(len(y), bool) if duration is None
             else ~np.isnan(np.asarray(duration, np.float64)))
    edges = np.full(max(n_groups - 1, 0), np.inf)
    if known.any() and n_groups > 1:
        d = np.asarray(duration, np.float64)[known]
        inner = np.unique(np.quantile(d, np.arange(1, n_groups) / n_groups))
        edges[: len(inner)] = inner
    knots = np.tile(global_knots, (n_groups + 1, 1))
    tables = DurationQuantiles(edges, knots)
    if known.any():
        group = tables.group(np.asarray(duration, np.float64))
        for g in range(n_groups):
            rows = group == g
            if rows.sum() >= 2:
                knots[g] = np.quantile(y[rows], probs)
    return DurationQuantiles(edges.astype(np.float32), knots.astype(np.float32))


class _DurationQuantileHead(Head):
    """Shared machinery: fit/store the groups, label transform, in-graph ``Q_g``."""

    def __init__(self, config=None, seed: int = 0, **kwargs):
        super().__init__(config, seed, **kwargs)
        self.n_groups, self.n_knots = self.config.n_groups, self.config.n_knots
        const = dict(trainable=False, initializer="zeros", dtype=tf.float32)
        self.edges = self.add_weight(name="duration_edges", shape=[max(self.n_groups - 1, 0)],
                                     **const)
        self.knots = self.add_weight(name="quantile_knots",
                                     shape=[self.n_groups + 1, self.n_knots], **const)

    @property
    def tables(self) -> DurationQuantiles:
        return DurationQuantiles(self.edges.numpy(), self.knots.numpy())

    @staticmethod
    def _duration(frame: pd.DataFrame) -> Optional[np.ndarray]:
        return frame[DURATION].to_numpy(np.float64) if DURATION in frame.columns else None

    def adapt(self, train: pd.DataFrame) -> Dict[str, np.ndarray]:
        y = train[LABEL].to_numpy(np.float64)
        duration = self._duration(train)
        if duration is None or np.isnan(duration).all():
            warnings.warn(f"{type(self).__name__}: no duration in the training data; every "
                          "row uses the global quantile function (no duration debiasing)")
        tables = fit_duration_quantiles(y, duration, self.n_groups, self.n_knots)
        self.edges.assign(tables.edges)
        self.knots.assign(tables.knots)
        return self.targets(train)

    def targets(self, frame: pd.DataFrame, seed: int = 0) -> Dict[str, np.ndarray]:
        tables = self.tables
        y = frame[LABEL].to_numpy(np.float64)
        u = tables.quantile_of(y, tables.group(self._duration(frame), len(frame)))
        return {LABEL: y.astype(np.float32), "quantile": u.astype(np.float32)}

    def group_of(self, features) -> tf.Tensor:
        """[B] duration group of each row, in the graph (unknown duration -> last group)."""
        if features is None or DURATION not in features:
            raise ValueError(f"{type(self).__name__}.decode needs the raw 'duration' feature")
        d = tf.cast(features[DURATION], tf.float32)
        if self.n_groups > 1:
            g = tf.searchsorted(self.edges[None, :], d[None, :], side="right")[0]
        else:
            g = tf.zeros_like(d, tf.int32)
        return tf.where(tf.math.is_nan(d), tf.constant(self.n_groups, g.dtype), g)

    def value_at(self, u: tf.Tensor, group: tf.Tensor) -> tf.Tensor:
        """``Q_g(u)`` in the graph: linear interpolation between the group's knots."""
        m = self.n_knots
        pos = tf.clip_by_value(u, 0.0, 1.0) * (m - 1)
        i = tf.clip_by_value(tf.floor(pos), 0.0, m - 2.0)
        frac = pos - i
        base = tf.cast(group, tf.int32) * m + tf.cast(i, tf.int32)
        flat = tf.reshape(self.knots, [-1])
        lo, hi = tf.gather(flat, base), tf.gather(flat, base + 1)
        return lo + frac * (hi - lo)

    def _decode_quantile(self, u_hat, features):
        if features is None or DURATION not in features:
            group = tf.fill(tf.shape(u_hat), self.n_groups)
        else:
            group = self.group_of(features)
        return {"watch_time": tf.nn.relu(self.value_at(u_hat, group)), "quantile": u_hat}


class D2QHead(_DurationQuantileHead):
    """Duration-deconfounded quantile regression (model ``d2q``).

    Settings: :class:`DurationGroupConfig`.
    """

    Config = DurationGroupConfig
    loss_names = ("quantile_mse",)
    output_names = ("quantile",)

    def __init__(self, config: Optional[DurationGroupConfig] = None, seed: int = 0, **kwargs):
        super().__init__(config, seed, **kwargs)
        self.out = tf.keras.layers.Dense(1, name="quantile_logit")

    def call(self, hidden, training=False):
        return {"logit": self.out(hidden)[:, 0]}

    def decode(self, outputs, features=None, distribution=False):
        return self._decode_quantile(tf.sigmoid(outputs["logit"]), features)

    def compute_loss(self, outputs, targets, step, training=False):
        u = tf.cast(targets["quantile"], tf.float32)
        mse = tf.reduce_mean(tf.square(tf.sigmoid(outputs["logit"]) - u))
        return mse, {"quantile_mse": mse}


def dml_levels(n_thresholds: int, power: float) -> np.ndarray:
    """Coarse-to-fine quantile thresholds ``tau_k = 1 - (1 - k / (K + 1))^power``."""
    z = np.arange(1, n_thresholds + 1, dtype=np.float64) / (n_thresholds + 1)
    return 1.0 - (1.0 - z) ** power


class DMLHead(_DurationQuantileHead):
    """Debiased multiple-semantics labels on the duration-group quantile (model ``dml``;
    see the module docstring for the reading).

    Settings: :class:`DMLConfig` (``n_thresholds``: ``K`` binary labels ``1[u > tau_k]``).
    """

    Config = DMLConfig
    loss_names = ("bce",)
    output_names = ("quantile",)

    def __init__(self, config: Optional[DMLConfig] = None, seed: int = 0, **kwargs):
        super().__init__(config, seed, **kwargs)
        self.n_thresholds = self.config.n_thresholds
        self.granularity_power = self.config.granularity_power
        self.taus = dml_levels(self.n_thresholds, self.granularity_power)
        self.out = tf.keras.layers.Dense(self.n_thresholds, name="semantic_logits")

    def adapt(self, train: pd.DataFrame) -> Dict[str, np.ndarray]:
        targets = super().adapt(train)
        u = targets["quantile"].astype(np.float64)
        set_output_bias(self.out, prior_logit((u[:, None] > self.taus[None, :]).mean(0)))
        return targets

    def call(self, hidden, training=False):
        return {"logits": self.out(hidden)}

    def decode(self, outputs, features=None, distribution=False):
        p = tf.sigmoid(outputs["logits"])
        b = tf.shape(p)[0]
        s = tf.concat([tf.ones([b, 1]), p, tf.zeros([b, 1])], axis=1)
        widths = tf.constant(np.diff(np.concatenate([[0.0], self.taus, [1.0]])), tf.float32)
        u_hat = tf.linalg.matvec(0.5 * (s[:, 1:] + s[:, :-1]), widths)
        return self._decode_quantile(u_hat, features)

    def compute_loss(self, outputs, targets, step, training=False):
        u = tf.cast(targets["quantile"], tf.float32)
        taus = tf.constant(self.taus, tf.float32)
        above = tf.cast(u[:, None] > taus[None, :], tf.float32)
        bce = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
            labels=above, logits=outputs["logits"]))
        return bce, {"bce": bce}
