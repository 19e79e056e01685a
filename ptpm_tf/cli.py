"""``ptpm-tf``: the command line.

Exit status 0 on success. Every expected failure (bad data, bad flags, a bad run
directory, an unreadable file) is one line on stderr, naming the file, row and column
where one applies, and status 2; only a bug prints a traceback. ``--debug`` (before or
after the command) also prints the traceback of an expected failure.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import List, Optional

from ptpm_tf import strict_json
from ptpm_tf.data.registry import DATASETS

MODEL_NAMES = ("ptpm", "tpm", "mse", "wlr", "d2q", "or", "dml", "cread")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage is in ``--help``)."""

    def error(self, message):
        from ptpm_tf.data.dataset import one_line
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def _int_at_least(low: int, what: str):
    """An argparse type: an integer >= ``low``, else a one-line error saying ``what``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="simulator", choices=DATASETS,
                   help="dataset format (default: the built-in simulator)")
    p.add_argument("--data-dir", help="folder holding the dataset's files")
    p.add_argument("--spec", help="dataset spec (YAML/JSON) for --dataset csv")
    p.add_argument("--rows", type=_positive_int,
                   help="rows to generate (simulator) or read at most")
    p.add_argument("--seed", type=int, default=0, help="seed for data, split and training")
    p.add_argument("--strict", action="store_true",
                   help="fail on the first malformed row instead of dropping and counting it")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depth", type=_positive_int, default=6,
                   help="global tree depth D (2^D leaves)")
    p.add_argument("--epochs", type=_positive_int, default=10, help="maximum epochs")
    p.add_argument("--batch-size", type=_positive_int, default=1024)
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--patience", type=_non_negative_int, default=2,
                   help="early-stopping patience in epochs, on the validation split")
    p.add_argument("--monitor", default="val_mae", choices=("val_mae", "val_loss"),
                   help="validation quantity early stopping watches")
    p.add_argument("--split", default="0.8,0.1,0.1",
                   help="train,validation,test fractions (by time if there is a timestamp)")
    p.add_argument("--strategy", default="default", choices=("default", "mirrored", "multi_worker"),
                   help="tf.distribute strategy: one device, the local devices (mirrored), or "
                        "the workers of TF_CONFIG (multi_worker); --batch-size is the global "
                        "batch (see docs/distributed.md)")
    p.add_argument("--backup-every", type=_positive_int, metavar="STEPS",
                   help="back up training every STEPS steps (default: every epoch); a killed "
                        "run resumes from its last backup when rerun with the same command")
    g = p.add_argument_group("PTPM settings (tree models)")
    g.add_argument("--preset", choices=("best", "paper"), default="best",
                   help="best (default): the settings that won on the validation split "
                        "(a tree over watch time / duration, median decoder; BENCHMARKS.md); "
                        "paper: the paper's definitions (a tree over seconds, mean decoder). "
                        "The flags below override either")
    g.add_argument("--label-space", choices=("seconds", "ratio"),
                   help="what the global tree splits: the watch time in seconds (paper) or "
                        "the watch ratio watch_time / duration (best; needs a duration)")
    g.add_argument("--no-tsl", action="store_true", help="ablation: no tree structure learning")
    g.add_argument("--no-ucl", action="store_true", help="ablation: no unbiased conditional learning")
    g.add_argument("--leaf-values", choices=("mean", "midpoint"),
                   help="node values: training means (PTPM default) or midpoints (TPM default)")
    g.add_argument("--reward", choices=("sample", "batch"),
                   help="REINFORCE reward: per-sample decomposition or the paper's batch reward")
    g.add_argument("--ucl-max-weight", type=float, help="clip of the inverse propensities")
    g.add_argument("--w-tree", type=float, help="weight of L_tree")
    g.add_argument("--w-var", type=float, help="weight of L_var")
    g.add_argument("--tree-warmup-steps", type=int, help="steps before L_tree is switched on")
    g.add_argument("--prune-bias-init", type=float, help="initial bias of the pruning logits")
    g.add_argument("--pruner-input", choices=("features", "features+tree"),
                   help="what the pruning model reads: the tower's features (default) or also "
                        "the global tree's classifier probabilities (Eq. 10's T_g)")
    g.add_argument("--decode", choices=("mean", "median"),
                   help="decoder served as watch_time: mean (Eq. 2; paper) or median (best) of "
                        "the tree's leaf distribution (metrics.json reports both)")
    g.add_argument("--reward-decode", choices=("mean", "median"),
                   help="decoder the TSL reward scores (default mean)")
    g.add_argument("--reward-error", choices=("squared", "absolute"),
                   help="error term of the TSL reward XAUC - error (default squared: the paper)")


def _add_baseline_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("baseline settings")
    g.add_argument("--cread-a", type=float,
                   help="CREAD threshold shape a (default: chosen on the validation split)")
    g.add_argument("--n-thresholds", type=int, help="OR/CREAD/DML: number of thresholds")
    g.add_argument("--duration-groups", type=int, help="D2Q/DML: equal-frequency duration groups")
    g.add_argument("--short-play-quantile", type=float,
                   help="WLR: label quantile under which a play is a negative (default 0.2)")


def _baseline_overrides(args, model: str) -> dict:
    """Head settings of the baselines given on the command line (only where they apply)."""
    kw = {}
    pairs = (("cread_a", "a", ("cread",)), ("n_thresholds", "n_thresholds", ("or", "cread", "dml")),
             ("duration_groups", "n_groups", ("d2q", "dml")),
             ("short_play_quantile", "short_play_quantile", ("wlr",)))
    for arg, key, models in pairs:
        value = getattr(args, arg, None)
        if value is not None:
            if model not in models:
                raise ValueError(f"--{arg.replace('_', '-')} applies to {', '.join(models)}, "
                                 f"not to {model}")
            kw[key] = value
    return kw


def _head_overrides(args) -> dict:
    kw = {}
    if args.no_tsl:
        kw["tsl"] = False
    if args.no_ucl:
        kw["ucl"] = False
    for name in ("leaf_values", "reward", "ucl_max_weight", "w_tree", "w_var",
                 "tree_warmup_steps", "prune_bias_init", "decode", "reward_decode", "reward_error",
                 "pruner_input", "label_space"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    return kw


def _train_config(args, model: str):
    from ptpm_tf.training import TrainConfig
    try:
        split = tuple(float(x) for x in args.split.split(","))
    except ValueError:
        split = ()
    if len(split) != 3:
        raise ValueError(f"--split must be three comma-separated fractions "
                         f"(train,validation,test), got {args.split!r}")
    return TrainConfig(model=model, preset=args.preset, dataset=args.dataset,
                       data_dir=args.data_dir,
                       spec=args.spec, rows=args.rows, strict=args.strict, seed=args.seed,
                       depth=args.depth,
                       epochs=args.epochs, batch_size=args.batch_size,
                       learning_rate=args.learning_rate, patience=args.patience,
                       monitor=args.monitor, split=split,
                       head={**_head_overrides(args), **_baseline_overrides(args, model)},
                       strategy=args.strategy, backup_every=args.backup_every,
                       prepared=_prepared_dir(args))


def _prepared_dir(args) -> Optional[str]:
    """``--prepared DIR``, or ``--data-dir`` when it names a prepared directory."""
    from ptpm_tf.data.prepared import is_prepared
    prepared = getattr(args, "prepared", None)
    if prepared is None and is_prepared(args.data_dir):
        prepared = args.data_dir
    return prepared


def cmd_simulate(args) -> int:
    from ptpm_tf.data.simulator import simulate, write_simulation
    ds = simulate(rows=args.rows, seed=args.seed)
    csv_path, spec_path = write_simulation(ds, Path(args.out))
    print(f"wrote {len(ds)} rows to {csv_path}\nspec: {spec_path}")
    return 0


def cmd_train(args) -> int:
    from ptpm_tf.evaluate import decoder_rows, format_table
    from ptpm_tf.selection import train_selected
    config = _train_config(args, args.model)
    from ptpm_tf.training import TENSORBOARD_DIR
    out = Path(args.out or f"runs/{args.model}-{args.dataset}-s{args.seed}")
    logdir = Path(args.logdir) if args.logdir else out / TENSORBOARD_DIR
    run = train_selected(config, out, logdir=logdir)  # = train, plus CREAD's search of a
    if hasattr(run.dataset, "report"):  # a streamed run's load report is in metrics.json
        print(f"data: {run.dataset.report.summary()}")
    if "selection" in run.metrics:
        print(f"chosen on the validation split: {run.metrics['selection']['chosen']}")
    print(format_table(decoder_rows([run.metrics]),
                       run.metrics if "oracle_mae" in run.metrics else None))
    print(f"run written to {out} ({out / 'metrics.json'})")
    return 0


def cmd_evaluate(args) -> int:
    from ptpm_tf.evaluate import decoder_rows, evaluate_frame, format_table
    from ptpm_tf.training import load_run
    config, model, dataset, split = load_run(Path(args.run))
    if args.decode is not None:
        if not hasattr(model.head, "decoder"):
            raise ValueError(f"--decode applies to tree models, not {config.model!r}")
        model.head.decoder = args.decode
    if split is None:  # streamed from a prepared directory
        from ptpm_tf.evaluate import evaluate_prepared
        result = evaluate_prepared(model, dataset, args.split, model_name=config.model)
        if args.calibration:
            n = dataset.rows(args.split)
            frame = dataset.frame(args.split, stride=max(1, -(-n // 1_000_000)))
    else:
        frame = split.test if args.split == "test" else split.validation
        result = evaluate_frame(model, frame, dataset, model_name=config.model)
    result["split"] = args.split
    print(format_table(decoder_rows([result]), result if "oracle_mae" in result else None))
    if args.json:
        Path(args.json).write_text(strict_json.dumps(result, indent=2))
        print(f"metrics written to {args.json}")
    if args.calibration:
        from ptpm_tf.calibration import calibration_report, write_calibration
        # a prepared run's rows are a subsample without the simulator's row indices
        report = calibration_report(model, frame, dataset,
                                    config=config if split is not None else None)
        paths = write_calibration(report, Path(args.calibration))
        print(f"calibration: {', '.join(str(p) for p in paths)}")
    return 0


def cmd_demo(args) -> int:
    """The README's main job: PTPM and TPM on one simulator draw and split, one table."""
    from ptpm_tf.data.registry import load_dataset
    from ptpm_tf.data.splits import split_dataset
    from ptpm_tf.evaluate import decoder_rows, format_table
    from ptpm_tf.training import TrainConfig, train
    dataset = load_dataset("simulator", rows=args.rows, seed=args.seed)
    split = split_dataset(dataset, seed=args.seed)
    print(f"simulator: {len(dataset)} rows; train {len(split.train)}, "
          f"validation {len(split.validation)}, test {len(split.test)} ({split.method} split)")
    rows, runs = [], {}
    for model in ("tpm", "ptpm"):
        print(f"\n== training {model.upper()} ==")
        config = TrainConfig(model=model, rows=args.rows, seed=args.seed, epochs=args.epochs)
        run = train(config, Path(args.out) / model, dataset=dataset, split=split)
        rows.append(run.metrics)
        runs[model] = run
    print("\nTest split (" + f"{len(split.test)} rows" + "):")
    print(format_table(decoder_rows(rows), rows[-1]))
    if args.export_dir:
        _demo_serving(runs, split, Path(args.export_dir))
    return 0


