"""KuaiRec-sized load benchmark: write a big_matrix.csv of N rows, time cold and warm loads.

The whole KuaiRec big matrix (12.5M rows, ~800 MB) must load on
one 24 GB machine and is parsed once, then read from the columnar cache. This module
writes a file with the real layout (UTF-8 BOM; user_id, video_id, play_duration,
video_duration, time, date, timestamp, watch_ratio; 7,176 users x 10,728 videos; plus
user_features.csv, item_categories.csv and item_daily_features.csv so that the joins are
measured too) and measures, each in a fresh process so that peak RSS is per phase:

    python -m ptpm_tf.benchmarks.scale --rows 12500000 --dir /tmp/kuairec-scale

With ``--prepared`` it runs issue 12's comparison instead (``run_prepared_bench``): the
in-memory PTPM epoch on a 300k-row folder, ``data prepare``, one PTPM epoch streamed from
the prepared directory, and batch scoring of every prepared row:

    python -m ptpm_tf.benchmarks.scale --prepared --rows 12500000 --dir /tmp/kuairec-scale

Cold = parse the CSVs and write the cache; warm = read the cache. Peak RSS is
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the process doing that phase; CPU seconds
(user + system) and the 1-minute load average are reported too, because wall time on a
shared machine depends on what else runs.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

N_USERS, N_VIDEOS = 7176, 10728
DEFAULT_ROWS = 12_500_000
_BOM = b"\xef\xbb\xbf"
_T0 = 1593878400  # 2020-07-05 00:00 +08:00 as in KuaiRec
_SPAN = 60 * 86400


def _write(path: Path, table: pa.Table, header: bool = True, quote: bool = False) -> None:
    """Append (or start, with a BOM and header) a CSV; strings quoted only if ``quote``."""
    with open(path, "ab" if not header else "wb") as f:
        if header:
            f.write(_BOM + (",".join(table.column_names) + "\n").encode())
        pv.write_csv(table, f, write_options=pv.WriteOptions(
            include_header=False, quoting_style="needed" if quote else "none"))


def make_kuairec_scale(out_dir, rows: int = DEFAULT_ROWS, seed: int = 0,
                       chunk: int = 1_000_000) -> Path:
    """Write a KuaiRec-format folder with a ``big_matrix.csv`` of ``rows`` rows.

    Users come in blocks, each user's rows in time order (as in the real file); durations
    are log-normal per video, watch ratios log-normal around 1.1 with 1% zeros.
    Returns the path of ``big_matrix.csv``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    video_ms = np.round(np.exp(rng.normal(np.log(9000), 0.6, N_VIDEOS))).clip(3000, 300000)
    per_user = np.full(N_USERS, rows // N_USERS)
    per_user[: rows % N_USERS] += 1
    user_of_row_start = np.concatenate([[0], np.cumsum(per_user)])
    path = out / "big_matrix.csv"
    first = True
    start = 0
    while start < rows:
        stop = min(rows, start + chunk)
        n = stop - start
        users = np.searchsorted(user_of_row_start, np.arange(start, stop), side="right") - 1
        videos = rng.integers(0, N_VIDEOS, n)
        dur = video_ms[videos]
        ratio = np.exp(rng.normal(np.log(1.1), 0.8, n))
        ratio[rng.random(n) < 0.01] = 0.0
        play = np.round(dur * ratio).astype(np.int64)
        # time in order within each user: sort random offsets by (user, offset)
        offs = rng.integers(0, _SPAN * 1000, n)
        order = np.lexsort((offs, users))
        users, videos, dur, play, offs = users[order], videos[order], dur[order], \
            play[order], offs[order]
        ts_ms = _T0 * 1000 + offs
        ts = pa.array(ts_ms, type=pa.timestamp("ms"))
        shifted = pc.add(ts, pa.scalar(8 * 3600 * 1000, pa.duration("ms")))
        time_s = pc.strftime(shifted, format="%Y-%m-%d %H:%M:%S")
        date = pc.cast(pc.strftime(shifted, format="%Y%m%d"), pa.int64())
        table = pa.table({
            "user_id": users.astype(np.int64), "video_id": videos.astype(np.int64),
            "play_duration": play, "video_duration": dur.astype(np.int64),
            "time": time_s, "date": date, "timestamp": ts_ms / 1000.0,
            "watch_ratio": play / dur})
        _write(path, table, header=first)
        first = False
        start = stop
    _side_tables(out, rng)
    return path


def _side_tables(out: Path, rng: np.random.Generator) -> None:
    """user_features.csv, item_categories.csv, item_daily_features.csv (KuaiRec layout)."""
    u = np.arange(N_USERS)
    degrees = np.array(["high_active", "full_active", "middle_active", "UNKNOWN"])
    ranges = np.array(["0", "(0,10]", "(10,50]", "(50,100]", "(100,150]", "(250,500]"])
    cols = {"user_id": u, "user_active_degree": degrees[rng.integers(0, 4, N_USERS)],
            "is_lowactive_period": rng.integers(0, 2, N_USERS),
            "is_live_streamer": rng.integers(0, 2, N_USERS),
            "is_video_author": rng.integers(0, 2, N_USERS)}
    for name in ("follow_user_num", "fans_user_num", "friend_user_num"):
        cols[name] = rng.integers(0, 500, N_USERS)
        cols[name + "_range"] = ranges[rng.integers(0, len(ranges), N_USERS)]
    cols["register_days"] = rng.integers(1, 2000, N_USERS)
    cols["register_days_range"] = np.array(["31-60", "61-90", "181-365", "730+"])[
        rng.integers(0, 4, N_USERS)]
    for k in range(18):
        cols[f"onehot_feat{k}"] = rng.integers(0, 10, N_USERS)
    _write(out / "user_features.csv", pa.table(cols), quote=True)
    v = np.arange(N_VIDEOS)
    n_cat = rng.integers(1, 4, N_VIDEOS)
    cats = rng.integers(0, 31, (N_VIDEOS, 3)).astype(str)
    feat = cats[:, 0]
    for k in (1, 2):
        feat = np.where(n_cat > k, np.char.add(np.char.add(feat, ", "), cats[:, k]), feat)
    feat = np.char.add(np.char.add("[", feat), "]")
    _write(out / "item_categories.csv", pa.table({"video_id": v, "feat": feat}), quote=True)
    days = np.array([20200705, 20200706])
    _write(out / "item_daily_features.csv", pa.table({
        "video_id": np.repeat(v, 2), "date": np.tile(days, N_VIDEOS),
        "author_id": np.repeat(rng.integers(0, 7000, N_VIDEOS), 2),
        "video_type": np.repeat(np.array(["NORMAL", "AD"])[rng.integers(0, 2, N_VIDEOS)], 2),
        "upload_type": np.repeat(np.array(["ShortImport", "LongImport", "Web"])[
            rng.integers(0, 3, N_VIDEOS)], 2),
        "video_tag_id": np.repeat(rng.integers(0, 3000, N_VIDEOS), 2)}))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _phase(data_dir: str, cache_dir: str, train_epoch: bool = False) -> dict:
    """Load once (in this process), build the training input up to its first batch, and
    report times, rows and peak RSS; with ``train_epoch``, also train PTPM for one epoch."""
    os.environ["PTPM_TF_CACHE_DIR"] = cache_dir
    from ptpm_tf.data.registry import load_dataset
    load_before = os.getloadavg()[0]
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    ds = load_dataset("kuairec", data_dir=data_dir)
    secs = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    result = {"seconds": round(secs, 2), "cpu_seconds": round(cpu, 2), "rows": len(ds),
              "columns": ds.frame.shape[1],
              "frame_mb": round(ds.frame.memory_usage(deep=True).sum() / 2 ** 20, 1),
              "load_peak_rss_mb": round(_rss_mb(), 1), "load_avg_1min": round(load_before, 2)}
    result.update(_first_batch_and_epoch(ds, t, train_epoch))
    result["peak_rss_mb"] = round(_rss_mb(), 1)
    return result


def _first_batch_and_epoch(ds, start: float, train_epoch: bool) -> dict:
    """The training input as ``ptpm-tf train`` builds it (split, encoder, tree targets,
    tf.data), timed to its first batch from ``start``; optionally one epoch of PTPM."""
    import tensorflow as tf
    from ptpm_tf.data.pipeline import make_tf_dataset
    from ptpm_tf.data.splits import split_dataset
    from ptpm_tf.features import FeatureEncoder
    from ptpm_tf.config import ExperimentConfig
    from ptpm_tf.training import build_model
    split = split_dataset(ds)
    encoder = FeatureEncoder.from_frame(split.train, ds.categorical, ds.numeric)
    model = build_model(ExperimentConfig.from_flat(model="ptpm", dataset=ds.name), encoder)
    data = make_tf_dataset(encoder.compact_arrays(split.train), model.head.adapt(split.train),
                           batch_size=1024, shuffle=True)
    next(iter(data))
    out = {"first_batch_seconds": round(time.perf_counter() - start, 2),
           "train_rows": len(split.train)}
    if train_epoch:
        model.compile(optimizer=tf.keras.optimizers.Adam(2e-3))
        t = time.perf_counter()
        model.fit(data, epochs=1, verbose=0)
        secs = time.perf_counter() - t
        out.update(epoch_seconds=round(secs, 1),
                   epoch_samples_per_second=round(len(split.train) / secs, 1))
    return out


def _prepare_phase(data_dir: str, shard_rows: int) -> dict:
    """``data prepare`` of the folder into ``DIR/prepared``: seconds, rows/s, peak RSS."""
    from ptpm_tf.data.prepared import prepare
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    load_before = os.getloadavg()[0]
    meta = prepare("kuairec", Path(data_dir) / "prepared", data_dir=data_dir,
                   shard_rows=shard_rows)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"rows": meta["rows"], "seconds": meta["prepare_seconds"],
            "rows_per_second": meta["prepare_rows_per_second"],
            "cpu_seconds": round((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), 1),
            "bytes_per_row": meta["disk"]["bytes_per_row"],
            "disk_mb": round(meta["disk"]["bytes"] / 2 ** 20, 1),
            "shards": {k: len(v) for k, v in meta["shards"].items()},
            "peak_rss_mb": round(_rss_mb(), 1), "load_avg_1min": round(load_before, 2)}


