"""In-process latency of the distributional serving outputs (issue 7).

Times ``model(features)`` under ``tf.function`` for a trained tree run, with the lean
mean-only outputs (``distribution_outputs=False, decode='mean'``: what the model served
before issue 7) and with the distributional outputs (``watch_time_mean``,
``watch_time_median``, ``quantiles``, ``p_complete``), for 1 / 64 / 512 candidates.
Each call includes fetching every output to NumPy. Variants are interleaved in a shuffled
order on every repetition, so machine-load drift hits them alike; medians are reported.

    PYTHONPATH=. python scripts/decoder_latency.py --run runs/ptpm-simulator-s0 \
        [--batch-sizes 1,64,512] [--seconds 20] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

import ptpm_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf

from ptpm_tf.training import load_run

VARIANTS = {  # name -> (distribution_outputs, decode)
    "mean_only": (False, "mean"),
    "median_only": (False, "median"),
    "distributional": (True, "mean"),
    "distributional_median": (True, "median"),
}


def _compiled(model, distribution_outputs, decode, features):
    head = model.head
    head.distribution_outputs, head.decoder = distribution_outputs, decode
    fn = tf.function(lambda f: model(f))
    fn.get_concrete_function(features)  # trace with these settings
    fn(features)
    return fn


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--batch-sizes", default="1,64,512")
    ap.add_argument("--seconds", type=float, default=20.0,
                    help="time budget per batch size (all variants together)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    config, model, dataset, split = load_run(Path(args.run))
    rng = random.Random(0)
    result = {"run": args.run, "model": config.model, "depth": model.head.depth,
              "leaf_knots": model.head.n_knots, "levels": list(model.head.quantile_levels),
              "batch_sizes": {}}
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        frame = split.test.iloc[:bs]
        feats = {k: tf.constant(v) for k, v in model.encoder.raw_arrays(frame).items()}
        fns = {name: _compiled(model, *cfg, feats) for name, cfg in VARIANTS.items()}
        outputs = {name: sorted(fn(feats)) for name, fn in fns.items()}
        times = {name: [] for name in fns}
        names = list(fns)
        deadline = time.perf_counter() + args.seconds
        while time.perf_counter() < deadline or len(times[names[0]]) < 50:
            rng.shuffle(names)
            for name in names:
                t0 = time.perf_counter()
                out = fns[name](feats)
                for v in out.values():
                    v.numpy()
                times[name].append(time.perf_counter() - t0)
        base = float(np.median(times["mean_only"]))
        row = {}
        for name, ts in times.items():
            med = float(np.median(ts))
            row[name] = {"median_ms": round(1e3 * med, 4),
                         "p90_ms": round(1e3 * float(np.percentile(ts, 90)), 4),
                         "reps": len(ts), "outputs": outputs[name],
                         "overhead_vs_mean_only": round(med / base - 1.0, 4)}
        result["batch_sizes"][bs] = row
        print(f"batch {bs}: " + ", ".join(
            f"{n} {r['median_ms']:.3f} ms ({100 * r['overhead_vs_mean_only']:+.1f}%)"
            for n, r in row.items()), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