def _demo_serving(runs, split, export_dir: Path) -> None:
    """End of the main job: export the models for TF Serving and show one request's
    personalised tree, answered by the exported PTPM SavedModel."""
    import numpy as np
    import tensorflow as tf
    from ptpm_tf.export import (INFO_FILE, SERVING_SIGNATURE, describe_tree, export_model,
                                label_unit)
    print()
    paths = {}
    for name, run in runs.items():
        paths[name] = export_model(run.model, export_dir, name,
                                   example_frame=split.test.head(512))
        print(f"exported {name.upper()} to {paths[name]}")
    name = "ptpm" if "ptpm" in paths else next(iter(paths))
    encoder = runs[name].model.encoder
    candidates = split.test.head(256)
    serve = tf.saved_model.load(str(paths[name])).signatures[SERVING_SIGNATURE]
    out = {k: v.numpy() for k, v in serve(**{k: tf.constant(v) for k, v in
                                             encoder.raw_arrays(candidates).items()}).items()}
    if "leaf_prob" not in out:
        return
    pruned = np.flatnonzero(out["prune_mask"].any(axis=1))
    i = int(pruned[0]) if len(pruned) else 0
    info = json.loads((paths[name] / "assets.extra" / INFO_FILE).read_text())["tree"]
    row = candidates.iloc[i]
    print(f"\nOne request to the exported {name.upper()} (test row {i}: user {candidates['user_id'].iloc[i]}, "
          f"item {candidates['item_id'].iloc[i]}, duration {row.get('duration', float('nan')):.1f} s, "
          f"actual watch time {row['watch_time']:.1f} s); "
          f"{len(pruned)} of the first {len(candidates)} test rows have a pruned tree.")
    print(describe_tree({k: v[i] for k, v in out.items()}, info["depth"],
                        leaf_bounds=info["leaf_bounds"], node_value=info["node_value"],
                        scale=label_unit(info, row.get("duration")),
                        min_prob=0.02))
    print(f"\nServe {export_dir}/ with TF Serving: docker compose up (see README).")