def _progress(total: int, batch_size: int, every: int = 1000):
    """A Keras callback for an epoch that takes an hour at 50M rows: every ``every``
    batches it prints the batches done, the samples/s so far and the peak RSS (stderr)."""
    import tensorflow as tf

    class Progress(tf.keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, step, logs=None):
            done = step + 1
            if done % every == 0 or done == total:
                rate = done * batch_size / (time.perf_counter() - self.start)
                print(f"batch {done:,}/{total:,}: {rate:,.0f} samples/s, peak RSS "
                      f"{_rss_mb():,.0f} MB", file=sys.stderr, flush=True)
    return Progress()


def _stream_phase(data_dir: str, steps: Optional[int] = None) -> dict:
    """One PTPM epoch streamed from ``DIR/prepared`` as ``train --prepared`` runs it: time
    from the start of training to the first batch, epoch samples/s, peak RSS. With
    ``steps``, the epoch stops after that many batches (its time is then an
    extrapolation, labelled so). Writes the trained model as a run directory ``DIR/run``
    for the scoring phase."""
    import tensorflow as tf
    from ptpm_tf.data.prepared import open_prepared
    from ptpm_tf.config import ExperimentConfig
    from ptpm_tf.training import (Run, build_model, save_run,
                                  streaming_train_data)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    prepared = open_prepared(Path(data_dir) / "prepared")
    config = ExperimentConfig.from_flat(model="ptpm", dataset=prepared.name,
                                        prepared=str(prepared.path), epochs=1)
    model = build_model(config, prepared.encoder())
    labels = prepared.train_labels(config.data.fit_rows, seed=config.seed)
    model.head.adapt(labels)
    probe = labels.iloc[:2]
    del labels
    data, _ = streaming_train_data(prepared, model, config, tf.distribute.get_strategy(), probe)
    next(iter(data))
    first = time.perf_counter() - start
    model.compile(optimizer=tf.keras.optimizers.Adam(config.training.learning_rate))
    n = prepared.rows("train")
    batch = config.training.batch_size
    t = time.perf_counter()
    model.fit(data, epochs=1, verbose=0, steps_per_epoch=steps,
              callbacks=[_progress(steps or -(-n // batch), batch)])
    secs = time.perf_counter() - t
    seen = n if steps is None else min(n, steps * batch)
    save_run(Run(config, model, prepared, None, {}, {}, secs), Path(data_dir) / "run")
    out = {"train_rows": n, "first_batch_seconds": round(first, 2),
           "epoch_samples_per_second": round(seen / secs, 1)}
    if seen < n:
        out.update(samples_trained=seen, seconds_trained=round(secs, 1),
                   epoch_seconds_extrapolated=round(secs * n / seen, 1))
    else:
        out.update(epoch_seconds=round(secs, 1))
    return {**out, "peak_rss_mb": round(_rss_mb(), 1), "load_avg_1min": round(load_before, 2)}


def _score_phase(data_dir: str) -> dict:
    """Batch scoring of every row of ``DIR/prepared`` with ``DIR/run``, lean outputs."""
    from ptpm_tf.scoring import score
    load_before = os.getloadavg()[0]
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    stats = score(Path(data_dir) / "prepared", Path(data_dir) / "scores.parquet",
                  run=str(Path(data_dir) / "run"), signature="serving_default", progress=False)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {**stats,
            "cpu_seconds": round((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), 1),
            "peak_rss_mb": round(_rss_mb(), 1), "load_avg_1min": round(load_before, 2)}


def run_prepared_bench(data_dir, rows: int = DEFAULT_ROWS, seed: int = 0, keep: bool = False,
                       baseline_rows: int = 300_000, shard_rows: int = 1_000_000,
                       stream_steps: Optional[int] = None, score: bool = True,
                       log=None) -> dict:
    """Issue 12's scale run: write the folder (unless ``keep``), then, each in a fresh
    process: the in-memory PTPM epoch on a ``baseline_rows`` folder (the reference
    throughput), ``data prepare``, one PTPM epoch streamed from the prepared directory
    (or its first ``stream_steps`` batches), and, with ``score``, batch scoring of every
    prepared row."""
    data_dir = Path(data_dir)
    base_dir = data_dir / f"baseline-{baseline_rows}"
    for folder, n in ((data_dir, rows), (base_dir, baseline_rows)):
        if not (keep and (folder / "big_matrix.csv").exists()):
            make_kuairec_scale(folder, rows=n, seed=seed)
            if log:
                log(f"wrote {folder / 'big_matrix.csv'} ({n} rows)")
    shutil.rmtree(base_dir / "cache", ignore_errors=True)
    result = {"rows": rows, "csv_mb": round((data_dir / "big_matrix.csv").stat().st_size
                                            / 2 ** 20, 1), "cpus": os.cpu_count()}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    phases = (("in_memory_baseline", base_dir, ["--phase", "cold", "--train-epoch"]),
              ("prepare", data_dir, ["--phase", "prepare", "--shard-rows", str(shard_rows)]),
              ("stream_epoch", data_dir, ["--phase", "stream", *(
                  ["--stream-steps", str(stream_steps)] if stream_steps else [])]),
              ("score", data_dir, ["--phase", "score"]))
    for name, folder, args in phases[:None if score else -1]:
        out = subprocess.run([sys.executable, "-m", "ptpm_tf.benchmarks.scale", "--dir",
                              str(folder), *args], check=True, capture_output=True, text=True,
                             env=env)
        result[name] = json.loads(out.stdout.strip().splitlines()[-1])
        if log:
            log(f"{name}: {result[name]}")
    base = result["in_memory_baseline"]["epoch_samples_per_second"]
    result["stream_vs_in_memory_throughput"] = round(
        result["stream_epoch"]["epoch_samples_per_second"] / base, 3)
    return result


def run_bench(data_dir, rows: int = DEFAULT_ROWS, seed: int = 0, keep: bool = False,
              log=None, train_epoch: bool = False) -> dict:
    """Write the folder (unless ``keep`` and it exists), empty its cache, then run the cold
    and the warm load (each to the first training batch) in a fresh process each; with
    ``train_epoch`` the warm one then trains PTPM for one epoch. Returns their numbers."""
    data_dir = Path(data_dir)
    cache_dir = data_dir / "cache"
    csv_path = data_dir / "big_matrix.csv"
    if not (keep and csv_path.exists()):
        t = time.perf_counter()
        make_kuairec_scale(data_dir, rows=rows, seed=seed)
        if log:
            log(f"wrote {csv_path} ({csv_path.stat().st_size / 2 ** 20:.0f} MB, {rows} rows) "
                f"in {time.perf_counter() - t:.1f} s")
    if cache_dir.exists():
        shutil.rmtree(cache_dir)
    result = {"rows": rows, "csv_mb": round(csv_path.stat().st_size / 2 ** 20, 1),
              "cpus": os.cpu_count()}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    for phase in ("cold", "warm"):
        extra = ["--train-epoch"] if (train_epoch and phase == "warm") else []
        out = subprocess.run([sys.executable, "-m", "ptpm_tf.benchmarks.scale", "--dir",
                              str(data_dir), "--phase", phase, *extra], check=True,
                             capture_output=True, text=True, env=env)
        result[phase] = json.loads(out.stdout.strip().splitlines()[-1])
        if log:
            log(f"{phase}: {result[phase]}")
    return result


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ptpm_tf.benchmarks.scale",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    ap.add_argument("--dir", default="/tmp/kuairec-scale")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="reuse an existing big_matrix.csv")
    ap.add_argument("--train-epoch", action="store_true",
                    help="after the warm load, train PTPM for one epoch and report samples/s")
    ap.add_argument("--prepared", action="store_true",
                    help="issue 12's run instead: the in-memory epoch on --baseline-rows "
                         "rows, then data prepare, one PTPM epoch streamed from the "
                         "prepared directory and batch scoring, each in a fresh process")
    ap.add_argument("--baseline-rows", type=int, default=300_000,
                    help="rows of the in-memory reference epoch (with --prepared)")
    ap.add_argument("--shard-rows", type=int, default=1_000_000,
                    help="rows per prepared shard (with --prepared)")
    ap.add_argument("--stream-steps", type=int,
                    help="stop the streamed epoch after this many batches of 1024 and "
                         "extrapolate its time (with --prepared)")
    ap.add_argument("--no-score", action="store_true",
                    help="leave out the batch-scoring phase (with --prepared)")
    ap.add_argument("--phase", choices=["cold", "warm", "prepare", "stream", "score"],
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phase in ("cold", "warm"):
        print(json.dumps(_phase(args.dir, str(Path(args.dir) / "cache"), args.train_epoch)))
        return 0
    if args.phase:
        phase = {"prepare": lambda: _prepare_phase(args.dir, args.shard_rows),
                 "stream": lambda: _stream_phase(args.dir, args.stream_steps),
                 "score": lambda: _score_phase(args.dir)}[args.phase]
        print(json.dumps(phase()))
        return 0
    if args.prepared:
        result = run_prepared_bench(args.dir, rows=args.rows, seed=args.seed, keep=args.keep,
                                    baseline_rows=args.baseline_rows,
                                    shard_rows=args.shard_rows,
                                    stream_steps=args.stream_steps, score=not args.no_score,
                                    log=lambda m: print(m, flush=True))
        print(json.dumps(result, indent=2))
        return 0
    result = run_bench(args.dir, rows=args.rows, seed=args.seed, keep=args.keep,
                       log=lambda m: print(m, flush=True), train_epoch=args.train_epoch)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
