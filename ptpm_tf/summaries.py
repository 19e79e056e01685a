"""TensorBoard logs of a training run (``ptpm-tf train --logdir DIR``).

:func:`tensorboard_callbacks` returns the two callbacks ``train`` adds to ``model.fit``:

- Keras' own ``TensorBoard`` callback: every value ``fit`` logs, per epoch, for the
  training (``DIR/train``) and the validation split (``DIR/validation``): the loss and
  its parts (for tree models ``ce``, ``reg``, ``var``, ``tree``, ``tree_gain`` and
  ``prune_rate``, the mean pruning probability) and the MAE of the served prediction.
  Under a multi-worker strategy Keras writes the chief's log there and the other workers'
  to temporary folders it deletes.
- :class:`ValidationSummaries`: what ``fit`` does not compute, on the validation split
  only, in ``DIR/validation``: the **exact** XAUC of the served prediction
  (:func:`ptpm_tf.metrics.xauc`, O(n log n), every pair) and, for tree models, the learned
  trees: mean depth (``tree_depth``), the share of rows whose tree is pruned
  (``pruned_trees``), and histograms of the depth, of the leaf probabilities of the
  personalised trees (``leaf_prob``) and of each row's largest leaf probability
  (``max_leaf_prob``). Only the chief computes and writes them.

Scalars are named ``epoch_<name>`` like Keras' own, so in TensorBoard the XAUC sits next
to the validation MAE and loss.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
import tensorflow as tf

from ptpm_tf.data.dataset import LABEL
from ptpm_tf.metrics import xauc

#: the outputs of a tree head's decoding the diagnostics read
TREE_OUTPUTS = ("leaf_prob", "tree_depth", "prune_mask")


class ValidationSummaries(tf.keras.callbacks.Callback):
    """Per epoch, on ``validation`` (the batched ``(features, targets)`` dataset of the
    validation split): exact XAUC and the tree diagnostics, written to ``logdir``.
    ``writer=False`` (a non-chief worker) makes it do nothing."""

    def __init__(self, logdir: Path, validation: tf.data.Dataset, writer: bool = True):
        super().__init__()
        self.logdir, self.validation, self.writer = Path(logdir), validation, writer
        self._summary_writer = None
        self._predict = None

    def _outputs(self):
        """A function of a feature batch: the served prediction and, for tree heads, the
        tree outputs (only those: the runtime prunes the rest of the decoding)."""
        model = self.model

        @tf.function
        def predict(features):
            decoded = model(features, training=False)
            return {k: decoded[k] for k in ("watch_time", *TREE_OUTPUTS) if k in decoded}
        return predict

    def on_epoch_end(self, epoch, logs=None):
        if not self.writer:
            return
        if self._predict is None:
            self._predict = self._outputs()
            self._summary_writer = tf.summary.create_file_writer(str(self.logdir))
        parts: dict = {}
        labels: List[np.ndarray] = []
        for features, targets in self.validation:
            for k, v in self._predict(features).items():
                parts.setdefault(k, []).append(v.numpy())
            labels.append(targets[LABEL].numpy())
        out = {k: np.concatenate(v) for k, v in parts.items()}
        y = np.concatenate(labels).astype(np.float64)
        with self._summary_writer.as_default(step=epoch):
            tf.summary.scalar("epoch_xauc", xauc(y, out["watch_time"].astype(np.float64)))
            if "leaf_prob" in out:
                leaf = out["leaf_prob"]
                depth = out["tree_depth"]
                tf.summary.scalar("epoch_tree_depth", float(depth.mean()))
                tf.summary.scalar("epoch_pruned_trees",
                                  float(out["prune_mask"].any(axis=1).mean()))
                tf.summary.histogram("tree_depth", depth)
                tf.summary.histogram("leaf_prob", leaf[leaf > 0.0])
                tf.summary.histogram("max_leaf_prob", leaf.max(axis=1))
        self._summary_writer.flush()

    def on_train_end(self, logs=None):
        if self._summary_writer is not None:
            self._summary_writer.close()
            self._summary_writer = None


def tensorboard_callbacks(logdir: Path, validation: tf.data.Dataset,
                          writer: bool = True) -> List[tf.keras.callbacks.Callback]:
    """Callbacks that log a ``fit`` to ``logdir`` (see the module docstring);
    ``writer``: whether this process is the one that writes (the chief)."""
    logdir = Path(logdir)
    return [ValidationSummaries(logdir / "validation", validation, writer=writer),
            tf.keras.callbacks.TensorBoard(str(logdir), histogram_freq=0, write_graph=False,
                                           update_freq="epoch", profile_batch=0)]
