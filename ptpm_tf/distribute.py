"""Training on several devices or machines with TensorFlow's own runtime (``tf.distribute``).

Strategies (:func:`make_strategy`): ``default`` (one device), ``mirrored``
(``MirroredStrategy``: the local GPUs, or one replica on a CPU-only host) and
``multi_worker`` (``MultiWorkerMirroredStrategy``, the cluster and this process's role read
from ``TF_CONFIG``). Variables are mirrored, every step all-reduces the gradients, and
``--batch-size`` is the **global** batch: each of the ``R`` replicas gets about ``B / R`` rows.

**What is per-replica and what is global.** Inside ``train_step`` each replica sees its
slice of the global batch. The rule this package follows is that every quantity equals what
one device would compute on the whole global batch, so the result does not depend on how
many replicas there are:

- *Losses and logged values*: heads return means over their **local** slice
  (``Head.compute_loss``); :class:`ptpm_tf.model.WatchTimeModel` weights each replica's
  values by its share of the global batch, ``n_local / n_global`` (:func:`batch_share`), so
  the gradients summed by the optimizer's all-reduce are the gradient of the global-batch
  mean, and the logged values (one all-reduce per step) are the global-batch values.
  A replica that receives no rows (an epoch's last, short batch) contributes zero.
- *Batch statistics inside a loss* are taken over the **global** batch with the replica
  context's collectives (``all_reduce`` / ``all_gather``), never per replica:
  :func:`global_sum`, :func:`global_mean`, :func:`global_std` and :func:`global_batch`.
  In PTPM these are the UCL self-normalisation (per node, the mean weight of the batch's
  samples on that node), the advantage normalisation (the std of the per-sample
  advantages), and the REINFORCE reward's pairwise terms: the per-sample reward ranks each
  local sample against every sample of the global batch, and the batch reward's XAUC and
  MSE are those of the global batch. All of them are stop-gradient, so no gradient flows
  through a collective.
- *Random draws* (the pruning actions) are independent per replica: on several replicas
  each one draws from its own stream (:func:`uniform`), since identical graphs on two
  workers would otherwise draw identical numbers for different samples.

On one replica every helper here is the plain single-device op (no collective is built), so
the single-device path is unchanged in behaviour and speed.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Optional

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")

_SUM = tf.distribute.ReduceOp.SUM
_strategies: dict = {}


# -- strategies ------------------------------------------------------------------------
def make_strategy(name: str = "default") -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy called ``name`` (created once per process).

    ``multi_worker`` reads the cluster from ``TF_CONFIG`` (``{"cluster": {"worker": [...]},
    "task": {"type": "worker", "index": i}}``; worker 0 is the chief unless a ``chief`` task
    is listed) and must be created before TensorFlow runs anything else in the process,
    which :func:`ptpm_tf.training.train` does.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name not in _strategies:
        if name == "mirrored":
            _strategies[name] = tf.distribute.MirroredStrategy()
        else:
            config = os.environ.get("TF_CONFIG")
            if not config:
                raise ValueError("--strategy multi_worker needs TF_CONFIG (the cluster and this "
                                 "worker's task); see docs/distributed.md")
            try:
                json.loads(config)
            except json.JSONDecodeError as err:
                raise ValueError(f"TF_CONFIG is not valid JSON: {err}") from None
            _strategies[name] = tf.distribute.MultiWorkerMirroredStrategy()
    return _strategies[name]


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run directory (the chief, or the only process)."""
    return bool(strategy.extended.should_checkpoint)


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """How many worker processes train together (1 unless multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, sum(len(spec.get(task, [])) for task in ("chief", "worker")))


def worker_dir(path: Path, strategy: tf.distribute.Strategy) -> Path:
    """Where this worker writes files meant for ``path``: ``path`` itself on the chief, a
    fresh temporary directory on the other workers (which still take part in the writes,
    since saving synchronised variables is a collective; the caller deletes it)."""
    if is_chief(strategy):
        return Path(path)
    return Path(tempfile.mkdtemp(prefix="ptpm-worker-"))


# -- inside a replica ------------------------------------------------------------------
def replica_context() -> Optional[tf.distribute.ReplicaContext]:
    """The replica context when a step is split over more than one replica, else None."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return None
    return ctx


def global_sum(values):
    """``values`` (a tensor or a nest of them) summed over the replicas; one all-reduce."""
    ctx = replica_context()
    return values if ctx is None else ctx.all_reduce(_SUM, values)


def global_batch(values):
    """The global batch of ``values`` (a tensor or nest, batch axis 0): every replica's
    rows concatenated in replica order (``all_gather``); the local rows on one replica."""
    ctx = replica_context()
    if ctx is None:
        return values
    local = ctx.strategy.extended.worker_devices
    if len(local) == 1:
        # one device per worker (MultiWorkerMirroredStrategy on CPUs): the replica's
        # tensors carry no device, which all_gather (unlike all_reduce) refuses as its
        # destination; pin them to the worker's device
        with tf.device(local[0]):
            values = tf.nest.map_structure(tf.identity, values)
    return ctx.all_gather(values, axis=0)


def global_mean(x: tf.Tensor) -> tf.Tensor:
    """Mean of ``x`` over all its elements in the global batch."""
    if replica_context() is None:
        return tf.reduce_mean(x)
    total, count = global_sum((tf.reduce_sum(x), tf.cast(tf.size(x), x.dtype)))
    return tf.math.divide_no_nan(total, count)


def global_std(x: tf.Tensor) -> tf.Tensor:
    """Population standard deviation of ``x`` over the global batch (as
    ``tf.math.reduce_std``: mean first, then the mean squared deviation)."""
    if replica_context() is None:
        return tf.math.reduce_std(x)
    mean = global_mean(x)
    return tf.sqrt(global_mean(tf.square(x - mean)))


def batch_share(batch_size: tf.Tensor) -> Optional[tf.Tensor]:
    """This replica's share ``n_local / n_global`` of the global batch (None on one
    replica). Weighting a replica's local means by it and summing over replicas gives the
    global-batch means; a quantity already global (identical on every replica) comes back
    unchanged from the same weighting."""
    ctx = replica_context()
    if ctx is None:
        return None
    n = tf.cast(batch_size, tf.float32)
    return tf.math.divide_no_nan(n, ctx.all_reduce(_SUM, n))


def uniform(shape) -> tf.Tensor:
    """``tf.random.uniform(shape)``; on several replicas each replica draws from its own
    stream (op seed derived from its global replica id)."""
    ctx = replica_context()
    if ctx is None:
        return tf.random.uniform(shape)
    replica = tf.get_static_value(ctx.replica_id_in_sync_group)
    if replica is None:  # not known when the graph is built: a stateless draw per replica
        seed = tf.stack([tf.cast(ctx.replica_id_in_sync_group, tf.int64),
                         tf.random.uniform([], maxval=2 ** 31 - 1, dtype=tf.int64)])
        return tf.random.stateless_uniform(shape, seed=seed)
    return tf.random.uniform(shape, seed=7919 * (int(replica) + 1))
