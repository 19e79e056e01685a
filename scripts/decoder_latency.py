"""Latency of the distributional outputs against the point outputs (issues 7 and 14).

For a trained tree run, the same weights decoded by the mean and by the median. Variants:

- ``mean_only``: ``serving_default`` of the export with ``decode='mean'`` (the point and
  tree outputs; what a ranking caller asks for);
- ``median_only``: the same with ``decode='median'`` (the median served as
  ``watch_time``);
- ``distributional``: the ``distribution`` signature of the same export (``watch_time_mean``,
  ``watch_time_median``, ``quantiles``, ``p_complete``), a call of its own;
- function path only: ``distributional`` / ``distributional_median`` are ``model(features)``
  with ``distribution_outputs=True`` (every output in one call), ``mean_only`` /
  ``median_only`` with ``False``.

Three execution paths, each on 1 / 64 / 512 candidates of the test split:

- ``session`` (TF Serving's path): the exports are loaded through the TF1 session loader
  (:class:`~ptpm_tf.serving.local_server.Servable`, the SavedModelBundle path of
  ``tensorflow_model_server``) and every output of the variant's signature is fetched
  through a session callable (``Session::Run`` with a fixed feed and fetch list, as the
  model server calls it).
- ``function``: ``model(features)`` under ``tf.function``, every output fetched to NumPy.
- ``grpc``: the mean export served by the PredictionService test server (a child process,
  :mod:`ptpm_tf.serving.local_server`), ``serving_default`` against ``distribution``, timed
  per request by the load test (one client; one signature after the other, in rounds).

Variants are interleaved in a shuffled order on every repetition, so machine-load drift
hits them alike; each of ``--repeats`` rounds reports medians, and the summary gives the
median over rounds of each variant's overhead against ``mean_only``.

    PYTHONPATH=. python scripts/decoder_latency.py --run runs/ptpm-simulator-s0 \\
        [--path session,function] [--batch-sizes 1,64,512] [--seconds 10] [--repeats 3] \\
        [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

import ptpm_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf

from ptpm_tf.export import DISTRIBUTION_SIGNATURE, SERVING_SIGNATURE, write_saved_model
from ptpm_tf.serving.local_server import Servable
from ptpm_tf.training import load_run

FUNCTION_VARIANTS = {  # name -> (distribution_outputs, decode)
    "mean_only": (False, "mean"),
    "median_only": (False, "median"),
    "distributional": (True, "mean"),
    "distributional_median": (True, "median"),
}
SESSION_VARIANTS = {  # name -> (decode of the export, signature)
    "mean_only": ("mean", SERVING_SIGNATURE),
    "median_only": ("median", SERVING_SIGNATURE),
    "distributional": ("mean", DISTRIBUTION_SIGNATURE),
}


def _configure(head, distribution_outputs, decode):
    head.distribution_outputs, head.decoder = distribution_outputs, decode


def _function_runners(model, features):
    """{variant: call} with ``model(features)`` traced under each variant's settings."""
    runners = {}
    for name, cfg in FUNCTION_VARIANTS.items():
        _configure(model.head, *cfg)
        fn = tf.function(lambda f: model(f))
        fn.get_concrete_function(features)
        fn(features)

        def call(fn=fn):
            for v in fn(features).values():
                v.numpy()
        runners[name] = call
    return runners


def _export_decoders(model, workdir: Path):
    """{decode: Servable} of one export per decoder."""
    servables = {}
    for decode in sorted({d for d, _ in SESSION_VARIANTS.values()}):
        model.head.decoder = decode
        path = workdir / decode / "1"
        write_saved_model(model, path, name=decode)
        servables[decode] = Servable(decode, 1, path)
        servables[decode].warm_up()
    return servables


def _session_runners(servables, raw):
    runners = {}
    inputs = sorted(raw)
    args = [raw[k] for k in inputs]
    for name, (decode, signature) in SESSION_VARIANTS.items():
        s = servables[decode]
        sig = s.signatures[signature]
        # a callable runs Session::Run with a fixed feed and fetch list (TF Serving's
        # C++ call) without session.run's per-call Python bookkeeping
        call = s.session.make_callable([v.name for v in sig.outputs.values()],
                                       [sig.inputs[k].name for k in inputs])
        call(*args)
        runners[name] = lambda call=call: call(*args)
    return runners


