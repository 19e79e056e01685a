"""Load test against a PredictionService: latency percentiles and throughput per model,
batch size (candidates per request) and concurrency (``ptpm-tf loadtest``), on one Predict
signature (``serving_default`` unless told, e.g. ``distribution``).

Requests are built before the clock starts (a small pool of distinct ones per batch size,
features drawn from a given table or, by default, synthetic values of the signature's
dtypes: random ids, most of them unseen, which the OOV buckets serve at the same cost).
Each cell first sends ``warmup`` untimed requests, then ``concurrency`` threads share one
channel and send ``requests`` timed Predict calls in all. Models are measured side by side:
for every batch size and concurrency the models take turns, in ``rounds`` alternating
rounds, so that drift in the machine's load hits them alike.
"""
from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import grpc
import numpy as np
import pandas as pd

from ptpm_tf.serving.client import (ServingClient, features_from_frame, input_specs,
                                    make_predict_request)
from ptpm_tf.export import SERVING_SIGNATURE

POOL = 8  # distinct requests per (model, batch size)


@dataclasses.dataclass
class CellResult:
    """One (model, batch size, concurrency) cell of the load test."""

    model: str
    batch_size: int
    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    requests_per_s: float
    candidates_per_s: float
    first_error: Optional[str] = None


def synthetic_features(specs: Mapping[str, "tf.DType"], n: int,
                       rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Random raw features of the signature's dtypes (ids mostly unseen: OOV buckets)."""
    import tensorflow as tf
    out = {}
    for name, dtype in specs.items():
        if dtype == tf.string:
            out[name] = np.array([f"id{i}" for i in rng.integers(0, 100_000, n)], dtype=object)
        elif dtype.is_integer:
            out[name] = rng.integers(0, 100_000, n).astype(dtype.as_numpy_dtype)
        else:
            out[name] = rng.lognormal(2.0, 1.0, n).astype(dtype.as_numpy_dtype)
    return out


def build_requests(name: str, signature_def, batch_size: int, pool: int = POOL,
                   frame: Optional[pd.DataFrame] = None, seed: int = 0,
                   signature: str = SERVING_SIGNATURE):
    specs = input_specs(signature_def)
    rng = np.random.default_rng(seed)
    requests = []
    for _ in range(pool):
        if frame is not None and len(frame):
            rows = frame.iloc[rng.integers(0, len(frame), batch_size)]
            feats = features_from_frame(rows, specs)
        else:
            feats = synthetic_features(specs, batch_size, rng)
        requests.append(make_predict_request(name, feats, signature))
    return requests


def _percentile(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if len(x) else float("nan")


def run_cell(client: ServingClient, requests: Sequence, n_requests: int, concurrency: int,
             timeout: float = 30.0) -> tuple:
    """Send ``n_requests`` Predict calls from ``concurrency`` threads; returns
    (latencies in seconds, wall seconds, errors, first error message)."""
    counter = itertools.count()
    lock = threading.Lock()
    latencies: List[float] = []
    errors: List[str] = []

    def worker():
        local, errs = [], []
        while True:
            with lock:
                i = next(counter)
            if i >= n_requests:
                break
            req = requests[i % len(requests)]
            t0 = time.perf_counter()
            try:
                client.prediction.Predict(req, timeout=timeout)
                local.append(time.perf_counter() - t0)
            except grpc.RpcError as err:
                errs.append(f"{err.code().name}: {err.details()}")
        with lock:
            latencies.extend(local)
            errors.extend(errs)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return np.array(latencies), wall, len(errors), (errors[0] if errors else None)


def run_loadtest(server: str, names: Sequence[str], batch_sizes: Sequence[int] = (1, 64, 512),
                 concurrency: Sequence[int] = (4,), requests: int = 200, warmup: int = 10,
                 rounds: int = 2, frame: Optional[pd.DataFrame] = None, seed: int = 0,
                 timeout: float = 30.0, ready_timeout: float = 120.0,
                 log=print, signature: str = SERVING_SIGNATURE) -> List[CellResult]:
    """Measure every (model, batch size, concurrency) cell; see the module docstring."""
    if isinstance(concurrency, int):
        concurrency = (concurrency,)
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"give each model name once, got {list(names)}")
    if any(b < 1 for b in batch_sizes) or any(c < 1 for c in concurrency) or requests < 1:
        raise ValueError("batch sizes, concurrency and requests must be positive")
    results: List[CellResult] = []
    with ServingClient(server, timeout=timeout) as client:
        sigs = {}
        for name in names:
            version = client.wait_ready(name, timeout=ready_timeout)
            available = client.metadata(name)
            if signature not in available:
                raise ValueError(f"model {name!r} has no signature {signature!r} "
                                 f"(it has {sorted(available)})")
            sigs[name] = available[signature]
            if log:
                log(f"{name}: version {version} available at {server}")
        for bs in batch_sizes:
            pools = {name: build_requests(name, sigs[name], bs, frame=frame, seed=seed + bs,
                                          signature=signature)
                     for name in names}
            for conc in concurrency:
                acc = {name: ([], 0.0, 0, None) for name in names}
                for name in names:  # untimed warm-up
                    run_cell(client, pools[name], warmup, 1, timeout)
                per_round = max(1, requests // rounds)
                for r in range(rounds):
                    order = names if r % 2 == 0 else list(reversed(names))
                    for name in order:
                        lat, wall, err, first = run_cell(client, pools[name], per_round, conc, timeout)
                        l0, w0, e0, f0 = acc[name]
                        acc[name] = ([*l0, *lat], w0 + wall, e0 + err, f0 or first)
                for name in names:
                    lat, wall, err, first = acc[name]
                    lat = np.array(lat) * 1000.0
                    done = len(lat)
                    cell = CellResult(
                        model=name, batch_size=bs, concurrency=conc, requests=done + err,
                        errors=err, seconds=round(wall, 3),
                        p50_ms=_percentile(lat, 50), p95_ms=_percentile(lat, 95),
                        p99_ms=_percentile(lat, 99),
                        mean_ms=float(lat.mean()) if done else float("nan"),
                        requests_per_s=done / wall if wall > 0 else float("nan"),
                        candidates_per_s=done * bs / wall if wall > 0 else float("nan"),
                        first_error=first)
                    results.append(cell)
                    if log:
                        log(f"  {name:>8} batch {bs:>4} x{conc}: p50 {cell.p50_ms:7.2f} ms, "
                            f"p99 {cell.p99_ms:7.2f} ms, {cell.requests_per_s:8.1f} req/s"
                            + (f", {err} errors (first: {first})" if err else ""))
    return results


def format_report(results: Sequence[CellResult]) -> str:
    """Markdown table; with two or more models, each cell's p50/p99 ratio to the last
    model (``--name ptpm,tpm`` gives PTPM/TPM)."""
    names = list(dict.fromkeys(r.model for r in results))
    ref = names[-1] if len(names) > 1 else None
    by_key = {(r.model, r.batch_size, r.concurrency): r for r in results}
    head = ("| model | candidates/request | concurrency | requests | errors | p50 ms | p95 ms "
            "| p99 ms | req/s | candidates/s |")
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    if ref:
        head += f" p50 / {ref} | p99 / {ref} |"
        sep += "---:|---:|"
    lines = [head, sep]
    for r in results:
        row = (f"| {r.model} | {r.batch_size} | {r.concurrency} | {r.requests} | {r.errors} "
               f"| {r.p50_ms:.2f} | {r.p95_ms:.2f} | {r.p99_ms:.2f} | {r.requests_per_s:.1f} "
               f"| {r.candidates_per_s:.0f} |")
        if ref:
            base = by_key.get((ref, r.batch_size, r.concurrency))
            if base and base.p50_ms > 0 and base.p99_ms > 0:
                row += f" {r.p50_ms / base.p50_ms:.2f} | {r.p99_ms / base.p99_ms:.2f} |"
            else:
                row += " | |"
        lines.append(row)
    return "\n".join(lines)


def write_report(results: Sequence[CellResult], path: Path, settings: dict) -> List[Path]:
    """``path`` (JSON: settings, machine, results) and the same name with ``.md``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version()},
            "settings": settings}
    path.write_text(json.dumps({**meta, "results": [dataclasses.asdict(r) for r in results]},
                               indent=2))
    md = path.with_suffix(".md")
    md.write_text(f"# Load test\n\n{meta['date']}, {meta['machine']['cpus']} CPUs, "
                  f"settings: `{json.dumps(settings)}`\n\n{format_report(results)}\n")
    return [path, md]
