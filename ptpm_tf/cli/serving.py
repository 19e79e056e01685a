"""``ptpm-tf export | predict | loadtest``: a run as a TF Serving SavedModel, requests to a
served model (or offline scoring of a file), and the serving latency load test."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ptpm_tf import atomic_io
from ptpm_tf.cli.options import csv_list, model_names, non_negative_int, positive_int


def _rpc_error(err) -> int:
    """A server's error status (its message may span lines): one line, exit status 1."""
    from ptpm_tf.data.dataset import one_line
    print(f"ptpm-tf: error: server answered {err.code().name}: {one_line(err.details() or '')}",
          file=sys.stderr)
    return 1


def export_cmd(args) -> int:
    from ptpm_tf.export import INFO_FILE, export_run
    path = export_run(Path(args.run), args.export_dir, args.name, version=args.version)
    print(f"exported {args.run} to {path}")
    info = json.loads((path / "assets.extra" / INFO_FILE).read_text())
    for key, sig in info["signatures"].items():
        print(f"  signature {key}: {', '.join(sig['outputs'])}")
    return 0


def _tree_info(args, name: str):
    """Tree constants of the served model (``model_info.json`` of the newest export)."""
    from ptpm_tf.export import INFO_FILE, latest_version_dir
    if args.model_info:
        return json.loads(Path(args.model_info).read_text()).get("tree")
    if args.export_dir:
        latest = latest_version_dir(Path(args.export_dir) / name)
        if latest is not None and (latest / "assets.extra" / INFO_FILE).exists():
            return json.loads((latest / "assets.extra" / INFO_FILE).read_text()).get("tree")
    return None


def predict_cmd(args) -> int:
    if (args.run or args.export) and args.server:
        raise ValueError("predict: --server sends rows to a server; --run / --export score "
                         "them here; give one")
    if args.run or args.export:
        if args.rows or args.tree or args.name:
            raise ValueError("predict: --name, --rows and --tree go with --server")
        return _score_offline(args)
    if args.outputs:
        raise ValueError("predict: --outputs goes with --run / --export (offline scoring)")
    if not args.server:
        raise ValueError("predict needs --server HOST:PORT, or --run / --export to score "
                         "offline")
    if not args.name:
        raise ValueError("predict --server needs --name MODEL")
    args.signature = args.signature or "serving_default"
    import grpc
    import numpy as np
    import pandas as pd
    from ptpm_tf.heads.tree.describe import describe_tree, label_unit
    from ptpm_tf.serving.client import ServingClient, read_table
    frame = read_table(args.input)
    if args.rows:
        frame = frame.head(args.rows)
    names = model_names(args.name)
    if len(names) != 1:
        raise ValueError("predict takes one --name")
    name = names[0]
    try:
        with ServingClient(args.server, timeout=args.timeout) as client:
            out = client.predict_frame(name, frame, signature=args.signature)
    except grpc.RpcError as err:
        return _rpc_error(err)
    order = sorted(out, key=lambda k: (k != "watch_time", k))
    per_row = {k: out[k] for k in order if out[k].ndim == 1}
    table = pd.DataFrame(per_row)
    print(f"{name} at {args.server}: {len(frame)} candidates")
    with pd.option_context("display.max_rows", 50, "display.width", 160):
        print(table.to_string(max_rows=50, float_format=lambda x: f"{x:.3f}"))
    if args.tree:
        if "leaf_prob" not in out:
            print(f"(no tree outputs in {args.signature}: the tree is in serving_default "
                  f"of tree models)")
        else:
            n_nodes = out["leaf_prob"].shape[1]
            depth = int(np.log2(n_nodes + 1)) - 1
            tree = _tree_info(args, name) or {}
            for i in range(min(args.tree, len(frame))):
                one = {k: v[i] for k, v in out.items()}
                print(f"\ncandidate {i}:")
                duration = frame["duration"].iloc[i] if "duration" in frame else None
                print(describe_tree(one, depth, leaf_bounds=tree.get("leaf_bounds"),
                                    node_value=tree.get("node_value"),
                                    scale=label_unit(tree, duration) if tree else 1.0))
    if args.output:
        atomic_io.write_json(Path(args.output), {k: v.tolist() for k, v in out.items()})
        print(f"outputs written to {args.output}")
    return 0


def _predict_environment(args) -> None:
    """Offline scoring of a CSV or Parquet file uses TensorFlow's BFC CPU allocator. The
    default one hands the model's large per-batch tensors fresh pages on every call when
    the batches come from Python (3.6M page faults, 14 s of system time on 2M rows;
    BENCHMARKS.md); BFC reuses them. TensorFlow reads the setting when it first
    allocates, so it is set before TensorFlow starts. Not set for a prepared directory,
    whose batches come from TensorFlow's own reader and do not fault, nor for the other
    commands: there BFC costs time (the training step's throughput halves, measured)."""
    # a prepared directory holds meta.json (ptpm_tf.data.prepared.META; not imported here:
    # that module loads TensorFlow, whose start-up lines the CLI mutes)
    if (args.run or args.export) and not (Path(args.input) / "meta.json").is_file():
        os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")


