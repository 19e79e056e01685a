"""Latency of the distributional serving outputs against the mean-only outputs (issue 7).

For a trained tree run, four variants of the same weights:

- ``mean_only``: ``distribution_outputs=False, decode='mean'`` (the outputs before issue 7);
- ``median_only``: the median served as ``watch_time``, no other distributional output;
- ``distributional``: adds ``watch_time_mean``, ``watch_time_median``, ``quantiles`` and
  ``p_complete`` (the default export);
- ``distributional_median``: both.

Two execution paths, each on 1 / 64 / 512 candidates of the test split:

- ``session`` (TF Serving's path): each variant is exported as a SavedModel and loaded
  through the TF1 session loader (:class:`~ptpm_tf.serving.test_server.Servable`, the
  SavedModelBundle path of ``tensorflow_model_server``) and every output of
  ``serving_default`` is fetched through a session callable (``Session::Run`` with a
  fixed feed and fetch list, as the model server calls it).
- ``function``: ``model(features)`` under ``tf.function``, every output fetched to NumPy.
- ``grpc``: the ``mean_only`` and ``distributional`` exports served by the
  PredictionService test server (a child process, :mod:`ptpm_tf.serving.test_server`) and
  timed per request by the load test (one client; the two models alternate in rounds):
  the request's whole path, with the Python server's own per-request costs.

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

from ptpm_tf.export import SERVING_SIGNATURE, write_saved_model
from ptpm_tf.serving.test_server import Servable
from ptpm_tf.training import load_run

VARIANTS = {  # name -> (distribution_outputs, decode)
    "mean_only": (False, "mean"),
    "median_only": (False, "median"),
    "distributional": (True, "mean"),
    "distributional_median": (True, "median"),
}
#: session path: these variants are also run fetching only ``watch_time``. The graph is
#: the same (a SavedModel signature is one function call: the session does not prune the
#: outputs it is not asked for, measured), so the difference between the two fetch sets
#: is the cost of handing more output tensors back to Python, and
#: ``distributional[watch_time]`` against ``mean_only[watch_time]`` is the compute alone.
COMPUTE_ONLY = ("mean_only", "distributional")


def _configure(head, distribution_outputs, decode):
    head.distribution_outputs, head.decoder = distribution_outputs, decode


def _function_runners(model, features):
    """{variant: call} with ``model(features)`` traced under each variant's settings."""
    runners = {}
    for name, cfg in VARIANTS.items():
        _configure(model.head, *cfg)
        fn = tf.function(lambda f: model(f))
        fn.get_concrete_function(features)
        fn(features)

        def call(fn=fn):
            for v in fn(features).values():
                v.numpy()
        runners[name] = call
    return runners


def _export_variants(model, workdir: Path):
    """{variant: Servable} of each variant's SavedModel."""
    servables = {}
    for name, cfg in VARIANTS.items():
        _configure(model.head, *cfg)
        path = workdir / name / "1"
        write_saved_model(model, path, name=name)
        servables[name] = Servable(name, 1, path)
        servables[name].warm_up()
    return servables


def _session_runners(servables, raw):
    runners = {}
    for name, s in servables.items():
        sig = s.signatures[SERVING_SIGNATURE]
        inputs = sorted(raw)
        args = [raw[k] for k in inputs]
        fetch_sets = {name: list(sig.outputs)}
        if name in COMPUTE_ONLY:
            fetch_sets[f"{name}[watch_time]"] = ["watch_time"]
        for key, outputs in fetch_sets.items():
            # a callable runs Session::Run with a fixed feed and fetch list (TF Serving's
            # C++ call) without session.run's per-call Python bookkeeping
            call = s.session.make_callable([sig.outputs[o].name for o in outputs],
                                           [sig.inputs[k].name for k in inputs])
            call(*args)
            runners[key] = lambda call=call, args=args: call(*args)
    return runners


def _grpc(servables, frame, args, workdir: Path):
    """p50 per request of ``mean_only`` and ``distributional`` through the test server."""
    from ptpm_tf.serving.latency_bench import start_test_server
    from ptpm_tf.serving.loadtest import run_loadtest
    names = ("mean_only", "distributional")
    proc, address = start_test_server({n: servables[n].path for n in names}, workdir)
    try:
        by_size = {}
        for bs in (int(b) for b in args.batch_sizes.split(",")):
            rounds = []
            for _ in range(args.repeats):
                cells = run_loadtest(address, names, [bs], [1], requests=args.requests,
                                     warmup=50, rounds=4, frame=frame, log=None)
                rounds.append({c.model: c.p50_ms for c in cells})
            overhead = float(np.median([r["distributional"] / r["mean_only"] - 1.0
                                        for r in rounds]))
            by_size[bs] = {"p50_ms": rounds, "overhead_vs_mean_only": round(overhead, 4)}
            print(f"grpc batch {bs}: mean_only p50 "
                  f"{np.median([r['mean_only'] for r in rounds]):.3f} ms; "
                  f"distributional {100 * overhead:+.1f}%", flush=True)
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
        servables = (_export_variants(model, Path(tmp))
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
                            for n in VARIANTS}
                if path == "session":
                    overhead["distributional, compute only"] = float(np.median(
                        [r["distributional[watch_time]"] / r["mean_only[watch_time]"] - 1.0
                         for r in rounds]))
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