def _int_list(text: str, flag: str) -> list:
    if text.strip().lower() in ("", "none"):
        return []
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers, got {text!r}")


def cmd_benchmark(args) -> int:
    """Every model over a dataset for several seeds: tables.md, results.json, PNGs."""
    from ptpm_tf.benchmark import BenchmarkConfig, run_benchmark
    if args.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS)}")
    grid = ([float(x) for x in args.cread_grid.split(",")] if args.cread_grid else None)
    config = BenchmarkConfig(
        dataset=args.dataset, data_dir=args.data_dir, spec=args.spec, rows=args.rows,
        models=[m.strip() for m in args.models.split(",") if m.strip()], seeds=args.seeds,
        depth=args.depth, depths=_int_list(args.depths, "--depths"),
        depth_seeds=args.depth_seeds, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, patience=args.patience,
        ablations=not args.no_ablations, cread_grid=grid,
        curve_points_per_epoch=args.curve_points, out=args.out)
    results = run_benchmark(config, progress=not args.no_progress)
    out = Path(args.out)
    print((out / "tables.md").read_text())
    print(f"results in {out}: results.json, tables.md, "
          + ", ".join(results.get("figures", [])))
    return 0


def cmd_data_inspect(args) -> int:
    from ptpm_tf.data.inspect import run as inspect_run
    return inspect_run(args.dataset, args.data_dir, args.spec, args.out, args.rows, args.strict)