def _score_offline(args) -> int:
    from ptpm_tf.scoring import score
    if not args.output:
        raise ValueError("predict --run/--export needs --output FILE.parquet")
    stats = score(args.input, args.output, run=args.run, export=args.export,
                  signature=args.signature, batch_size=args.batch_size,
                  outputs=csv_list(args.outputs, str) if args.outputs else None)
    print(f"scored {stats['rows']} rows in {stats['seconds']:.1f} s "
          f"({stats['rows_per_second']:,.0f} rows/s) -> {args.output}")
    return 0


def loadtest_cmd(args) -> int:
    import grpc
    from ptpm_tf.serving.client import read_table
    from ptpm_tf.serving.loadtest import format_report, run_loadtest, write_report
    names = model_names(args.name)
    batch_sizes = csv_list(args.batch_sizes, int)
    concurrency = csv_list(args.concurrency, int)
    frame = read_table(args.input) if args.input else None
    try:
        results = run_loadtest(args.server, names, batch_sizes, concurrency,
                               requests=args.requests, warmup=args.warmup, rounds=args.rounds,
                               frame=frame, seed=args.seed, timeout=args.timeout,
                               ready_timeout=args.ready_timeout, signature=args.signature)
    except grpc.RpcError as err:
        return _rpc_error(err)
    except TimeoutError as err:
        print(f"ptpm-tf: error: {err}", file=sys.stderr)
        return 1
    print()
    print(format_report(results))
    if args.report:
        settings = {"server": args.server, "models": names, "signature": args.signature,
                    "batch_sizes": batch_sizes,
                    "concurrency": concurrency, "requests": args.requests,
                    "warmup": args.warmup, "rounds": args.rounds}
        paths = write_report(results, Path(args.report), settings)
        print("report written to " + ", ".join(str(p) for p in paths))
    failed = sum(r.errors for r in results)
    if failed:
        print(f"ptpm-tf: error: {failed} requests failed", file=sys.stderr)
        return 1
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a run as a TF Serving SavedModel "
                                      "(EXPORT_DIR/NAME/VERSION)")
    p.add_argument("--run", required=True, help="run directory written by train")
    p.add_argument("--export-dir", default="export", help="TF Serving model repository")
    p.add_argument("--name", help="model name (default: the run's model, e.g. ptpm)")
    p.add_argument("--version", type=int, help="version number (default: newest + 1)")
    p.set_defaults(func=export_cmd)

    p = sub.add_parser("predict", help="send the rows of a file to a TF Serving model over "
                                       "gRPC, or score a file offline (--run / --export)")
    p.add_argument("--server", help="HOST:PORT of the gRPC endpoint")
    p.add_argument("--name", action="append", help="model name (with --server)")
    p.add_argument("--input", required=True,
                   help="CSV/Parquet/JSON of raw feature columns; offline also a prepared "
                        "directory")
    p.add_argument("--run", help="score offline with this run's model (no server)")
    p.add_argument("--export", help="score offline with this SavedModel (a version "
                                    "directory, or EXPORT_DIR/NAME for its newest version)")
    p.add_argument("--batch-size", type=positive_int, default=4096,
                   help="rows per model call (offline; a few thousand keep each call in "
                        "cache, several calls run at once)")
    p.add_argument("--signature",
                   help="serving_default (point prediction and tree outputs; the default "
                        "with --server and --export) or distribution (tree models: "
                        "quantiles, median, p_complete); offline with --run the default is "
                        "every output of the model")
    p.add_argument("--outputs", metavar="NAMES",
                   help="offline: write only these outputs of the signature, comma-separated "
                        "(e.g. watch_time,variance); the model then computes only what they "
                        "need. Default: all of them")
    p.add_argument("--rows", type=positive_int, help="send only the first N rows")
    p.add_argument("--tree", type=int, nargs="?", const=1, default=0, metavar="K",
                   help="print the personalised tree of the first K candidates (default 1)")
    p.add_argument("--export-dir", help="local model repository, to print the tree's label "
                                        "intervals in seconds (reads model_info.json)")
    p.add_argument("--model-info", help="model_info.json of the export (instead of --export-dir)")
    p.add_argument("--output", help="write all outputs to this JSON file (with --server), "
                                    "or to this .parquet file, one row per input row "
                                    "(offline)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    p.set_defaults(func=predict_cmd, before_tensorflow=_predict_environment)

    p = sub.add_parser("loadtest", help="latency percentiles and throughput of served models, "
                                        "side by side")
    p.add_argument("--server", required=True, help="HOST:PORT of the gRPC endpoint")
    p.add_argument("--name", required=True, action="append",
                   help="model name(s): --name ptpm,tpm or repeated; with two, the report "
                        "gives each cell's latency ratio to the last")
    p.add_argument("--signature", default="serving_default",
                   help="the Predict signature to call (e.g. distribution)")
    p.add_argument("--batch-sizes", default="1,64,512", help="candidates per request")
    p.add_argument("--concurrency", default="4", help="concurrent requests (comma list ok)")
    p.add_argument("--requests", type=positive_int, default=500, help="timed requests per cell")
    p.add_argument("--warmup", type=non_negative_int, default=20, help="untimed requests per cell")
    p.add_argument("--rounds", type=positive_int, default=2,
                   help="alternating rounds over the models per cell")
    p.add_argument("--input", help="take candidates from this table (default: synthetic)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    p.add_argument("--ready-timeout", type=float, default=120.0,
                   help="seconds to wait for the models to become AVAILABLE")
    p.add_argument("--report", help="write the results as JSON (and .md beside it)")
    p.set_defaults(func=loadtest_cmd)