def _grpc(servables, frame, args, workdir: Path):
    """p50 per request of ``serving_default`` and ``distribution`` of the mean export
    through the test server."""
    from ptpm_tf.benchmarks.serving_latency import start_test_server
    from ptpm_tf.serving.loadtest import run_loadtest
    proc, address = start_test_server({"mean": servables["mean"].path}, workdir)
    try:
        by_size = {}
        for bs in (int(b) for b in args.batch_sizes.split(",")):
            rounds = []
            for _ in range(args.repeats):
                p50 = {sig: run_loadtest(address, ["mean"], [bs], [1], requests=args.requests,
                                         warmup=50, rounds=1, frame=frame, log=None,
                                         signature=sig)[0].p50_ms
                       for sig in (SERVING_SIGNATURE, DISTRIBUTION_SIGNATURE)}
                rounds.append(p50)
            overhead = float(np.median([r[DISTRIBUTION_SIGNATURE] / r[SERVING_SIGNATURE] - 1.0
                                        for r in rounds]))
            by_size[bs] = {"p50_ms": rounds, "overhead_vs_serving_default": round(overhead, 4)}
            print(f"grpc batch {bs}: serving_default p50 "
                  f"{np.median([r[SERVING_SIGNATURE] for r in rounds]):.3f} ms; "
                  f"distribution {100 * overhead:+.1f}%", flush=True)
        return by_size
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _time(runners, seconds, rng, min_reps=50):
    times = {name: [] for name in runners}
    names = list(runners)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times[names[0]]) < min_reps:
        rng.shuffle(names)
        for name in names:
            t0 = time.perf_counter()
            runners[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a tree run directory (ptpm-tf train --out)")
    ap.add_argument("--path", default="session,function",
                    help="execution paths, comma-separated: session (TF Serving's), "
                         "function, grpc")
    ap.add_argument("--batch-sizes", default="1,64,512")
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="time per batch size, path and round (all variants together)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds per batch size and path")
    ap.add_argument("--requests", type=int, default=2000,
                    help="grpc path: timed requests per model, batch size and round")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    config, model, dataset, split = load_run(Path(args.run))
    saved = (model.head.distribution_outputs, model.head.decoder)
    rng = random.Random(0)
    paths = [p.strip() for p in args.path.split(",")]
    result = {"run": args.run, "model": config.model, "depth": model.head.depth,
              "leaf_knots": model.head.n_knots, "levels": list(model.head.quantile_levels),
              "seconds": args.seconds, "repeats": args.repeats, "paths": {}}
    with tempfile.TemporaryDirectory() as tmp:
        servables = (_export_decoders(model, Path(tmp))
                     if {"session", "grpc"} & set(paths) else {})
        for path in paths:
            if path == "grpc":
                result["paths"][path] = _grpc(servables, split.test, args, Path(tmp))
                continue
            result["paths"][path] = by_size = {}
            for bs in (int(b) for b in args.batch_sizes.split(",")):
                raw = model.encoder.raw_arrays(split.test.iloc[:bs])
                if path == "session":
                    runners = _session_runners(servables, raw)
                else:
                    runners = _function_runners(
                        model, {k: tf.constant(v) for k, v in raw.items()})
                rounds = []
                for _ in range(args.repeats):
                    times = _time(runners, args.seconds, rng)
                    rounds.append({n: float(np.median(t)) for n, t in times.items()})
                overhead = {n: float(np.median([r[n] / r["mean_only"] - 1.0 for r in rounds]))
                            for n in runners}
                by_size[bs] = {"median_ms": {n: [round(1e3 * r[n], 4) for r in rounds]
                                             for n in rounds[0]},
                               "overhead_vs_mean_only": {n: round(v, 4)
                                                         for n, v in overhead.items()}}
                base = np.median([r["mean_only"] for r in rounds])
                print(f"{path} batch {bs}: mean_only {1e3 * base:.3f} ms; " + ", ".join(
                    f"{n} {100 * v:+.1f}%" for n, v in overhead.items() if n != "mean_only"),
                    flush=True)
        for s in servables.values():
            s.close()
    _configure(model.head, *saved)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
