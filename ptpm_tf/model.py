"""The model: raw features -> :class:`FeatureEncoder` -> :class:`Tower` -> a :class:`Head`,
trained by one custom ``train_step`` / ``test_step`` under plain ``model.fit``.

The head decides the loss (``Head.compute_loss``) and the predictions (``Head.decode``);
this class only wires them, applies the gradients and keeps one running mean per loss part
plus the MAE of the served prediction, so every baseline trains through the same loop.

Under a ``tf.distribute`` strategy with several replicas (:mod:`ptpm_tf.distribute`), each
replica's step sees its slice of the global batch. The head's loss and parts are means over
that slice; :meth:`WatchTimeModel._step` weights them by the replica's share of the global
batch (``n_local / n_global``), so the optimizer's sum of the replicas' gradients is the
gradient of the global-batch loss, and the running means are fed the global-batch values
(one all-reduce per step). On one replica nothing of this is built.
"""
from __future__ import annotations

import tensorflow as tf

from ptpm_tf import distribute
from ptpm_tf.data.dataset import LABEL
from ptpm_tf.features import FeatureEncoder
from ptpm_tf.heads import Head
from ptpm_tf.tower import Tower


class WatchTimeModel(tf.keras.Model):
    """Shared tower plus one head. ``model(features)`` returns the head's predictions
    (``watch_time`` in seconds and the head's other outputs, distributional ones included)."""

    def __init__(self, encoder: FeatureEncoder, tower: Tower, head: Head, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.tower, self.head = encoder, tower, head
        self.loss_trackers = {name: tf.keras.metrics.Mean(name=name)
                              for name in ("loss", *head.loss_names)}
        self.mae_tracker = tf.keras.metrics.MeanAbsoluteError(name="mae")

    @property
    def metrics(self):
        return [*self.loss_trackers.values(), self.mae_tracker]

    def raw_outputs(self, features, training=False):
        hidden = self.tower(self.encoder(features), training=training)
        return self.head(hidden, training=training)

    def call(self, features, training=False):
        """Every prediction of the head (its point and distributional outputs); the
        serving signatures ask the head for their own subsets (:mod:`ptpm_tf.export`)."""
        return self.head.decode(self.raw_outputs(features, training=training), features,
                                distribution=True)

    def _step(self, data, training: bool):
        """(loss to differentiate, loss parts, raw outputs). On several replicas the loss
        and parts are this replica's share of the global-batch values (they sum to them
        over the replicas)."""
        features, targets = data
        outputs = self.raw_outputs(features, training=training)
        step = self.optimizer.iterations if self.optimizer is not None else 0
        loss, parts = self.head.compute_loss(outputs, targets, step, training=training)
        if self.losses:
            loss += tf.add_n(self.losses)
        share = distribute.batch_share(tf.shape(targets[LABEL])[0])
        if share is not None:
            # local means -> shares of the global means; a replica without rows adds 0
            # (its local means are NaN, and tf.where routes no gradient through them)
            loss, parts = tf.nest.map_structure(
                lambda t: tf.where(share > 0.0, t * share, 0.0), (loss, parts))
        return loss, parts, outputs

    def _update(self, loss, parts, outputs, data):
        features, targets = data
        if distribute.replica_context() is not None:
            loss, parts = distribute.global_sum(tf.nest.map_structure(
                tf.stop_gradient, (loss, parts)))
        self.loss_trackers["loss"].update_state(loss)
        for name, value in parts.items():
            self.loss_trackers[name].update_state(value)
        self.mae_tracker.update_state(targets[LABEL], self.head.point_prediction(outputs, features))
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss, parts, outputs = self._step(data, training=True)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(
            (g, v) for g, v in zip(grads, self.trainable_variables) if g is not None)
        return self._update(loss, parts, outputs, data)

    def test_step(self, data):
        loss, parts, outputs = self._step(data, training=False)
        return self._update(loss, parts, outputs, data)

    def get_config(self):
        return {"encoder": self.encoder.get_config(), "tower": self.tower.get_config(),
                "head": {"class": type(self.head).__name__, "config": self.head.get_config()}}
