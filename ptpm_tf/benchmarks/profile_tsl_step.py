"""Where PTPM's training step spends its time, against TPM's (issue 14).

Two measurements on the same simulator batches (batch 1024, depth 6), each repeated with
the variants interleaved and reported as medians, since the machine is shared:

1. **Whole steps** (forward, backward, Adam update) of TPM, PTPM, and PTPM with one part
   taken out: ``no-reward`` (the per-sample reward replaced by its error term only, so the
   pair comparisons are gone), ``no-ucl`` and ``no-tsl``; and ``exact-reward``, the
   reward's XAUC share counted over the whole batch instead of 32 sampled partners. The
   differences are what each part costs inside the step.
2. **Parts alone** (forward only, one ``tf.function`` each, on the trained model's outputs
   for one batch): the per-sample reward (from the head's partners, and exact), the
   sampled tree (actions, pruned leaves and the decoded prediction the reward scores: the
   mean, or the median with ``--preset best``), the UCL weights with the path
   cross-entropy, and the REINFORCE surrogate; then how noisy the sampled reward is on
   that batch (:func:`reward_spread`).

    python -m ptpm_tf.benchmarks.profile_tsl_step --preset paper
    python -m ptpm_tf.benchmarks.profile_tsl_step --preset best
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import tensorflow as tf

import ptpm_tf  # noqa: F401
from ptpm_tf import distribute
from ptpm_tf.data.dataset import DURATION, LABEL
from ptpm_tf.data.pipeline import make_tf_dataset
from ptpm_tf.config import DataConfig, ExperimentConfig
from ptpm_tf.data.registry import load_and_split
from ptpm_tf.features import FeatureEncoder
from ptpm_tf.heads import MODELS, ModelSpec, TreeHead
from ptpm_tf.heads.tree import decoding, losses
from ptpm_tf.heads.tree.config import TreeConfig
from ptpm_tf.training import build_model


def _error_reward(y, pred_tree, pred_global, scale, error):
    """The per-sample reward's error term alone: minus the change of each sample's error."""
    return -(losses._error(pred_tree, y, scale, error)
             - losses._error(pred_global, y, scale, error))


class _NoPairsHead(TreeHead):
    """PTPM whose per-sample reward keeps only its error term (no pair comparisons)."""

    def _tree_loss(self, *args, **kwargs):
        exact = losses.sample_advantage

        def error_only(y, pred_tree, pred_global, scale, error="squared", partners=0):
            return _error_reward(y, pred_tree, pred_global, scale, error)
        losses.sample_advantage = error_only  # only while this step is traced
        try:
            return super()._tree_loss(*args, **kwargs)
        finally:
            losses.sample_advantage = exact


VARIANTS = {"tpm": ("tpm", {}), "ptpm": ("ptpm", {}),
            "ptpm-no-reward": ("ptpm-no-reward", {}),
            "ptpm-no-ucl": ("ptpm", {"ucl": False}), "ptpm-no-tsl": ("ptpm", {"tsl": False}),
            "ptpm-exact-reward": ("ptpm", {"reward_partners": 0})}


def _median_ms(fn, calls):
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def whole_steps(args, encoder, features, targets_of):
    models = {}
    for name, (model_name, overrides) in VARIANTS.items():
        tf.keras.utils.set_random_seed(0)
        config = ExperimentConfig.from_flat(model=model_name, preset=args.preset,
                                            head=overrides, depth=args.depth)
        model = build_model(config, encoder)
        targets = targets_of(model)
        ds = make_tf_dataset(features, targets, batch_size=args.batch_size).take(
            args.batches).cache().repeat()
        model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
        step, it = model.make_train_function(), iter(ds)
        for _ in range(args.batches):  # trace, fill the cache, warm up
            step(it)
        models[name] = (model, lambda step=step, it=it: step(it))
    ms = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, (_, run) in models.items():
            ms[name].append(_median_ms(run, args.calls))
    return {name: statistics.median(v) for name, v in ms.items()}, models


def parts_alone(args, model, features_batch, targets_batch):
    head = model.head
    out = model.raw_outputs(features_batch, training=False)
    y = tf.cast(targets_batch[LABEL], tf.float32)
    unit = tf.cast(targets_batch[DURATION], tf.float32) if head.ratio else None
    logits, prune_logits = out["cls_logits"], out["prune_logits"]
    log_reach = head.ops.log_reach(logits)
    reach = tf.exp(log_reach)
    mean_g = tf.linalg.matvec(head.ops.global_leaf_prob(reach), head.node_value)
    leaf = tf.cast(targets_batch["leaf"], tf.int32)

    def sampled_tree():
        pi = tf.sigmoid(prune_logits)
        actions = tf.cast(tf.random.uniform(tf.shape(pi)) < pi, tf.float32)
        mask = head.ops.pruned_leaves(actions)
        if head.reward_decoder == "median":
            both = decoding.quantiles_from_cumulative(
                tf.concat([head.decode_columns(reach, reach * mask)[0],
                           head.decode_columns(reach)[0]], 0),
                head.leaf_knots, [0.5])
            return tf.split(both[:, 0], 2)[0], actions
        return tf.linalg.matvec(reach * mask, head.node_value), actions

    pred_t, actions = sampled_tree()
    pred_g = mean_g
    if unit is not None:
        pred_t, pred_g = pred_t * unit, pred_g * unit

    def reward(partners=head.reward_partners):
        return losses.sample_advantage(y, pred_t, pred_g, head.label_scale, head.reward_error,
                                       partners)

    def ucl_ce():
        on_path = tf.gather(head.ops.on_path, leaf)
        w = losses.ucl_weights(log_reach[:, : head.geometry.n_internal], on_path,
                               head.ucl_max_weight, head.ucl_self_normalize)
        return losses.path_cross_entropy(logits, on_path, tf.gather(head.ops.went_right, leaf), w)

    adv = reward()

    def reinforce():
        live = head.ops.live_internal(actions)
        return losses.reinforce_loss(prune_logits, actions, live,
                                     adv / (distribute.global_std(adv) + 1e-8))

    fns = {"reward": reward, "reward, exact": lambda: reward(0),
           "sampled tree": sampled_tree, "ucl + ce": ucl_ce,
           "reinforce": reinforce, "(empty call)": lambda: y}
    fns = {k: tf.function(v) for k, v in fns.items()}
    for f in fns.values():
        f()
    ms = {name: [] for name in fns}
    for _ in range(args.repeats):
        for name, f in fns.items():
            ms[name].append(_median_ms(f, args.calls))
    return {name: statistics.median(v) for name, v in ms.items()}, reward_spread(
        fns["reward, exact"]().numpy(), fns["reward"], error_only=_error_reward(
            y, pred_t, pred_g, head.label_scale, head.reward_error).numpy())


def reward_spread(exact, sampled, error_only, draws: int = 200) -> dict:
    """How noisy the sampled reward is on this batch: the standard deviation of each
    sample's estimate around its exact value (over ``draws`` draws, averaged over the
    samples), against the spread across samples of the exact XAUC share and of the whole
    advantage (what REINFORCE weighs)."""
    est = np.stack([sampled().numpy() for _ in range(draws)])
    noise = float(est.std(0).mean())
    return {"estimate sd": noise, "exact XAUC share sd": float(np.std(exact - error_only)),
            "exact advantage sd": float(np.std(exact)),
            "advantage variance added": noise ** 2 / float(np.var(exact))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="paper", choices=("paper", "best"))
    p.add_argument("--rows", type=int, default=40_000)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--batches", type=int, default=8, help="distinct batches cycled through")
    p.add_argument("--calls", type=int, default=20, help="calls per timing")
    p.add_argument("--repeats", type=int, default=7, help="interleaved timings per variant")
    args = p.parse_args(argv)
    MODELS["ptpm-no-reward"] = ModelSpec(f"{__name__}:_NoPairsHead", TreeConfig,
                                         MODELS["ptpm"].settings)
    from ptpm_tf.config import PRESETS
    PRESETS[args.preset]["ptpm-no-reward"] = PRESETS[args.preset].get("ptpm", {})
    dataset, split = load_and_split(DataConfig(rows=args.rows), seed=0)
    train = split.train
    encoder = FeatureEncoder.from_frame(train, dataset.categorical, dataset.numeric)
    features = encoder.compact_arrays(train)
    steps, models = whole_steps(args, encoder, features, lambda m: m.head.adapt(train))
    base = steps["tpm"]
    print(f"whole training step, batch {args.batch_size}, preset {args.preset} "
          f"(median ms; samples/s ratio to TPM)")
    for name, v in steps.items():
        print(f"  {name:16s} {v:8.2f} ms   x{base / v:.3f}")
    model = models["ptpm"][0]
    batch = next(iter(make_tf_dataset(features, model.head.adapt(train),
                                      batch_size=args.batch_size)))
    print("parts alone, forward (median ms, including one tf.function call's overhead)")
    parts, spread = parts_alone(args, model, *batch)
    for name, v in parts.items():
        print(f"  {name:20s} {v:8.2f} ms")
    print(f"the reward from {model.head.reward_partners} partners on this batch "
          "(per-sample sd of the estimate; spreads across samples)")
    for name, v in spread.items():
        print(f"  {name:26s} {v:.4f}")


if __name__ == "__main__":
    main()
