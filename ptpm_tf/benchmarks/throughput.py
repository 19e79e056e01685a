"""Training throughput of several models on the same data, measured in one process.

The machines this runs on are shared and noisy, so the models' epochs are interleaved
(A, B, A, B, ...) after a warm-up epoch each, and the report gives medians and each
model's ratio to the first one, measured side by side. An epoch is timed from its first
batch's start to its last batch's end (a callback), so what happens around the epoch
(building and tearing down the input iterator) is not counted as training.

    python -m ptpm_tf.benchmarks.throughput --models tpm,ptpm --rows 300000 --depth 6 --repeats 5
    python -m ptpm_tf.benchmarks.throughput --models tpm,ptpm --hidden 1024,512 --embedding-dim 32

The tower flags are ``ptpm-tf train``'s (default: its tower), so the cost of a head can be
seen against towers of other sizes.

Models are the benchmark's variant names (``ptpm_tf.benchmarks.suite.VARIANTS``): ``tpm`` and
``ptpm`` are the paper's definitions, ``tpm-best`` and ``ptpm-best`` the default preset.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from typing import Any, Dict, List, Optional, Sequence

import tensorflow as tf

from ptpm_tf.benchmarks.variants import VARIANTS
from ptpm_tf.cli.options import add_settings, section_values
from ptpm_tf.config import DataConfig, ExperimentConfig, TowerConfig
from ptpm_tf.data.pipeline import make_tf_dataset
from ptpm_tf.data.registry import load_and_split
from ptpm_tf.features import FeatureEncoder
from ptpm_tf.heads import head_fields
from ptpm_tf.training import build_model


class _EpochTimer(tf.keras.callbacks.Callback):
    """Wall time from the first training batch's start to the last one's end."""

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds = time.perf_counter() - self._start


def measure(models: Sequence[str], rows: int, depth: int, batch_size: int, repeats: int,
            seed: int = 0, tower: Optional[Dict[str, Any]] = None) -> Dict[str, dict]:
    """Samples per second of one training epoch of each model (median over ``repeats``
    interleaved epochs, after one warm-up epoch that also traces the graph). ``tower``
    overrides the shared tower's settings (``TowerConfig``; the default tower if None)."""
    dataset, split = load_and_split(DataConfig(rows=rows), seed)
    train = split.train
    encoder = FeatureEncoder.from_frame(train, dataset.categorical, dataset.numeric)
    features = encoder.compact_arrays(train)
    fitted = {}
    for name in models:
        tf.keras.utils.set_random_seed(seed)
        if name not in VARIANTS:
            raise ValueError(f"unknown model {name!r}; choose from {', '.join(VARIANTS)}")
        model_name, overrides = VARIANTS[name]
        head = dict(overrides)
        if "depth" in head_fields(model_name):  # the tree models' depth
            head["depth"] = depth
        config = ExperimentConfig.from_flat(model=model_name, preset="paper", head=head,
                                            seed=seed, tower=tower)
        model = build_model(config, encoder)
        targets = model.head.adapt(train)
        ds = make_tf_dataset(features, targets, batch_size=batch_size, shuffle=True, seed=seed)
        model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
        model.fit(ds, epochs=1, verbose=0)  # warm-up and tracing
        fitted[name] = (model, ds)
    tower_used = dataclasses.asdict(config.tower)  # one tower for every model
    seconds: Dict[str, List[float]] = {name: [] for name in models}
    timer = _EpochTimer()
    for _ in range(repeats):
        for name in models:
            model, ds = fitted[name]
            model.fit(ds, epochs=1, verbose=0, callbacks=[timer])
            seconds[name].append(timer.seconds)
    base = statistics.median(seconds[models[0]])
    return {name: {"median_seconds_per_epoch": statistics.median(s),
                   "samples_per_second": len(train) / statistics.median(s),
                   "throughput_vs_" + models[0]: base / statistics.median(s),
                   "seconds": s,
                   "trainable_parameters": int(sum(tf.size(v).numpy() for v in
                                                   fitted[name][0].trainable_variables)),
                   "tower": tower_used}
            for name, s in seconds.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="tpm,ptpm", help="comma-separated; the first is the reference")
    p.add_argument("--rows", type=int, default=300_000)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", help="also write the results here")
    add_settings(p.add_argument_group("the shared tower (as ptpm-tf train's flags)"),
                 TowerConfig)
    args = p.parse_args(argv)
    tower = section_values(args, TowerConfig)
    result = measure(args.models.split(","), args.rows, args.depth, args.batch_size,
                     args.repeats, tower=tower)
    for name, r in result.items():
        print(f"{name:10s} {r['samples_per_second']:>10.0f} samples/s  "
              f"x{next(v for k, v in r.items() if k.startswith('throughput_vs_')):.3f}  "
              f"params {r['trainable_parameters']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
