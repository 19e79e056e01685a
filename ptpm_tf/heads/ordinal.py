"""Ordinal regression (OR) and CREAD: K threshold classifiers ``P(y > t_k | x)``
(paper section 5.1.2, refs. [6] and [12]; docs/design.md section 3).

Both heads have one logit per threshold, ``p_k = sigmoid(z_k) = P(y > t_k | x)``, and
restore the watch time as ``E[y] = int_0^inf P(y > t) dt`` by the trapezoid rule on the
thresholds' grid plus a tail term,

    y_hat = sum_{k=1..K} (p_{k-1} + p_k) / 2 (t_k - t_{k-1}) + p_K e,   t_0 = 0, p_0 = 1,

where ``e`` is the training labels' mean excess over the last threshold,
``E[y - t_K | y > t_K]`` (a constant, ``tail_excess``). The papers' decoder,
``t_0 + sum_k p_k (t_k - t_{k-1})``, is a lower Riemann sum that drops the mass above
``t_K``: fed the true exceedance probabilities it returns 0.92-0.95 of the true mean.

**Thresholds.** ``t_k = Q(gamma_a(k / (K + 1)))`` for ``k = 1..K``, ``Q`` the empirical
quantile function of the training labels and

    gamma_a(z) = (1 - exp(-a z)) / (1 - exp(-a))        (gamma_0(z) = z).

``a = 0`` gives equal-frequency thresholds: that is **OR** (model ``or``). For ``a > 0``
``gamma_a`` is concave, so the thresholds move to higher quantile levels: finer steps in the
long right tail (toward equal-width bins, smaller restoration error) at the price of fewer
samples between neighbouring thresholds in the bulk (larger learning error). This is our
reading of CREAD's error-adaptive discretisation (Sun et al., AAAI 2024), which trades
exactly these two errors off between the equal-frequency and equal-width extremes; ``a``
is chosen on the **validation** split by the benchmark (and by ``ptpm-tf train --model
cread`` unless ``--cread-a`` fixes it), never on the test split.

**Losses.** OR: the mean over thresholds of the binary cross-entropies of ``1[y > t_k]``.
CREAD adds, as its paper does, a restoration loss (Huber, delta 1, of the restored
``y_hat`` against ``y`` on the normalised scale ``/ std(y_train)``) and the ordinal prior
(a penalty ``mean_k relu(p_{k+1} - p_k)`` on survival probabilities that increase), with
weights ``w_restore`` and ``w_ordinal`` (1 and 1). ``K`` defaults to 63, the number of
inner boundaries of the depth-6 global tree of PTPM/TPM, so both discretise the label as
finely.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from ptpm_tf.data.dataset import LABEL
from ptpm_tf.heads.base import Head, prior_logit, set_output_bias
from ptpm_tf.heads.configs import OrdinalConfig


def gamma_levels(n_thresholds: int, a: float) -> np.ndarray:
    """Quantile levels ``gamma_a(k / (K + 1))``, ``k = 1..K`` (``a = 0``: equal frequency)."""
    z = np.arange(1, n_thresholds + 1, dtype=np.float64) / (n_thresholds + 1)
    if abs(a) < 1e-9:
        return z
    return np.expm1(-a * z) / np.expm1(-a)


def fit_thresholds(y: np.ndarray, n_thresholds: int, a: float = 0.0) -> np.ndarray:
    """Thresholds ``t_1 <= ... <= t_K`` at the levels of :func:`gamma_levels` of ``y``."""
    y = np.asarray(y, np.float64)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError("fit_thresholds needs a non-empty 1-D array of labels")
    return np.quantile(y, gamma_levels(n_thresholds, a)).astype(np.float64)


def tail_excess(y: np.ndarray, last_threshold: float) -> float:
    """``E[y - t_K | y > t_K]`` over the labels (0 when none lies above ``t_K``)."""
    above = np.asarray(y, np.float64)
    above = above[above > last_threshold]
    return float((above - last_threshold).mean()) if len(above) else 0.0


def ordinal_weights(thresholds, excess: float = 0.0) -> tuple:
    """(constant, [K] coefficients) of the trapezoid-plus-tail decoder (module doc) as
    ``y_hat = constant + sum_k p_k coef_k``: ``coef_k = (w_k + w_{k+1}) / 2`` with
    ``w_k = t_k - t_{k-1}`` (``w_{K+1} = 0``), plus ``e`` for ``k = K``."""
    t = np.asarray(thresholds, np.float64)
    w = np.diff(np.concatenate([[0.0], t]))
    coef = 0.5 * (w + np.concatenate([w[1:], [0.0]]))
    coef[-1] += excess
    return 0.5 * w[0], coef


class OrdinalHead(Head):
    """``K`` threshold classifiers and the ordinal decoder (model ``or``; CREAD subclasses).

    Settings: :class:`OrdinalConfig` (its defaults are OR's; CREAD's are in
    ``ptpm_tf.heads.MODELS``).
    """

    Config = OrdinalConfig
    loss_names = ("bce", "restore", "ordinal")
    output_names = ("exceed_prob",)

    def __init__(self, config: Optional[OrdinalConfig] = None, seed: int = 0, **kwargs):
        super().__init__(config, seed, **kwargs)
        self.n_thresholds, self.a = self.config.n_thresholds, self.config.a
        self.w_restore, self.w_ordinal = self.config.w_restore, self.config.w_ordinal
        self.out = tf.keras.layers.Dense(self.n_thresholds, name="threshold_logits")
        self.thresholds = self.add_weight(name="thresholds", shape=[self.n_thresholds],
                                          trainable=False, initializer="zeros", dtype=tf.float32)
        self.label_scale = self.add_weight(name="label_scale", shape=[], trainable=False,
                                           initializer="ones", dtype=tf.float32)
        # y_hat = decode_origin + p @ decode_coef (ordinal_weights)
        self.decode_origin = self.add_weight(name="decode_origin", shape=[], trainable=False,
                                             initializer="zeros", dtype=tf.float32)
        self.decode_coef = self.add_weight(name="decode_coef", shape=[self.n_thresholds],
                                           trainable=False, initializer="zeros",
                                           dtype=tf.float32)

    def adapt(self, train: pd.DataFrame) -> Dict[str, np.ndarray]:
        y = train[LABEL].to_numpy(np.float64)
        t = fit_thresholds(y, self.n_thresholds, self.a)
        self.set_thresholds(t, tail_excess(y, t[-1]))
        # start at the training prior P(y > t_k): the first restored value is the marginal
        set_output_bias(self.out, prior_logit((y[:, None] > t[None, :]).mean(0)))
        self.label_scale.assign(max(float(np.std(y)), 1e-6))
        return self.targets(train)

    def targets(self, frame: pd.DataFrame, seed: int = 0) -> Dict[str, np.ndarray]:
        return {LABEL: frame[LABEL].to_numpy(np.float32)}

    def call(self, hidden, training=False):
        return {"logits": self.out(hidden)}

    def set_thresholds(self, thresholds, excess: float = 0.0) -> None:
        """Set ``t_1..t_K`` and the decoder's constants from them and the tail's mean
        excess ``e``."""
        const, coef = ordinal_weights(thresholds, excess)
        self.thresholds.assign(np.asarray(thresholds, np.float32))
        self.decode_origin.assign(const)
        self.decode_coef.assign(coef.astype(np.float32))

    def _restore(self, p):
        return self.decode_origin + tf.linalg.matvec(p, self.decode_coef)

    def decode(self, outputs, features=None, distribution=False):
        p = tf.sigmoid(outputs["logits"])
        return {"watch_time": self._restore(p), "exceed_prob": p}

    def compute_loss(self, outputs, targets, step, training=False):
        y = tf.cast(targets[LABEL], tf.float32)
        logits = outputs["logits"]
        above = tf.cast(y[:, None] > self.thresholds[None, :], tf.float32)
        bce = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=above, logits=logits))
        p = tf.sigmoid(logits)
        err = tf.abs((self._restore(p) - y) / self.label_scale)
        restore = tf.reduce_mean(tf.where(err <= 1.0, 0.5 * tf.square(err), err - 0.5))
        ordinal = (tf.reduce_mean(tf.nn.relu(p[:, 1:] - p[:, :-1]))
                   if self.n_thresholds > 1 else tf.constant(0.0))
        total = bce + self.w_restore * restore + self.w_ordinal * ordinal
        return total, {"bce": bce, "restore": restore, "ordinal": ordinal}


class CreadHead(OrdinalHead):
    """CREAD: OR with ``gamma_a``-shaped thresholds, restoration loss and ordinal prior
    (model ``cread``). ``selection_grid`` lists the ``a`` tried on the validation split."""

    selection_grid = {"a": (0.0, 2.0, 5.0)}
