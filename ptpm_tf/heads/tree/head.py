"""The tree head of PTPM and TPM (paper sections 3.2 and 4; docs/design.md section 2).

One logit per internal node (the classifiers, ``q_n = sigmoid(z_n)`` = P(go right)) and,
with TSL, one logit per non-root internal node (the pruning model, ``pi_n`` = P(prune n)).
Training loss (Eq. 18): ``L_ce`` (UCL-weighted with ``ucl``) + ``w_reg L_reg`` +
``w_var L_var`` + ``w_tree L_tree`` (REINFORCE, self-critical). The pruning logits get
gradient only from ``L_tree``; the classifier logits only from the TPM terms.

TPM is this head with ``tsl=False, ucl=False, leaf_values='midpoint'``.

**Label space.** ``label_space='seconds'`` is the paper's tree over the watch time ``w``;
``'ratio'`` discretises the watch ratio ``r = w / d`` (``d`` the item's duration), whose
atom at ``r = 1`` (complete plays) gets zero-width leaves of value exactly 1
(:func:`ptpm_tf.heads.tree.geometry.leaf_cuts`). Everything the head returns stays in
seconds per row: each decoded quantity of ``r`` is multiplied back by ``d`` (Eq. 2 in
ratio space times ``d`` is the mean in seconds; quantiles likewise; the variance by
``d^2``). Rows whose
duration is missing, NaN or ``<= 0`` use the training median duration
(``duration_fallback``) as ``d``. ``L_reg``, ``L_var`` and the TSL reward are computed in
seconds (the paper's regression of the watch time), on the normalised scale
``label_scale`` = std of the training watch times.

Decoding (issue 7, :mod:`ptpm_tf.heads.tree.decoding`): besides its mean (Eq. 2), the tree's leaf
distribution is decoded into a continuous distribution in seconds (a pruned leaf spread
over its global leaves by training mass, interpolated inside a leaf through the training
labels' within-leaf quantiles ``leaf_knots``). ``decode='median'`` serves its median as
``watch_time``; the serving outputs always include the mean and the median, the quantiles
at ``quantile_levels`` and, when the features carry ``duration``, ``p_complete``. In ratio
space ``p_complete`` is the tree's own mass at ``r >= 1``; in seconds space it is
``P(W > duration)`` recalibrated on the validation split by the monotone map
``completion_map`` (a seconds leaf smears each item's completion spike, so the raw value
is biased low, see :mod:`ptpm_tf.heads.tree.completion`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from ptpm_tf import distribute
from ptpm_tf import metrics as M
from ptpm_tf.data.dataset import DURATION, LABEL
from ptpm_tf.heads.base import Head
from ptpm_tf.heads.tree import decoding, losses
from ptpm_tf.heads.tree.config import DECODERS, TreeConfig
from ptpm_tf.heads.tree.geometry import TreeGeometry, TreeOps, assign_leaves, fit_global_tree
from ptpm_tf.settings import ConfigError


#: decoded outputs in the tree's label unit, turned into seconds per row in ratio space
_SECONDS_OUTPUTS = ("watch_time", "watch_time_global", "variance", "watch_time_mean",
                    "watch_time_median", "quantiles", "watch_time_global_mean",
                    "watch_time_global_median")


class TreeHead(Head):
    """Classifier and pruning heads over a global tree of ``depth`` levels.

    Settings (:class:`~ptpm_tf.heads.tree.config.TreeConfig`), in more detail:

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
      decode: what ``watch_time`` (and ``watch_time_global``) is: ``'mean'`` of the leaf
        distribution (Eq. 2) or its ``'median'`` (minimises the expected absolute error).
      reward_decode: which decoder of the pruned and the global tree the TSL reward scores
        (``'mean'`` as in the paper, or ``'median'``).
      reward_error: the error term of the reward ``R = XAUC - error``: ``'squared'`` (the
        paper's MSE) or ``'absolute'`` (MAE, the loss the median minimises).
      quantile_levels: the levels of the ``quantiles`` output (fixed per model; default
        ``QUANTILE_LEVELS`` = 0.1, 0.25, 0.5, 0.75, 0.9).
      leaf_knots: within-leaf interpolation pieces ``K``; the constant ``leaf_knots``
        [L*K+1] holds the training labels' within-leaf ``j/K`` quantiles (knot ``kK + j``
        of leaf ``k``; ``kK`` is the leaf's lower bound), see :mod:`ptpm_tf.heads.tree.decoding`.
      pruner_input: what the pruning model ``h_phi(T_g, x)`` (Eq. 10) reads: ``'features'``
        (the tower's vector for ``x``, as Fig. 5 draws it) or ``'features+tree'`` (also the
        global tree's classifier probabilities for this request, stop-gradient, so it can
        see where the classifiers are unsure).
      label_space: ``'seconds'`` (the tree splits the watch time, as the paper) or
        ``'ratio'`` (it splits watch time / duration; see the module docstring).

    Outputs of :meth:`decode`: ``watch_time`` (the chosen decoder on the personalised tree),
    ``watch_time_global`` (the same decoder on the global tree), ``variance`` (``Var_T``),
    ``prune_mask``, ``leaf_prob`` ([B, N], node probabilities of the personalised tree's
    leaves), ``tree_depth``; with ``distribution``: ``watch_time_mean`` (``E_T``),
    ``watch_time_median``, ``quantiles`` ([B, Q]) and, if the features hold ``duration``,
    ``p_complete`` = P(watch time > duration) through ``completion_map`` (fitted by
    :meth:`calibrate` in seconds space; the identity before).
    """

    loss_names = ("ce", "reg", "var", "tree", "tree_gain", "prune_rate")
    output_names = ("watch_time_global", "variance", "prune_mask", "leaf_prob", "tree_depth")
    Config = TreeConfig
    distribution_output_names = ("watch_time_mean", "watch_time_median", "quantiles",
                                 "p_complete")
    decoders = DECODERS
    distributional = True

    def __init__(self, config: Optional[TreeConfig] = None, seed: int = 0, **kwargs):
        super().__init__(config, seed, **kwargs)
        c = self.config
        self.label_space = c.label_space
        self.ratio = c.label_space == "ratio"
        self.pruner_input = c.pruner_input
        self.decoder, self.reward_decoder = c.decode, c.reward_decode
        self.reward_error = c.reward_error
        self.quantile_levels, self.n_knots = c.quantile_levels, c.leaf_knots
        levels = c.quantile_levels
        # levels computed in one pass: the served ones, then the median if not among them
        self._levels = levels if 0.5 in levels else levels + (0.5,)
        self._median_col = self._levels.index(0.5)
        depth, tsl, prune_bias_init = c.depth, c.tsl, c.prune_bias_init
        self.depth, self.leaf_values, self.tsl, self.ucl = depth, c.leaf_values, tsl, c.ucl
        self.ucl_max_weight, self.ucl_self_normalize = c.ucl_max_weight, c.ucl_self_normalize
        self.w_reg, self.w_var, self.w_tree = c.w_reg, c.w_var, c.w_tree
        self.reward, self.advantage_norm = c.reward, c.advantage_norm
        self.reward_partners = c.reward_partners
        self.prune_bias_init, self.tree_warmup_steps = prune_bias_init, c.tree_warmup_steps
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
        self.leaf_knots = self.add_weight(name="leaf_knots",
                                          shape=[g.n_leaves * self.n_knots + 1], **const)
        self.completion_map = self.add_weight(
            name="completion_map", shape=[decoding.COMPLETION_GRID + 1], trainable=False,
            dtype=tf.float32, initializer=tf.keras.initializers.Constant(
                np.linspace(0.0, 1.0, decoding.COMPLETION_GRID + 1)))  # identity until fit
        # [N, L] spreads a pruned leaf's probability over its global leaves by training
        # mass (uniform for equal-frequency leaves; fitted by adapt)
        self.spread = self.add_weight(
            name="leaf_spread", shape=[g.n_nodes, g.n_leaves], trainable=False,
            dtype=tf.float32,
            initializer=tf.keras.initializers.Constant(decoding.spread_matrix(g)))
        # ratio space: each global leaf's share of its mass at r >= 1 (p_complete)
        self.completion_share = self.add_weight(
            name="completion_share", shape=[g.n_leaves], **const)
        # ratio space: seconds per unit of r where a row's duration is unknown
        self.duration_fallback = self.add_weight(
            name="duration_fallback", shape=[], trainable=False, initializer="ones",
            dtype=tf.float32)
        # Decoding a tree is one matmul of its leaf probabilities by a map derived from the
        # constants above (:meth:`_refresh_decode_maps`): [N, L+4] for a personalised tree
        # (the spread folded into the cumulative masses), [L, L+4] for the global tree's
        # leaves. Columns: the cumulative masses with a leading 0 (L+1), Eq. 2's mean, the
        # second moment, the mass at r >= 1.
        self.tree_decode_map = self.add_weight(
            name="tree_decode_map", shape=[g.n_nodes, g.n_leaves + 4], **const)
        self.global_decode_map = self.add_weight(
            name="global_decode_map", shape=[g.n_leaves, g.n_leaves + 4], **const)
        self._refresh_decode_maps()

    @classmethod
    def settings_for(cls, config, dataset, numeric, explicit):
        """A ratio tree needs the duration: on a dataset without one (CIKM16) the ratio
        space a preset chose falls back to seconds with a notice; one asked for
        explicitly is an error."""
        if config.label_space != "ratio" or DURATION in numeric:
            return config, None
        if "label_space" in explicit:
            raise ConfigError(f"--label-space ratio needs a duration column, and {dataset} "
                              f"has none; use --label-space seconds")
        return (dataclasses.replace(config, label_space="seconds"),
                f"{dataset} has no duration, so the tree splits seconds "
                f"(label_space=seconds)")

    # -- constants -------------------------------------------------------------------
    def adapt(self, train: pd.DataFrame) -> Dict[str, np.ndarray]:
        """Fit the global tree on the training labels (in the head's label space); return
        the training targets (their exact leaves)."""
        y = train[LABEL].to_numpy(np.float64)
        if self.ratio:
            if DURATION not in train:
                raise ValueError("label_space='ratio' needs a duration column; this dataset "
                                 "has none (use label_space='seconds')")
            d = train[DURATION].to_numpy(np.float64)
            known = np.isfinite(d) & (d > 0)
            if not known.any():
                raise ValueError("label_space='ratio' needs durations, but no training row "
                                 "has a duration > 0 (use label_space='seconds')")
            self.duration_fallback.assign(float(np.median(d[known])))
            d = self._unit_np(d)
            label = y / d
        else:
            label = y
        tree = fit_global_tree(label, self.depth, leaf_values=self.leaf_values,
                               seed=self.seed, atoms=self.ratio)
        self.node_value.assign(tree.node_value)
        self.node_m2.assign(tree.node_m2)
        self.leaf_bounds.assign(tree.leaf_bounds)
        self.leaf_knots.assign(decoding.knot_grid(decoding.fit_leaf_knots(
            label, tree.train_leaf, tree.leaf_bounds, self.n_knots)))
        self.spread.assign(decoding.spread_matrix(self.geometry, tree.leaf_mass))
        if self.ratio:
            self.completion_share.assign(decoding.share_at_or_above(
                self.leaf_knots.numpy(), 1.0, self.geometry.n_leaves))
        self.label_scale.assign(max(float(np.std(y)), 1e-6))
        self._refresh_decode_maps()
        out = {LABEL: y.astype(np.float32), "leaf": tree.train_leaf}
        if self.ratio:
            out[DURATION] = d.astype(np.float32)
        return out

    def _refresh_decode_maps(self) -> None:
        """Derive ``tree_decode_map`` and ``global_decode_map`` from ``spread``,
        ``node_value``, ``node_m2`` and ``completion_share`` (after any of them changes:
        :meth:`adapt`, :meth:`after_restore`). Held as weights so that serving reads
        them instead of multiplying the constants per request."""
        leaves = slice(self.geometry.n_internal, None)
        value, m2 = self.node_value.numpy(), self.node_m2.numpy()
        spread, share = self.spread.numpy(), self.completion_share.numpy()
        cumulative = decoding.cumulative_matrix(self.geometry.n_leaves)
        self.tree_decode_map.assign(np.column_stack(
            [spread @ cumulative, value, m2, spread @ share]))
        self.global_decode_map.assign(np.column_stack(
            [cumulative, value[leaves], m2[leaves], share]))

    def decode_columns(self, reach, leaf_prob=None):
        """(cumulative masses [B, L+1], mean [B], second moment [B], mass at r >= 1 [B])
        of the personalised tree whose leaf probabilities are ``leaf_prob`` [B, N] (reach
        times its leaf indicator) or, without it, of the global tree (the reach [B, N] of
        its leaves), in the tree's label space: one matmul by the decode map."""
        n_leaves = self.geometry.n_leaves
        if leaf_prob is None:
            cols = tf.matmul(reach[:, self.geometry.n_internal:], self.global_decode_map)
        else:
            cols = tf.matmul(leaf_prob, self.tree_decode_map)
        cum, mean, m2, share = tf.split(cols, [n_leaves + 1, 1, 1, 1], axis=1)
        return cum, mean[:, 0], m2[:, 0], share[:, 0]

    def _unit_np(self, duration: np.ndarray) -> np.ndarray:
        """Seconds per unit of the tree's label in ratio space (NumPy): the duration, or
        ``duration_fallback`` where it is missing, NaN or ``<= 0``."""
        d = np.asarray(duration, np.float64)
        ok = np.isfinite(d) & (d > 0)
        return np.where(ok, d, float(self.duration_fallback.numpy()))

    def _unit(self, features) -> tf.Tensor | None:
        """[B] seconds per unit of the tree's label: the row's duration (the fallback where
        it is unknown) in ratio space, None in seconds space."""
        if not self.ratio:
            return None
        d = tf.cast(features[DURATION], tf.float32)
        return tf.where(tf.math.is_finite(d) & (d > 0.0), d, self.duration_fallback)

    def after_restore(self) -> None:
        """Called once weights are restored: a checkpoint from before ``leaf_knots``
        existed leaves them all zero, so fall back to the minimal interpolation (linear
        between each leaf's bounds) rather than decode every quantile as 0."""
        bounds = self.leaf_bounds.numpy()
        if not np.any(self.leaf_knots.numpy()) and np.any(bounds):
            import warnings
            warnings.warn("checkpoint has no leaf_knots (trained before distributional "
                          "decoding); interpolating linearly between the leaf bounds")
            self.leaf_knots.assign(decoding.knot_grid(
                decoding.linear_leaf_knots(bounds, self.n_knots)))
        self._refresh_decode_maps()  # a checkpoint from before the maps existed

    def calibrate(self, model, validation: pd.DataFrame) -> Dict[str, float]:
        """When the features carry a duration: in seconds space, fit ``completion_map``
        (the recalibration of ``p_complete``,
        :func:`ptpm_tf.heads.tree.completion.fit_completion_map`) on the validation split; in ratio
        space ``p_complete`` is the tree's own mass at ``r >= 1`` and nothing is fitted.
        Returns the validation completion rate and the mean served probability (and, in
        seconds space, the mean before recalibration)."""
        if DURATION not in model.encoder.numeric or DURATION not in validation:
            return {}
        from ptpm_tf.heads.tree import completion
        raw = completion.raw_completion(model, validation)
        d = validation[DURATION].to_numpy(np.float64)
        done = np.where(np.isfinite(d), validation[LABEL].to_numpy(np.float64) >= d, np.nan)
        ok = np.isfinite(raw) & np.isfinite(done)
        if self.ratio:
            return ({"completion_rate": float(done[ok].mean()),
                     "p_complete_mean": float(raw[ok].mean())} if ok.any() else {})
        values = completion.fit_completion_map(raw, done)
        self.completion_map.assign(values)
        if not ok.any():
            return {}
        served = decoding.monotone_map(tf.constant(raw[ok], tf.float32), self.completion_map)
        return {"completion_rate": float(done[ok].mean()),
                "p_complete_raw_mean": float(raw[ok].mean()),
                "p_complete_mean": float(tf.reduce_mean(served))}

    def targets(self, frame: pd.DataFrame, seed: int = 0) -> Dict[str, np.ndarray]:
        y = frame[LABEL].to_numpy(np.float64)
        if not self.ratio:
            return {LABEL: y.astype(np.float32),
                    "leaf": assign_leaves(y, self.leaf_bounds.numpy(), seed=seed)}
        d = self._unit_np(frame[DURATION].to_numpy(np.float64))
        return {LABEL: y.astype(np.float32), DURATION: d.astype(np.float32),
                "leaf": assign_leaves(y / d, self.leaf_bounds.numpy(), seed=seed)}

    # -- forward ---------------------------------------------------------------------
    def call(self, hidden, training=False):
        out = {"cls_logits": self.classifier(hidden)}
        if self.tsl:
            if self.pruner_input == "features+tree":
                hidden = tf.concat(
                    [hidden, tf.stop_gradient(tf.sigmoid(out["cls_logits"]))], axis=1)
            out["prune_logits"] = self.pruner(hidden)
        return out

    def decode(self, outputs, features=None, distribution=False):
        """Predictions with the deterministic personalised tree ``a = 1[pi > 0.5]`` (the
        outputs are listed in the class docstring)."""
        return self._decode(outputs, features, distribution, diagnostics=False)

    def point_prediction(self, outputs, features=None):
        """``watch_time`` of :meth:`decode` without its other outputs (the training step's
        MAE needs only this)."""
        reach = tf.exp(self.ops.log_reach(outputs["cls_logits"]))
        cum, mean, _, _ = self.decode_columns(reach, self._leaf_prob(outputs, reach))
        if self.decoder == "median":
            return self._seconds(
                decoding.quantiles_from_cumulative(cum, self.leaf_knots, (0.5,))[:, 0], features)
        return self._seconds(mean, features)

    def _leaf_prob(self, outputs, reach):
        """[B, N] leaf probabilities of the deterministic personalised tree (None for
        TPM, whose tree is the global one)."""
        if not self.tsl:
            return None
        return reach * self.ops.pruned_leaves(
            tf.cast(outputs["prune_logits"] > 0.0, tf.float32))

    def _seconds(self, value, features, power: int = 1):
        """A decoded quantity of the tree's label ([B] or [B, Q]) in seconds (``power`` 2
        for a variance): times the row's duration in ratio space, unchanged otherwise."""
        unit = self._unit(features)
        if unit is None:
            return value
        if power == 2:
            unit = tf.square(unit)
        return value * (unit if value.shape.rank == 1 else unit[:, None])

    def evaluation_outputs(self, outputs, features=None):
        """:meth:`decode` with every distributional output, plus both decoders of the
        global tree (``watch_time_global_mean``, ``watch_time_global_median``)."""
        return self._decode(outputs, features, True, diagnostics=True)

    def leaf_distributions(self, outputs):
        """([B, L], [B, L]): the global leaves' probabilities under the personalised tree
        (its leaves' probabilities spread by training mass, :mod:`ptpm_tf.heads.tree.decoding`) and
        under the global tree, over the tree's label space."""
        reach = tf.exp(self.ops.log_reach(outputs["cls_logits"]))
        global_p = reach[:, self.geometry.n_internal:]
        if not self.tsl:
            return global_p, global_p
        mask = self.ops.pruned_leaves(tf.cast(outputs["prune_logits"] > 0.0, tf.float32))
        return decoding.leaf_distribution(reach * mask, self.spread), global_p

    def quantile(self, outputs, levels, global_tree: bool = False, features=None):
        """[B, Q] quantiles in seconds at any ``levels`` in (0, 1) of the personalised (or,
        with ``global_tree``, the global) tree's distribution (``features`` carry the
        duration in ratio space)."""
        reach = tf.exp(self.ops.log_reach(outputs["cls_logits"]))
        cum = self.decode_columns(
            reach, None if global_tree else self._leaf_prob(outputs, reach))[0]
        return self._seconds(decoding.quantiles_from_cumulative(cum, self.leaf_knots, levels),
                             features)

    def completion(self, outputs, features, recalibrated: bool = True):
        """[B] ``p_complete`` of the personalised tree: its mass at ``r >= 1`` in ratio
        space; in seconds space ``P(W > duration)``, through ``completion_map`` unless
        ``recalibrated`` is False."""
        tree_p, _ = self.leaf_distributions(outputs)
        return self._completion(tree_p, features, recalibrated)

    def _completion(self, tree_p, features, recalibrated=True):
        if self.ratio:
            return tf.linalg.matvec(tree_p, self.completion_share)
        raw = decoding.survival(tree_p, self.leaf_knots, features[DURATION], normalized=True)
        return decoding.monotone_map(raw, self.completion_map) if recalibrated else raw

    def _decode(self, outputs, features, distribution, diagnostics):
        reach = tf.exp(self.ops.log_reach(outputs["cls_logits"]))
        cum_g, mean_g, m2_g, share_g = self.decode_columns(reach)
        var_g = tf.nn.relu(m2_g - tf.square(mean_g))
        if self.tsl:
            actions = tf.cast(outputs["prune_logits"] > 0.0, tf.float32)
            mask = self.ops.pruned_leaves(actions)
            leaf_prob = reach * mask
            cum, mean, m2, share = self.decode_columns(reach, leaf_prob)
            var = tf.nn.relu(m2 - tf.square(mean))
            depth = self.ops.tree_depth(mask)
        else:
            actions = tf.zeros([tf.shape(reach)[0], self.geometry.n_internal - 1])
            leaf_prob = self.ops.global_leaf_prob(reach)
            cum, mean, var, share = cum_g, mean_g, var_g, share_g
            depth = tf.fill(tf.shape(mean), float(self.depth))
        out = {"watch_time": mean, "watch_time_global": mean_g, "variance": var,
               "prune_mask": tf.cast(actions, tf.int32), "leaf_prob": leaf_prob,
               "tree_depth": depth}
        full = distribution or diagnostics
        need_global = self.decoder == "median" or diagnostics
        if full or need_global:
            levels = self._levels if full else (0.5,)
            median_col = self._median_col if full else 0
            knots = self.leaf_knots
            qs = decoding.quantiles_from_cumulative(cum, knots, levels)
            if not self.tsl:  # the personalised tree is the global one
                median_g = qs[:, median_col]
            elif need_global:
                # a pass of its own rather than one over both trees' rows concatenated:
                # the runtime can run the two side by side and no [2B, L+1] copy is made
                # (faster from tens of candidates on, slower for one; BENCHMARKS.md,
                # "Serving latency")
                median_g = decoding.quantiles_from_cumulative(cum_g, knots, (0.5,))[:, 0]
            median = qs[:, median_col]
            if full:
                served = len(self.quantile_levels)
                out.update(watch_time_mean=mean, watch_time_median=median,
                           quantiles=qs if served == len(levels) else qs[:, :served])
            if diagnostics:
                out.update(watch_time_global_mean=mean_g, watch_time_global_median=median_g)
            if self.decoder == "median":
                out.update(watch_time=median, watch_time_global=median_g)
        for key in _SECONDS_OUTPUTS:
            if key in out:
                out[key] = self._seconds(out[key], features, 2 if key == "variance" else 1)
        if full and features is not None and DURATION in features:
            if self.ratio:
                out["p_complete"] = share
            else:
                tree_p = (decoding.leaf_distribution(leaf_prob, self.spread) if self.tsl
                          else reach[:, self.geometry.n_internal:])
                out["p_complete"] = self._completion(tree_p, features)
        return out

    # -- loss ------------------------------------------------------------------------
    def compute_loss(self, outputs, targets, step, training=False):
        """Eq. 18 on one batch. ``L_reg`` and ``L_var`` are in seconds on the normalised
        scale (``label_scale``): the squared error of the global tree's mean and its
        variance over the leaf categories, ``sum_l P(l) v(l)^2 - E_g^2`` (Eq. 3 over the
        leaves' values; the served ``variance`` also counts the spread inside each leaf,
        ``m2``, which is linear in the leaf probabilities and would push mass off wide
        leaves if it were penalised).

        The shared tower receives gradient from every term: from ``L_ce``, ``L_reg`` and
        ``L_var`` through the classifier logits, and from ``L_tree`` through the pruning
        logits. Over several replicas (:mod:`ptpm_tf.distribute`) the parts are local
        means that the model weights into global-batch means, while the UCL normaliser,
        the rewards and the advantage std are global-batch statistics and the pruning
        actions are drawn per replica."""
        y = tf.cast(targets[LABEL], tf.float32)
        leaf = tf.cast(targets["leaf"], tf.int32)
        unit = tf.cast(targets[DURATION], tf.float32) if self.ratio else None
        logits = outputs["cls_logits"]
        log_reach = self.ops.log_reach(logits)
        reach = tf.exp(log_reach)
        global_leaf_prob = self.ops.global_leaf_prob(reach)
        mean_g, var_g = self.ops.moments(global_leaf_prob, self.node_value,
                                         tf.square(self.node_value))
        if unit is not None:
            mean_g, var_g = mean_g * unit, var_g * tf.square(unit)
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
                                                    training, unit)
            warm = tf.cast(tf.cast(step, tf.int64) >= self.tree_warmup_steps, tf.float32)
            total += warm * self.w_tree * tree_loss
            parts.update(tree=tree_loss, tree_gain=gain, prune_rate=rate)
        else:
            zero = tf.constant(0.0)
            parts.update(tree=zero, tree_gain=zero, prune_rate=zero)
        return total, parts

    def _tree_loss(self, prune_logits, reach, mean_g, y, training, unit=None):
        """``L_tree`` (Eq. 11-12) on trees sampled from ``Bernoulli(pi)`` in training (the
        deterministic tree in evaluation, where only the gain is meaningful). ``a_n = 1``
        prunes node ``n``: it stays in the personalised tree as a leaf and its
        descendants are dropped. Returns (surrogate loss, mean reward gain of the pruned
        over the global tree, mean pi). The reward scores the ``reward_decode`` decoder
        of both trees, in seconds: ``mean_g`` is the global tree's mean in seconds and
        ``unit`` the rows' durations in ratio space (None in seconds space)."""
        pi = tf.sigmoid(prune_logits)
        if training:
            actions = tf.cast(distribute.uniform(tf.shape(pi)) < tf.stop_gradient(pi), tf.float32)
        else:
            actions = tf.cast(prune_logits > 0.0, tf.float32)
        mask = self.ops.pruned_leaves(actions)
        reach = tf.stop_gradient(reach)
        if self.reward_decoder == "median":
            both = decoding.quantiles_from_cumulative(
                tf.concat([self.decode_columns(reach, reach * mask)[0],
                           self.decode_columns(reach)[0]], 0),
                self.leaf_knots, [0.5])
            pred_t, pred_g = tf.split(both[:, 0], 2)
            if unit is not None:
                pred_t, pred_g = pred_t * unit, pred_g * unit
        else:
            pred_t = tf.linalg.matvec(reach * mask, self.node_value)
            if unit is not None:
                pred_t = pred_t * unit
            pred_g = tf.stop_gradient(mean_g)
        if self.reward == "batch":
            adv = losses.batch_advantage(y, pred_t, pred_g, self.label_scale,
                                         self.reward_error)
            gain = adv
        else:
            adv = losses.sample_advantage(y, pred_t, pred_g, self.label_scale,
                                          self.reward_error, self.reward_partners)
            gain = tf.reduce_mean(adv)
            if self.advantage_norm:
                adv = adv / (distribute.global_std(adv) + 1e-8)
        live = self.ops.live_internal(actions)
        loss = losses.reinforce_loss(prune_logits, actions, live, adv)
        return loss, gain, tf.reduce_mean(pi)

    # -- evaluation and export ---------------------------------------------------------
    def per_row(self, pred):
        """Besides the ``watch_time*`` values: the tree depth, whether any node is pruned,
        and the expected depth of the leaf the request lands in."""
        out = super().per_row(pred)
        out["tree_depth"] = pred["tree_depth"]
        out["pruned"] = pred["prune_mask"].any(axis=1)
        out["path_depth"] = (pred["leaf_prob"] * self.geometry.node_depth).sum(1)
        return out

    def diagnostic_inputs(self, pred, labels: pd.DataFrame):
        """The node classifiers' logits and each row's true leaf."""
        return {"cls_logits": pred["cls_logits"], "leaf": self.targets(labels)["leaf"]}

    def evaluation_metrics(self, pred, y, users, diagnostics=None) -> Dict[str, Any]:
        """The served decoder; the learned depth, the share of requests with a pruned
        node and the expected leaf depth (the deepest leaf hides pruning elsewhere); the
        global tree's MAE / XAUC; every decoder of the same trained tree; with
        ``diagnostics``, the leaf prior/posterior ratio (Fig. 7) and per-node AUC."""
        out: Dict[str, Any] = {
            "decode": self.decoder, "decoders": list(self.decoders),
            "avg_tree_depth": float(pred["tree_depth"].mean()),
            "pruned_share": float(pred["pruned"].mean()),
            "avg_path_depth": float(pred["path_depth"].mean())}
        p_g = pred["watch_time_global"].astype(np.float64)
        out["mae_global_tree"] = M.mae(y, p_g)
        out["xauc_global_tree"] = M.xauc(y, p_g)
        for dec in DECODERS:
            p_t = pred[f"watch_time_{dec}"].astype(np.float64)
            p_gt = pred[f"watch_time_global_{dec}"].astype(np.float64)
            out.update({f"mae_{dec}": M.mae(y, p_t), f"rmse_{dec}": M.rmse(y, p_t),
                        f"xauc_{dec}": M.xauc(y, p_t),
                        f"user_xauc_{dec}": M.user_xauc(y, p_t, users),
                        f"mae_global_tree_{dec}": M.mae(y, p_gt),
                        f"xauc_global_tree_{dec}": M.xauc(y, p_gt)})
        if diagnostics is not None:
            logits, leaf = diagnostics["cls_logits"], diagnostics["leaf"]
            reach = np.exp(self.ops.log_reach(tf.constant(logits)).numpy())
            leaf_prob = reach[:, self.geometry.n_internal:]
            out["leaf_prior_posterior_ratio"] = M.leaf_prior_posterior_ratio(
                leaf_prob, leaf).tolist()
            node_auc = M.node_auc(1.0 / (1.0 + np.exp(-logits)), leaf, self.depth)
            out["node_auc"] = node_auc.tolist()
            # NaN (null in metrics.json) when no node has both kinds of label, as on a
            # tiny split: without the nanmean's "Mean of empty slice" warning
            defined = node_auc[np.isfinite(node_auc)]
            out["mean_node_auc"] = float(defined.mean()) if defined.size else float("nan")
        return out

    def model_info(self) -> Dict[str, Any]:
        """``tree``: the depth, leaf label bounds and node values (what
        :func:`~ptpm_tf.heads.tree.describe.describe_tree` needs to print a request's tree
        in seconds), the label space and the decoding constants."""
        tree = {"depth": int(self.depth),
                "leaf_bounds": [float(x) for x in self.leaf_bounds.numpy()],
                "node_value": [float(x) for x in self.node_value.numpy()],
                "tsl": bool(self.tsl), "label_space": self.label_space,
                "decode": self.decoder, "quantile_levels": list(self.quantile_levels),
                "leaf_knots": int(self.n_knots)}
        if self.ratio:
            tree["duration_fallback"] = float(self.duration_fallback.numpy())
        return {"tree": tree}