def _csv_list(text: str, cast=str) -> list:
    try:
        return [cast(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"expected a comma-separated list, got {text!r}") from None


def _model_names(values) -> list:
    """``--name ptpm,tpm`` and ``--name ptpm --name tpm`` alike; order kept, no repeats."""
    names = [n for v in values for n in _csv_list(v)]
    return list(dict.fromkeys(names))


def _rpc_error(err) -> int:
    """A server's error status (its message may span lines): one line, exit status 1."""
    from ptpm_tf.data.dataset import one_line
    print(f"ptpm-tf: error: server answered {err.code().name}: {one_line(err.details() or '')}",
          file=sys.stderr)
    return 1


def cmd_export(args) -> int:
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


def cmd_predict(args) -> int:
    if (args.run or args.export) and args.server:
        raise ValueError("predict: --server sends rows to a server; --run / --export score "
                         "them here; give one")
    if args.run or args.export:
        if args.rows or args.tree or args.name:
            raise ValueError("predict: --name, --rows and --tree go with --server")
        return _score_offline(args)
    if not args.server:
        raise ValueError("predict needs --server HOST:PORT, or --run / --export to score "
                         "offline")
    if not args.name:
        raise ValueError("predict --server needs --name MODEL")
    args.signature = args.signature or "serving_default"
    import grpc
    import numpy as np
    import pandas as pd
    from ptpm_tf.export import describe_tree, label_unit
    from ptpm_tf.serving.client import ServingClient, read_table
    frame = read_table(args.input)
    if args.rows:
        frame = frame.head(args.rows)
    names = _model_names(args.name)
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
        Path(args.output).write_text(strict_json.dumps({k: v.tolist() for k, v in out.items()}))
        print(f"outputs written to {args.output}")
    return 0


def _score_offline(args) -> int:
    from ptpm_tf.scoring import score
    if not args.output:
        raise ValueError("predict --run/--export needs --output FILE.parquet")
    stats = score(args.input, args.output, run=args.run, export=args.export,
                  signature=args.signature, batch_size=args.batch_size)
    print(f"scored {stats['rows']} rows in {stats['seconds']:.1f} s "
          f"({stats['rows_per_second']:,.0f} rows/s) -> {args.output}")
    return 0


def cmd_data_prepare(args) -> int:
    from ptpm_tf.data.prepared import prepare, print_progress
    split = tuple(float(x) for x in args.split.split(","))
    meta = prepare(args.dataset, args.out, data_dir=args.data_dir, spec=args.spec,
                   rows=args.rows, seed=args.seed, strict=args.strict, split=split,
                   shard_rows=args.shard_rows, chunk_rows=args.chunk_rows,
                   compression="" if args.compression == "none" else "GZIP",
                   progress=print_progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    from ptpm_tf.data.dataset import LoadReport
    print(f"{args.dataset}: {LoadReport(**meta['report']).summary()}")
    rows = meta["split"]["rows"]
    shards = meta["shards"]
    print(f"prepared {meta['rows']} rows ({meta['split']['method']} split: "
          + ", ".join(f"{p} {rows[p]} in {len(shards[p])} shards" for p in rows) + ")")
    print(f"disk: {meta['disk']['bytes'] / 2**20:.1f} MiB, {meta['disk']['bytes_per_row']} "
          f"bytes per row; {meta['prepare_seconds']} s ({meta['prepare_rows_per_second']:,.0f} "
          f"rows/s)")
    print(f"written to {args.out}")
    return 0


def cmd_loadtest(args) -> int:
    import grpc
    from ptpm_tf.serving.client import read_table
    from ptpm_tf.serving.loadtest import format_report, run_loadtest, write_report
    names = _model_names(args.name)
    batch_sizes = _csv_list(args.batch_sizes, int)
    concurrency = _csv_list(args.concurrency, int)
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


def _add_serving_parsers(sub) -> None:
    p = sub.add_parser("export", help="export a run as a TF Serving SavedModel "
                                      "(EXPORT_DIR/NAME/VERSION)")
    p.add_argument("--run", required=True, help="run directory written by train")
    p.add_argument("--export-dir", default="export", help="TF Serving model repository")
    p.add_argument("--name", help="model name (default: the run's model, e.g. ptpm)")
    p.add_argument("--version", type=int, help="version number (default: newest + 1)")
    p.set_defaults(func=cmd_export)

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
    p.add_argument("--batch-size", type=_positive_int, default=4096,
                   help="rows per model call (offline; a few thousand keep each call in "
                        "cache, several calls run at once)")
    p.add_argument("--signature",
                   help="serving_default (point prediction and tree outputs; the default "
                        "with --server and --export) or distribution (tree models: "
                        "quantiles, median, p_complete); offline with --run the default is "
                        "every output of the model")
    p.add_argument("--rows", type=_positive_int, help="send only the first N rows")
    p.add_argument("--tree", type=int, nargs="?", const=1, default=0, metavar="K",
                   help="print the personalised tree of the first K candidates (default 1)")
    p.add_argument("--export-dir", help="local model repository, to print the tree's label "
                                        "intervals in seconds (reads model_info.json)")
    p.add_argument("--model-info", help="model_info.json of the export (instead of --export-dir)")
    p.add_argument("--output", help="write all outputs to this JSON file (with --server), "
                                    "or to this .parquet file, one row per input row "
                                    "(offline)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    p.set_defaults(func=cmd_predict)

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
    p.add_argument("--requests", type=_positive_int, default=500, help="timed requests per cell")
    p.add_argument("--warmup", type=_non_negative_int, default=20, help="untimed requests per cell")
    p.add_argument("--rounds", type=_positive_int, default=2,
                   help="alternating rounds over the models per cell")
    p.add_argument("--input", help="take candidates from this table (default: synthetic)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    p.add_argument("--ready-timeout", type=float, default=120.0,
                   help="seconds to wait for the models to become AVAILABLE")
    p.add_argument("--report", help="write the results as JSON (and .md beside it)")
    p.set_defaults(func=cmd_loadtest)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ptpm-tf",
        description="PTPM watch-time prediction: train, evaluate and compare tree-based "
                    "models on the built-in simulator or real datasets.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("simulate", help="write simulator data as CSV plus its dataset spec")
    p.add_argument("--rows", type=_positive_int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("train", help="train one model; writes RUN_DIR/metrics.json (test split)")
    p.add_argument("--model", default="ptpm", choices=MODEL_NAMES,
                   help="ptpm (default), tpm (paper-literal TPM) or a baseline of Table 2")
    _add_data_args(p)
    _add_train_args(p)
    _add_baseline_args(p)
    p.add_argument("--prepared", metavar="DIR",
                   help="stream from a prepared directory (ptpm-tf data prepare) instead of "
                        "loading the dataset; a --data-dir that is one is used the same way")
    p.add_argument("--out", help="run directory (default runs/MODEL-DATASET-sSEED)")
    p.add_argument("--logdir", help="TensorBoard logs: losses and their parts, MAE, exact "
                                    "validation XAUC, tree diagnostics (default "
                                    "RUN_DIR/tensorboard; view with tensorboard --logdir)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a trained run on its test or validation split")
    p.add_argument("--run", required=True, help="run directory written by train")
    p.add_argument("--split", default="test", choices=("test", "validation"))
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.add_argument("--decode", choices=("mean", "median"),
                   help="override the run's served decoder (tree models); metrics of both "
                        "decoders are always reported")
    p.add_argument("--calibration", metavar="OUT_DIR",
                   help="tree models: write the quantile reliability plot (PNG) and the "
                        "coverage / pinball loss per quantile level (JSON) to OUT_DIR")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="train TPM and PTPM on the simulator and print the comparison")
    p.add_argument("--rows", type=_positive_int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=_positive_int, default=8)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--export-dir", default="export",
                   help="export the models here for TF Serving ('' to skip)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("benchmark", help="several models x seeds on one dataset: paper-style "
                                          "tables (Tables 2, 3) and figures (Figs. 6-8)")
    p.add_argument("--dataset", default="simulator", help="dataset name (default simulator)")
    p.add_argument("--data-dir", help="folder holding the dataset's files")
    p.add_argument("--spec", help="dataset spec for --dataset csv")
    p.add_argument("--rows", type=_positive_int,
                   help="rows to generate (simulator) or read at most")
    p.add_argument("--models", default="mse,wlr,d2q,or,dml,cread,tpm,ptpm",
                   help="comma-separated models (default: all eight of Table 2)")
    p.add_argument("--seeds", type=_positive_int, default=3,
                   help="seeds 0..K-1 (data draw, split, init)")
    p.add_argument("--depth", type=_positive_int, default=6,
                   help="global tree depth of the main tables")
    p.add_argument("--depths", default="2,3,4,5,6,7,8",
                   help="global depths of the Fig. 8 sweep (PTPM and w/o TSL); 'none' skips it")
    p.add_argument("--depth-seeds", type=_positive_int, default=1, help="seeds of the depth sweep")
    p.add_argument("--epochs", type=_positive_int, default=8, help="maximum epochs per run")
    p.add_argument("--batch-size", type=_positive_int, default=1024)
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--patience", type=_non_negative_int, default=2)
    p.add_argument("--cread-grid", help="CREAD's a values tried on validation (default 0,2,5)")
    p.add_argument("--no-ablations", action="store_true",
                   help="skip Table 3's PTPM w/o TSL and w/o UCL runs")
    p.add_argument("--curve-points", type=_positive_int, default=4,
                   help="validation points per epoch of the Fig. 6 training curves")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", default="results/benchmark",
                   help="results folder; an interrupted benchmark resumes from it")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    q = data_sub.add_parser("inspect", help="rows, users, items, quantiles and a PNG of the "
                                            "watch-time distributions (paper Fig. 2)")
    _add_data_args(q)
    q.add_argument("--out", default="results/inspect", help="folder for summary.json and the PNG")
    q.set_defaults(func=cmd_data_inspect)
    q = data_sub.add_parser("prepare", help="convert a dataset once into time-ordered TFRecord "
                                            "shards that train/evaluate/predict stream from")
    _add_data_args(q)
    q.add_argument("--out", required=True, help="prepared directory to write")
    q.add_argument("--shard-rows", type=int, default=1_000_000,
                   help="rows per shard file (at least one shard per worker for multi_worker)")
    q.add_argument("--chunk-rows", type=int, default=500_000,
                   help="rows converted at a time (bounds the converter's memory)")
    q.add_argument("--split", default="0.8,0.1,0.1",
                   help="train,validation,test fractions (by time if there is a timestamp)")
    q.add_argument("--compression", choices=("none", "gzip"), default="none",
                   help="gzip: several times less disk, slower reads (default none)")
    q.set_defaults(func=cmd_data_prepare)

    _add_serving_parsers(sub)
    _add_debug(parser)
    return parser


def _add_debug(parser: argparse.ArgumentParser) -> None:
    """``--debug`` on ``parser`` and every subcommand's parser (so it goes anywhere)."""
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="on an error, also print its traceback")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _add_debug(child)


