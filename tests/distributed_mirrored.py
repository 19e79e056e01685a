"""Single device vs MirroredStrategy on two logical CPUs, on the same global batch; run as a
script by tests/test_distributed.py (logical devices must be set before TensorFlow starts).

Prints one JSON object of largest absolute differences (and reference magnitudes):

- ``parts``: the loss parts ``ce`` (UCL, self-normalised), ``reg``, ``var`` summed over the
  replicas' shares, against the single-device values;
- ``grads``: the replicas' gradients summed (what the optimizer's all-reduce applies)
  against the single-device gradient, with ``w_tree = 0`` so that only the deterministic
  terms contribute;
- ``ucl``, ``sample_adv``, ``batch_adv``, ``std``: the global-batch statistics of
  :mod:`ptpm_tf.heads.tree.losses` / :mod:`ptpm_tf.distribute` computed on the split batch.

The global batch has an odd size, so the replicas hold different numbers of rows, and a
second case gives one replica a single row and the other none.
"""
import json
import sys

import ptpm_tf  # noqa: F401
import numpy as np
import tensorflow as tf

cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

from ptpm_tf import distribute
from ptpm_tf.heads.tree import losses  # noqa: E402
from ptpm_tf.data.registry import load_dataset  # noqa: E402
from ptpm_tf.data.splits import split_dataset  # noqa: E402
from ptpm_tf.features import FeatureEncoder  # noqa: E402
from ptpm_tf.config import ExperimentConfig
from ptpm_tf.training import build_model  # noqa: E402
from ptpm_tf.heads.tree.geometry import TreeGeometry, TreeOps  # noqa: E402

STRATEGY = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert STRATEGY.num_replicas_in_sync == 2


def split_values(arrays, sizes):
    """Per-replica values: replica i gets the i-th consecutive block of ``sizes[i]`` rows."""
    bounds = np.cumsum([0, *sizes])

    def fn(ctx):
        i = ctx.replica_id_in_sync_group
        return tf.nest.map_structure(lambda a: tf.constant(a[bounds[i]:bounds[i + 1]]), arrays)
    return STRATEGY.experimental_distribute_values_from_function(fn)


def local(per_replica):
    return [t.numpy() for t in STRATEGY.experimental_local_results(per_replica)]


def maxdiff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def model_case(sizes, out):
    tf.keras.utils.set_random_seed(0)
    dataset = load_dataset("simulator", rows=3000, seed=0)
    split = split_dataset(dataset, seed=0)
    encoder = FeatureEncoder.from_frame(split.train, dataset.categorical, dataset.numeric)
    config = ExperimentConfig.from_flat(model="ptpm", depth=3, w_tree=0.0, ucl_max_weight=4.0)
    batch = split.train.iloc[: sum(sizes)]
    features = encoder.raw_arrays(batch)

    single = build_model(config, encoder)
    targets = {k: v[: sum(sizes)] for k, v in single.head.adapt(split.train).items()}
    single(features)
    with STRATEGY.scope():
        mirrored = build_model(config, encoder)
        mirrored.head.adapt(split.train)
        mirrored(features)
    mirrored.set_weights(single.get_weights())

    with tf.GradientTape() as tape:
        loss, parts, _ = single._step((features, targets), training=True)
    ref_grads = [None if g is None else tf.convert_to_tensor(g).numpy()
                 for g in tape.gradient(loss, single.trainable_variables)]

    @tf.function
    def replica_step(data):
        with tf.GradientTape() as tape:
            loss, parts, _ = mirrored._step(data, training=True)
        grads = tape.gradient(loss, mirrored.trainable_variables)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                 for g, v in zip(grads, mirrored.trainable_variables)]
        return distribute.global_sum(parts), grads

    data = split_values((features, targets), sizes)
    parts_d, grads_d = STRATEGY.run(replica_step, args=(data,))
    for name in ("ce", "reg", "var"):
        values = local(parts_d[name])
        out[f"parts_{name}"] = max(maxdiff(v, parts[name].numpy()) for v in values)
        out[f"parts_{name}_ref"] = float(parts[name].numpy())
    summed = [STRATEGY.reduce(tf.distribute.ReduceOp.SUM, g, axis=None) for g in grads_d]
    out["grads"] = max(maxdiff(a, 0.0 if b is None else b) for a, b in zip(summed, ref_grads))
    out["grads_ref"] = max(float(np.max(np.abs(b))) for b in ref_grads if b is not None)


def statistics_case(sizes, out):
    rng = np.random.default_rng(1)
    n = sum(sizes)
    ops = TreeOps(TreeGeometry(3))
    y = rng.gamma(1.5, 10.0, n).astype(np.float32)
    y[::5] = y[0]  # tied labels
    pred_t = (y + rng.normal(0, 8.0, n)).astype(np.float32)
    pred_g = (y + rng.normal(0, 8.0, n)).astype(np.float32)
    logits = rng.normal(size=(n, 7)).astype(np.float32)
    leaf = rng.integers(0, 8, n)
    on_path = tf.gather(ops.on_path, leaf).numpy()
    log_reach = ops.log_reach(tf.constant(logits)).numpy()[:, :7]
    scale = tf.constant(12.0)

    def stats(y, pred_t, pred_g, log_reach, on_path):
        return {"ucl": losses.ucl_weights(log_reach, on_path, 4.0, True),
                "sample_adv": losses.sample_advantage(y, pred_t, pred_g, scale),
                "batch_adv": losses.batch_advantage(y, pred_t, pred_g, scale),
                "std": distribute.global_std(pred_t)}

    ref = stats(*(tf.constant(a) for a in (y, pred_t, pred_g, log_reach, on_path)))
    got = STRATEGY.run(tf.function(stats),
                       args=split_values((y, pred_t, pred_g, log_reach, on_path), sizes))
    for name in ("ucl", "sample_adv"):  # per-row: concatenate the replicas' rows
        rows = np.concatenate(local(got[name]), axis=0)
        out[name] = maxdiff(rows, ref[name].numpy())
    for name in ("batch_adv", "std"):  # global scalars: identical on every replica
        out[name] = max(maxdiff(v, ref[name].numpy()) for v in local(got[name]))


def main():
    out = {}
    model_case([19, 18], out)
    statistics_case([19, 18], out)
    edge = {}
    model_case([1, 0], edge)
    out["one_row_one_empty"] = edge
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
