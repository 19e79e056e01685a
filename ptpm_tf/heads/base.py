"""What every head provides, in the spirit of ``tfrs.tasks``: a head owns its outputs, its
loss and its decoding, so every model is the shared tower plus a head, trained by the one
``train_step`` in :mod:`ptpm_tf.model`.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import pandas as pd
import tensorflow as tf


class Head(tf.keras.layers.Layer):
    """Base class of the output heads.

    Life cycle: ``adapt`` fits the head's constants on the training split (stored as
    non-trainable weights so that checkpoints and SavedModels carry them); ``calibrate``
    fits post-hoc constants on the validation split once training is done; ``targets``
    turns rows into the per-row training targets; ``call`` maps the tower's hidden vector
    to raw outputs; ``compute_loss`` returns the total loss and its named parts;
    ``decode`` turns raw outputs into predictions (``watch_time`` at least, in seconds).
    """

    #: names of the loss parts ``compute_loss`` returns (logged by ``model.fit``)
    loss_names: Tuple[str, ...] = ("loss",)
    #: names of the extra serving outputs ``decode`` returns besides ``watch_time``
    output_names: Tuple[str, ...] = ()

    def adapt(self, train: pd.DataFrame) -> None:
        raise NotImplementedError

    def targets(self, frame: pd.DataFrame, seed: int = 0) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def calibrate(self, model: tf.keras.Model, validation: pd.DataFrame) -> Dict[str, float]:
        """After training: fit the head's post-hoc constants on the validation split (never
        the test split); returns what it measured there. Most heads have none."""
        return {}

    def compute_loss(self, outputs: Dict[str, tf.Tensor], targets: Dict[str, tf.Tensor],
                     step: tf.Tensor, training: bool = False) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        """(total loss, named parts) of one batch.

        The total and the parts are means over the rows this call sees (or values that
        are the same on every replica, such as a batch reward). When a global batch is
        split over several replicas the model turns them into global-batch means
        (:mod:`ptpm_tf.distribute`); any *other* batch statistic a loss needs (a
        normaliser, a standard deviation, pairs of samples) must be taken over the global
        batch with ``distribute.global_sum`` / ``global_mean`` / ``global_std`` /
        ``global_batch``, and be stop-gradient.
        """
        raise NotImplementedError

    def point_prediction(self, outputs: Dict[str, tf.Tensor],
                         features: Dict[str, tf.Tensor]) -> tf.Tensor:
        """[B] the served ``watch_time`` alone, for the running metrics of every training
        step; heads whose ``decode`` returns more override it to skip that work."""
        return self.decode(outputs, features)["watch_time"]

    def decode(self, outputs: Dict[str, tf.Tensor],
               features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Predictions from raw outputs; ``features`` are the raw inputs (for heads whose
        decoding depends on them, e.g. on the item's duration)."""
        raise NotImplementedError


def set_output_bias(dense: tf.keras.layers.Dense, values) -> None:
    """Start an output layer's bias at ``values`` (e.g. the training prior's logits), so a
    head's first prediction is the marginal one. Works before the layer is built (the
    usual case: ``adapt`` runs before the first call) and after."""
    values = np.asarray(values, np.float32).reshape(-1)
    if dense.built:
        dense.bias.assign(values)
    else:
        dense.bias_initializer = tf.keras.initializers.Constant(values)


def prior_logit(p) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p`` clipped to [1e-4, 1 - 1e-4]."""
    p = np.clip(np.asarray(p, np.float64), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))

