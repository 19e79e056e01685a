"""Weighted logistic regression (WLR; Covington et al., RecSys 2016, ref. [5] of the paper),
in the variant for auto-play feeds without clicks that D2Q (Zhan et al., KDD 2022) uses and
the PTPM paper follows (section 5.1.2): **short plays are the negatives**.

Reading implemented here:

- A row is *positive* when its watch time exceeds the short-play threshold ``t_short``
  (the ``short_play_quantile`` quantile of the training labels, default 0.2, so the
  shortest 20 % of plays are negatives; or ``short_play_seconds`` when given).
- One logit ``z``; loss = weighted binary cross-entropy. A positive's weight is its watch
  time ``y`` divided by ``c`` (``c`` = mean training label, a constant that only keeps the
  weights near 1); a negative's weight is ``1 / s`` with ``s`` the training share of
  negatives, so that the negatives together weigh as much as all ``N`` impressions do in
  Covington's setting (where nearly every impression is a negative).
- With these weights the odds at the optimum are
  ``exp(z) = E[y 1(y > t_short) | x] / (c * P(neg | x) / s)``, so the prediction is
  ``y_hat = c * exp(z)`` seconds ("the odds, on the label scale"): it equals the expected
  watch time of the positive plays where the negative rate is at its average, and it keeps
  the known systematic error of WLR elsewhere (it is proportional to ``1 / P(neg | x)``),
  which is what the paper's remark "exhibits systemic errors" refers to.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from ptpm_tf.data.dataset import LABEL
from ptpm_tf.heads.base import Head
from ptpm_tf.heads.configs import WLRConfig


class WLRHead(Head):
    """Weighted logistic regression; prediction = ``c * exp(logit)`` (model name ``wlr``).

    Settings: :class:`WLRConfig`.
    """

    Config = WLRConfig

    loss_names = ("wbce", "positive_rate")
    output_names = ("logit",)

    def __init__(self, config: Optional[WLRConfig] = None, seed: int = 0, **kwargs):
        super().__init__(config, seed, **kwargs)
        self.short_play_quantile = self.config.short_play_quantile
        self.short_play_seconds = self.config.short_play_seconds
        self.max_logit = self.config.max_logit
        self.out = tf.keras.layers.Dense(1, name="wlr_logit")
        const = dict(shape=[], trainable=False, dtype=tf.float32)
        self.threshold = self.add_weight(name="short_play_threshold", initializer="zeros", **const)
        self.weight_scale = self.add_weight(name="weight_scale", initializer="ones", **const)
        self.negative_weight = self.add_weight(name="negative_weight", initializer="ones", **const)

    # -- label transform (NumPy, also used by the tests) --------------------------------
    @staticmethod
    def label_transform(y: np.ndarray, threshold: float, weight_scale: float,
                        negative_weight: float) -> Dict[str, np.ndarray]:
        """Rows -> (binary label, sample weight) of the weighted logistic regression."""
        y = np.asarray(y, np.float64)
        positive = y > threshold
        weight = np.where(positive, y / weight_scale, negative_weight)
        return {"positive": positive.astype(np.float32), "weight": weight.astype(np.float32)}

    def adapt(self, train: pd.DataFrame) -> Dict[str, np.ndarray]:
        y = train[LABEL].to_numpy(np.float64)
        t = (float(self.short_play_seconds) if self.short_play_seconds is not None
             else float(np.quantile(y, self.short_play_quantile)))
        share_neg = float(np.mean(y <= t))
        if share_neg <= 0.0 or share_neg >= 1.0:
            raise ValueError(f"WLR: the short-play threshold {t:.3f} s leaves "
                             f"{share_neg:.1%} negatives; choose another threshold")
        c = max(float(np.mean(y[y > t])), 1e-6)
        self.threshold.assign(t)
        self.weight_scale.assign(c)
        self.negative_weight.assign(1.0 / share_neg)
        return self.targets(train)

    def targets(self, frame: pd.DataFrame, seed: int = 0) -> Dict[str, np.ndarray]:
        y = frame[LABEL].to_numpy(np.float64)
        out = self.label_transform(y, float(self.threshold.numpy()),
                                   float(self.weight_scale.numpy()),
                                   float(self.negative_weight.numpy()))
        return {LABEL: y.astype(np.float32), **out}

    def call(self, hidden, training=False):
        return {"logit": self.out(hidden)[:, 0]}

    def decode(self, outputs, features=None, distribution=False):
        z = tf.clip_by_value(outputs["logit"], -self.max_logit, self.max_logit)
        return {"watch_time": self.weight_scale * tf.exp(z), "logit": outputs["logit"]}

    def compute_loss(self, outputs, targets, step, training=False):
        label = tf.cast(targets["positive"], tf.float32)
        weight = tf.cast(targets["weight"], tf.float32)
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=label, logits=outputs["logit"])
        loss = tf.reduce_mean(weight * bce)
        return loss, {"wbce": loss, "positive_rate": tf.reduce_mean(label)}
