"""MSE regression: the plainest baseline (paper section 5.1.2, docs/design.md section 3).

One linear output ``o`` on the shared tower; the prediction is ``mean + scale * o`` with
``mean`` and ``scale`` the training labels' mean and standard deviation (stored as
non-trainable weights), so that ``o`` starts near 0 and the loss, the squared error on the
normalised scale ``((y_hat - y) / scale)^2``, means the same on every dataset. Decoding
clips at 0 (watch time is never negative); training sees the unclipped value.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import pandas as pd
import tensorflow as tf

from ptpm_tf.data.dataset import LABEL
from ptpm_tf.heads.base import Head


def label_frame_targets(frame: pd.DataFrame) -> Dict[str, np.ndarray]:
    """The label column as the only training target (float32)."""
    return {LABEL: frame[LABEL].to_numpy(np.float32)}


class RegressionHead(Head):
    """Squared-error regression of the watch time (model name ``mse``).

    It has no settings.
    """

    loss_names = ("mse",)
    output_names = ()

    def __init__(self, config=None, seed: int = 0, **kwargs):
        super().__init__(config, seed, **kwargs)
        self.out = tf.keras.layers.Dense(1, name="regression")
        self.label_mean = self.add_weight(name="label_mean", shape=[], trainable=False,
                                          initializer="zeros", dtype=tf.float32)
        self.label_scale = self.add_weight(name="label_scale", shape=[], trainable=False,
                                           initializer="ones", dtype=tf.float32)

    def adapt(self, train: pd.DataFrame) -> Dict[str, np.ndarray]:
        y = train[LABEL].to_numpy(np.float64)
        self.label_mean.assign(float(np.mean(y)))
        self.label_scale.assign(max(float(np.std(y)), 1e-6))
        return label_frame_targets(train)

    def targets(self, frame: pd.DataFrame, seed: int = 0) -> Dict[str, np.ndarray]:
        return label_frame_targets(frame)

    def call(self, hidden, training=False):
        return {"value": self.out(hidden)[:, 0]}

    def _raw_prediction(self, outputs):
        return self.label_mean + self.label_scale * outputs["value"]

    def decode(self, outputs, features=None, distribution=False):
        return {"watch_time": tf.nn.relu(self._raw_prediction(outputs))}

    def compute_loss(self, outputs, targets, step, training=False):
        y = tf.cast(targets[LABEL], tf.float32)
        mse = tf.reduce_mean(tf.square((self._raw_prediction(outputs) - y) / self.label_scale))
        return mse, {"mse": mse}
