"""Serving latency, PTPM against TPM, measured in one run (BENCHMARKS.md).

In-process: each model's export is loaded through the TF1 session loader (TF Serving's
SavedModelBundle path, :class:`~ptpm_tf.serving.local_server.Servable`) and both Predict
signatures, ``serving_default`` and ``distribution``, are run with all their outputs
fetched, for 1, 64 and 512 candidates per request. The four (model, signature) pairs
alternate call by call (the order flips every iteration), so the machine's background
load hits them alike; the report gives p50/p99/mean, the PTPM/TPM ratios of
``serving_default`` and what a ``distribution`` call costs against a ``serving_default``
one.

With ``--grpc`` the same exports are also served by the PredictionService test server
in a child process and measured with the load test (``ptpm-tf loadtest``) at the given
concurrency levels, once per signature.

    python -m ptpm_tf.benchmarks.serving_latency --grpc          # trains PTPM and TPM briefly
    python -m ptpm_tf.benchmarks.serving_latency --runs-dir runs/demo --grpc

The weights do not change the cost of the graph (every op is dense), so a short training
run is enough; the tree depth (6) and the tower are the defaults of ``ptpm-tf train``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

import ptpm_tf  # noqa: F401
from ptpm_tf.export import DISTRIBUTION_SIGNATURE, SERVING_SIGNATURE

MODELS = ("ptpm", "tpm")


def _models(args):
    """{name: (model, test frame)} from saved runs or from a short training run."""
    from ptpm_tf.config import DataConfig, ExperimentConfig
    from ptpm_tf.training import load_run, train
    out = {}
    if args.runs_dir:
        for name in MODELS:
            config, model, _, split = load_run(Path(args.runs_dir) / name)
            out[name] = (model, split.test)
        return out
    from ptpm_tf.data.registry import load_and_split
    data = DataConfig(rows=args.rows)
    dataset, split = load_and_split(data, args.seed)
    for name in MODELS:  # the tree models: PTPM against TPM
        config = ExperimentConfig.from_flat(model=name, data=data, seed=args.seed,
                                            depth=args.depth, epochs=args.epochs)
        run = train(config, None, dataset=dataset, split=split, verbose=0)
        out[name] = (run.model, split.test)
    return out


def measure_in_process(paths: Dict[str, Path], frame, batch_sizes: Sequence[int],
                       iters: int, warmup: int, encoder,
                       signatures: Sequence[str] = (SERVING_SIGNATURE,)) -> List[dict]:
    """p50/p99/mean latency (ms) of each signature of each export through the session
    loader, all (model, signature) pairs interleaved call by call (the order flips every
    iteration), every output of the signature fetched."""
    from ptpm_tf.serving.local_server import Servable
    servables = {name: Servable(name, int(p.name), p) for name, p in paths.items()}
    for s in servables.values():
        s.warm_up()
    keys = [(name, sig) for sig in signatures for name in servables]
    results = []
    for bs in batch_sizes:
        feeds = [encoder.raw_arrays(frame.sample(n=bs, replace=len(frame) < bs, random_state=k))
                 for k in range(8)]
        runners = {}
        for name, sig_key in keys:
            s = servables[name]
            sig = s.signatures[sig_key]
            fetches = {k: v.name for k, v in sig.outputs.items()}
            prepared = [{sig.inputs[k].name: v for k, v in f.items()} for f in feeds]
            runners[(name, sig_key)] = (s.session, fetches, prepared)
        times = {key: [] for key in keys}
        for i in range(warmup + iters):
            for key in (keys if i % 2 == 0 else keys[::-1]):
                session, fetches, prepared = runners[key]
                feed = prepared[i % len(prepared)]
                t0 = time.perf_counter()
                session.run(fetches, feed)
                dt = time.perf_counter() - t0
                if i >= warmup:
                    times[key].append(dt * 1000.0)
        for name, sig_key in keys:
            t = np.array(times[(name, sig_key)])
            results.append({"model": name, "signature": sig_key, "batch_size": bs,
                            "iters": iters, "p50_ms": float(np.percentile(t, 50)),
                            "p99_ms": float(np.percentile(t, 99)),
                            "mean_ms": float(t.mean())})
    for s in servables.values():
        s.close()
    return results


def format_in_process(results: List[dict], num: str = "ptpm", den: str = "tpm",
                      signature: str = SERVING_SIGNATURE) -> str:
    """PTPM against TPM on one signature: one row per (repeat, batch size), then per
    batch size the median over repeats."""
    results = [r for r in results if r.get("signature", SERVING_SIGNATURE) == signature]
    by = {(r.get("repeat", 0), r["model"], r["batch_size"]): r for r in results}
    repeats = sorted({r.get("repeat", 0) for r in results})
    sizes = sorted({r["batch_size"] for r in results})
    lines = ["| repeat | candidates/request | PTPM p50 ms | TPM p50 ms | p50 PTPM/TPM "
             "| PTPM p99 ms | TPM p99 ms | p99 PTPM/TPM | PTPM mean ms | TPM mean ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ratios = {bs: {"p50": [], "p99": []} for bs in sizes}
    for rep in repeats:
        for bs in sizes:
            a, b = by[(rep, num, bs)], by[(rep, den, bs)]
            r50, r99 = a["p50_ms"] / b["p50_ms"], a["p99_ms"] / b["p99_ms"]
            ratios[bs]["p50"].append(r50)
            ratios[bs]["p99"].append(r99)
            lines.append(f"| {rep + 1} | {bs} | {a['p50_ms']:.3f} | {b['p50_ms']:.3f} | "
                         f"{r50:.3f} | {a['p99_ms']:.3f} | {b['p99_ms']:.3f} | {r99:.3f} | "
                         f"{a['mean_ms']:.3f} | {b['mean_ms']:.3f} |")
    if len(repeats) > 1:
        for bs in sizes:
            med = {k: float(np.median(v)) for k, v in ratios[bs].items()}
            lines.append(f"| **median** | {bs} | | | **{med['p50']:.3f}** | | | "
                         f"**{med['p99']:.3f}** | | |")
    return "\n".join(lines)


def format_signature_cost(results: List[dict], signature: str = DISTRIBUTION_SIGNATURE,
                          base: str = SERVING_SIGNATURE) -> str:
    """What a call of ``signature`` costs against one of ``base``, per model and batch
    size: p50s (median over repeats) and the median over repeats of the p50 ratio."""
    by = {(r.get("repeat", 0), r["model"], r.get("signature", base), r["batch_size"]): r
          for r in results}
    repeats = sorted({k[0] for k in by})
    models = list(dict.fromkeys(r["model"] for r in results))
    sizes = sorted({r["batch_size"] for r in results})
    lines = [f"| model | candidates/request | {base} p50 ms | {signature} p50 ms "
             f"| p50 {signature} / {base} |", "|---|---:|---:|---:|---:|"]
    for name in models:
        for bs in sizes:
            a = [by[(rep, name, signature, bs)]["p50_ms"] for rep in repeats]
            b = [by[(rep, name, base, bs)]["p50_ms"] for rep in repeats]
            ratio = float(np.median([x / y for x, y in zip(a, b)]))
            lines.append(f"| {name} | {bs} | {np.median(b):.3f} | {np.median(a):.3f} "
                         f"| {ratio:.3f} |")
    return "\n".join(lines)


def start_test_server(paths: Dict[str, Path], workdir: Path):
    """Serve the version directories ``paths`` ({model name: .../<version>}) with the
    PredictionService test server in a child process; returns (process, address)."""
    port_file = workdir / "port"
    cmd = [sys.executable, "-m", "ptpm_tf.serving.local_server", "--port", "0",
           "--port_file", str(port_file)]
    for name, p in paths.items():
        cmd += ["--model_name", name, "--model_base_path", str(p.parent)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                            stderr=open(workdir / "server.log", "w"))
    deadline = time.monotonic() + 180
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"test server did not start; see {workdir / 'server.log'}")
        time.sleep(0.2)
    return proc, f"127.0.0.1:{port_file.read_text().strip()}"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ptpm_tf.benchmarks.serving_latency",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--runs-dir", help="folder with ptpm/ and tpm/ runs (e.g. runs/demo); "
                                      "default: train both briefly")
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-sizes", default="1,64,512")
    p.add_argument("--iters", type=int, default=500, help="timed calls per model and size")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3,
                   help="in-process measurements, each interleaving the two models")
    p.add_argument("--export-dir", help="where to export (default: a temporary folder)")
    p.add_argument("--grpc", action="store_true",
                   help="also load-test the exports through the gRPC test server")
    p.add_argument("--concurrency", default="1,4")
    p.add_argument("--requests", type=int, default=400, help="timed gRPC requests per cell")
    p.add_argument("--out", default="results/serving-bench", help="report folder")
    args = p.parse_args(argv)
    batch_sizes = [int(x) for x in args.batch_sizes.split(",")]

    from ptpm_tf.export import export_model
    started = datetime.datetime.now().astimezone()
    models = _models(args)
    tmp = tempfile.TemporaryDirectory(prefix="ptpm-bench-")
    export_dir = Path(args.export_dir or tmp.name)
    paths = {name: export_model(model, export_dir, name, example_frame=frame.head(512))
             for name, (model, frame) in models.items()}
    depth = models["ptpm"][0].head.depth
    print(f"exports: {', '.join(str(p) for p in paths.values())} (depth {depth})")
    model, frame = models["ptpm"]
    signatures = (SERVING_SIGNATURE, DISTRIBUTION_SIGNATURE)
    in_process = []
    for rep in range(args.repeats):
        for r in measure_in_process(paths, frame, batch_sizes, args.iters, args.warmup,
                                    model.encoder, signatures):
            in_process.append({**r, "repeat": rep})
    report = [f"## In-process SavedModel latency of {SERVING_SIGNATURE} (TF1 session loader, "
              f"all its outputs fetched)", "", format_in_process(in_process), "",
              f"## What the {DISTRIBUTION_SIGNATURE} signature costs (same run, interleaved)",
              "", format_signature_cost(in_process)]
    print("\n".join(report))
    load = []
    if args.grpc:
        from ptpm_tf.serving.loadtest import format_report, run_loadtest
        proc, address = start_test_server(paths, Path(tmp.name))
        try:
            for sig in signatures:
                cells = run_loadtest(address, ["ptpm", "tpm"], batch_sizes,
                                     [int(x) for x in args.concurrency.split(",")],
                                     requests=args.requests, warmup=20, rounds=2,
                                     signature=sig)
                load += [{**c.__dict__, "signature": sig} for c in cells]
                report += ["", f"## gRPC load test of {sig} (PredictionService test server, "
                               f"child process)", "", format_report(cells)]
                print("\n".join(report[-3:]))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"date": started.isoformat(timespec="seconds"), "cpus": os.cpu_count(),
            "platform": platform.platform(), "depth": depth, "argv": sys.argv[1:],
            "settings": vars(args)}
    (out / "serving_latency.json").write_text(json.dumps(
        {**meta, "in_process": in_process, "grpc": load}, indent=2, default=str))
    (out / "serving_latency.md").write_text(
        f"{meta['date']}, {meta['cpus']} CPUs, depth {depth}\n\n" + "\n".join(report) + "\n")
    print(f"\nreport written to {out / 'serving_latency.md'}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