def _import_tensorflow_quietly(strategy: Optional[str] = None) -> None:
    """Import TensorFlow with the native stderr muted: its C++ start-up lines (oneDNN,
    CUDA probing) ignore ``TF_CPP_MIN_LOG_LEVEL`` and would bury the CLI's one-line
    errors. Python-level import errors still raise after stderr is restored.

    ``strategy='multi_worker'`` creates the MultiWorkerMirroredStrategy here, before the
    device set-up: TensorFlow accepts it only before its runtime has started."""
    import ptpm_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            try:
                import tensorflow as tf
                if strategy == "multi_worker":
                    from ptpm_tf.distribute import make_strategy
                    make_strategy(strategy)
                tf.config.list_logical_devices()  # device set-up logs its probing too
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


#: what an expected failure raises: bad data or settings (``DataError`` is a
#: ``ValueError``), and files that cannot be read or written (``OSError``)
EXPECTED_ERRORS = (ValueError, OSError)


def _fail(err: BaseException, debug: bool) -> int:
    """Report an expected failure: its traceback with ``--debug``, then one line; 2."""
    from ptpm_tf.data.dataset import one_line
    if debug:
        traceback.print_exception(err)
    text = str(err) if not isinstance(err, OSError) or not err.filename else \
        f"{err.strerror or type(err).__name__}: {err.filename}"
    print(f"ptpm-tf: error: {one_line(text or type(err).__name__)}", file=sys.stderr)
    return 2


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        _import_tensorflow_quietly(getattr(args, "strategy", None))
    except ValueError as err:  # e.g. --strategy multi_worker without TF_CONFIG
        return _fail(err, debug)
    try:
        return args.func(args)
    except EXPECTED_ERRORS as err:
        return _fail(err, debug)


if __name__ == "__main__":
    sys.exit(main())
