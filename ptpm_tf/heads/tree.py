"""The tree head of PTPM and TPM (paper sections 3.2 and 4; DESIGN.md section 2).

One logit per internal node (the classifiers, ``q_n = sigmoid(z_n)`` = P(go right)) and,
with TSL, one logit per non-root internal node (the pruning model, ``pi_n`` = P(prune n)).
Training loss (Eq. 18): ``L_ce`` (UCL-weighted with ``ucl``) + ``w_reg L_reg`` +
``w_var L_var`` + ``w_tree L_tree`` (REINFORCE, self-critical). The pruning logits get
gradient only from ``L_tree``; the classifier logits only from the TPM terms.

TPM is this head with ``tsl=False, ucl=False, leaf_values='midpoint'``.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import pandas as pd
import tensorflow as tf

from ptpm_tf import losses
from ptpm_tf.data.dataset import LABEL
from ptpm_tf.heads.base import Head
from ptpm_tf.tree import TreeGeometry, TreeOps, assign_leaves, fit_global_tree
from ptpm_tf import distribute


class TreeHead(Head):
    """Classifier and pruning heads over a global tree of ``depth`` levels.

    Args:
      depth: levels of the global tree (``2^depth`` leaves).
      leaf_values: ``'mean'`` (node value = mean training label in the node) or
        ``'midpoint'`` (interval midpoint, paper-literal TPM).
      tsl: learn personalised trees by pruning (section 4.1).
      ucl: inverse-propensity weights on the path cross-entropy (section 4.2).
      ucl_max_weight: clip of the inverse propensities (``<= 0``: no clip).
      ucl_self_normalize: divide the weights per node by their batch mean.
      w_reg, w_var, w_tree: weights of ``L_reg``, ``L_var`` and ``L_tree``.
      reward: ``'sample'`` (per-sample decomposition) or ``'batch'`` (paper-literal).
      advantage_norm: divide per-sample advantages by their batch standard deviation
        (the raw ones are tiny on the normalised scale and barely move the pruning head).
      prune_bias_init: initial bias of the pruning logits (negative = start near "prune
        nothing", i.e. near TPM).
      tree_warmup_steps: steps during which ``L_tree`` is off, so that the classifiers are
        trained first as Eq. 6(b) reads.
    """

    loss_names = ("ce", "reg", "var", "tree", "tree_gain", "prune_rate")
    output_names = ("watch_time_global", "variance", "prune_mask", "leaf_prob", "tree_depth")

    def __init__(self, depth: int = 6, leaf_values: str = "mean", tsl: bool = True,
                 ucl: bool = True, ucl_max_weight: float = 10.0,
                 ucl_self_normalize: bool = True, w_reg: float = 1.0, w_var: float = 0.1,
                 w_tree: float = 1.0, reward: str = "sample", advantage_norm: bool = True,
                 prune_bias_init: float = -2.0, tree_warmup_steps: int = 0,
                 seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if reward not in ("sample", "batch"):
            raise ValueError(f"reward must be 'sample' or 'batch', got {reward!r}")
        self.depth, self.leaf_values, self.tsl, self.ucl = depth, leaf_values, tsl, ucl
        self.ucl_max_weight, self.ucl_self_normalize = ucl_max_weight, ucl_self_normalize
        self.w_reg, self.w_var, self.w_tree = w_reg, w_var, w_tree
        self.reward, self.advantage_norm = reward, advantage_norm
        self.prune_bias_init, self.tree_warmup_steps = prune_bias_init, tree_warmup_steps
        self.seed = seed
        self.geometry = g = TreeGeometry(depth)
        self.ops = TreeOps(g)
        self.classifier = tf.keras.layers.Dense(g.n_internal, name="classifier")
        self.pruner = (tf.keras.layers.Dense(
            g.n_internal - 1, name="pruner",
            bias_initializer=tf.keras.initializers.Constant(prune_bias_init),
            kernel_initializer=tf.keras.initializers.RandomNormal(stddev=0.01))
            if tsl else None)
        const = dict(trainable=False, initializer="zeros", dtype=tf.float32)
        self.node_value = self.add_weight(name="node_value", shape=[g.n_nodes], **const)
        self.node_m2 = self.add_weight(name="node_m2", shape=[g.n_nodes], **const)
        self.leaf_bounds = self.add_weight(name="leaf_bounds", shape=[g.n_leaves + 1], **const)
        self.label_scale = self.add_weight(name="label_scale", shape=[],
                                           trainable=False, initializer="ones", dtype=tf.float32)

    # -- constants -------------------------------------------------------------------
    def adapt(self, train: pd.DataFrame) -> Dict[str, np.ndarray]:
        """Fit the global tree on the training labels; return the training targets (their
        exact equal-frequency leaves)."""
        y = train[LABEL].to_numpy(np.float64)
        tree = fit_global_tree(y, self.depth, leaf_values=self.leaf_values, seed=self.seed)
        self.node_value.assign(tree.node_value)
        self.node_m2.assign(tree.node_m2)
        self.leaf_bounds.assign(tree.leaf_bounds)
        self.label_scale.assign(max(float(np.std(y)), 1e-6))
        return {LABEL: y.astype(np.float32), "leaf": tree.train_leaf}

    def targets(self, frame: pd.DataFrame, seed: int = 0) -> Dict[str, np.ndarray]:
        y = frame[LABEL].to_numpy(np.float64)
        leaf = assign_leaves(y, self.leaf_bounds.numpy(), seed=seed)
        return {LABEL: y.astype(np.float32), "leaf": leaf}

    # -- forward ---------------------------------------------------------------------
    def call(self, hidden, training=False):
        out = {"cls_logits": self.classifier(hidden)}
        if self.tsl:
            out["prune_logits"] = self.pruner(hidden)
        return out

    def _global(self, log_reach):
        reach = tf.exp(log_reach)
        mask = self.ops.global_leaf_mask(tf.shape(reach)[0])
        mean, var = self.ops.moments(reach, mask, self.node_value, self.node_m2)
        return reach, mask, mean, var

    def decode(self, outputs, features=None):
        """Predictions with the deterministic personalised tree ``a = 1[pi > 0.5]``."""
        log_reach = self.ops.log_reach(outputs["cls_logits"])
        reach, mask, mean_g, var_g = self._global(log_reach)
        if self.tsl:
            actions = tf.cast(outputs["prune_logits"] > 0.0, tf.float32)
            mask = self.ops.pruned_leaves(actions)
            mean, var = self.ops.moments(reach, mask, self.node_value, self.node_m2)
        else:
            actions = tf.zeros([tf.shape(reach)[0], self.geometry.n_internal - 1])
            mean, var = mean_g, var_g
        return {"watch_time": mean, "watch_time_global": mean_g, "variance": var,
                "prune_mask": tf.cast(actions, tf.int32), "leaf_prob": reach * mask,
                "tree_depth": self.ops.tree_depth(mask)}

    # -- loss ------------------------------------------------------------------------
    def compute_loss(self, outputs, targets, step, training=False):
        """Eq. 18 on one batch. Over several replicas (:mod:`ptpm_tf.distribute`) the parts
        are local means that the model weights into global-batch means, while the UCL
        normaliser, the rewards and the advantage std are global-batch statistics and the
        pruning actions are drawn per replica."""
        y = tf.cast(targets[LABEL], tf.float32)
        leaf = tf.cast(targets["leaf"], tf.int32)
        logits = outputs["cls_logits"]
        log_reach = self.ops.log_reach(logits)
        reach, _, mean_g, var_g = self._global(log_reach)
        on_path = tf.gather(self.ops.on_path, leaf)
        went_right = tf.gather(self.ops.went_right, leaf)
        weights = (losses.ucl_weights(log_reach[:, : self.geometry.n_internal], on_path,
                                      self.ucl_max_weight, self.ucl_self_normalize)
                   if self.ucl else None)
        scale = self.label_scale
        parts = {
            "ce": tf.reduce_mean(losses.path_cross_entropy(logits, on_path, went_right, weights)),
            "reg": tf.reduce_mean(tf.square((mean_g - y) / scale)),
            "var": tf.reduce_mean(var_g) / tf.square(scale),
        }
        total = parts["ce"] + self.w_reg * parts["reg"] + self.w_var * parts["var"]
        if self.tsl:
            tree_loss, gain, rate = self._tree_loss(outputs["prune_logits"], reach, mean_g, y,
                                                    training)
            warm = tf.cast(tf.cast(step, tf.int64) >= self.tree_warmup_steps, tf.float32)
            total += warm * self.w_tree * tree_loss
            parts.update(tree=tree_loss, tree_gain=gain, prune_rate=rate)
        else:
            zero = tf.constant(0.0)
            parts.update(tree=zero, tree_gain=zero, prune_rate=zero)
        return total, parts

    def _tree_loss(self, prune_logits, reach, mean_g, y, training):
        """``L_tree`` (Eq. 11-12) on trees sampled from ``Bernoulli(pi)`` in training (the
        deterministic tree in evaluation, where only the gain is meaningful). Returns
        (surrogate loss, mean reward gain of the pruned over the global tree, mean pi)."""
        pi = tf.sigmoid(prune_logits)
        if training:
            actions = tf.cast(distribute.uniform(tf.shape(pi)) < tf.stop_gradient(pi), tf.float32)
        else:
            actions = tf.cast(prune_logits > 0.0, tf.float32)
        mask = self.ops.pruned_leaves(actions)
        mean_t, _ = self.ops.moments(tf.stop_gradient(reach), mask, self.node_value, self.node_m2)
        mean_g = tf.stop_gradient(mean_g)
        if self.reward == "batch":
            adv = losses.batch_advantage(y, mean_t, mean_g, self.label_scale)
            gain = adv
        else:
            adv = losses.sample_advantage(y, mean_t, mean_g, self.label_scale)
            gain = tf.reduce_mean(adv)
            if self.advantage_norm:
                adv = adv / (distribute.global_std(adv) + 1e-8)
        live = self.ops.live_internal(actions)
        loss = losses.reinforce_loss(prune_logits, actions, live, adv)
        return loss, gain, tf.reduce_mean(pi)

    def get_config(self):
        return {**super().get_config(), "depth": self.depth, "leaf_values": self.leaf_values,
                "tsl": self.tsl, "ucl": self.ucl, "ucl_max_weight": self.ucl_max_weight,
                "ucl_self_normalize": self.ucl_self_normalize, "w_reg": self.w_reg,
                "w_var": self.w_var, "w_tree": self.w_tree, "reward": self.reward,
                "advantage_norm": self.advantage_norm, "prune_bias_init": self.prune_bias_init,
                "tree_warmup_steps": self.tree_warmup_steps, "seed": self.seed}
