"""``ptpm-tf data inspect | prepare``: the dataset tools."""
from __future__ import annotations

import argparse
import sys

from ptpm_tf.cli.options import add_settings, positive_int


def add_parser(sub) -> None:
    from ptpm_tf.config import DataConfig
    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    q = data_sub.add_parser("inspect", help="rows, users, items, quantiles and a PNG of the "
                                            "watch-time distributions (paper Fig. 2)")
    add_settings(q, DataConfig, skip=("split", "prepared", "fit_rows"))
    q.add_argument("--seed", type=int, default=0, help="seed of the simulator's draw")
    q.add_argument("--out", default="results/inspect", help="folder for summary.json and the PNG")
    q.set_defaults(func=run_inspect)
    q = data_sub.add_parser("prepare", help="convert a dataset once into time-ordered TFRecord "
                                            "shards that train/evaluate/predict stream from")
    add_settings(q, DataConfig, skip=("prepared", "fit_rows"))
    q.add_argument("--seed", type=int, default=0, help="seed of the simulator's draw")
    q.add_argument("--out", required=True, help="prepared directory to write")
    q.add_argument("--shard-rows", type=positive_int, default=1_000_000,
                   help="rows per shard file (at least one shard per worker for multi_worker)")
    q.add_argument("--chunk-rows", type=positive_int, default=500_000,
                   help="rows converted at a time (bounds the converter's memory)")
    q.add_argument("--compression", choices=("none", "gzip"), default="none",
                   help="gzip: several times less disk, slower reads (default none)")
    q.set_defaults(func=run_prepare)


def run_inspect(args: argparse.Namespace) -> int:
    from ptpm_tf.data.inspect import run as inspect_run
    return inspect_run(args.dataset, args.data_dir, args.spec, args.out, args.rows, args.strict)


def run_prepare(args: argparse.Namespace) -> int:
    from ptpm_tf.config import DataConfig
    from ptpm_tf.data.dataset import LoadReport
    from ptpm_tf.data.prepared import prepare, print_progress
    DataConfig(dataset=args.dataset, split=args.split)  # the split's own checks
    meta = prepare(args.dataset, args.out, data_dir=args.data_dir, spec=args.spec,
                   rows=args.rows, seed=args.seed, strict=args.strict, split=args.split,
                   shard_rows=args.shard_rows, chunk_rows=args.chunk_rows,
                   compression="" if args.compression == "none" else "GZIP",
                   progress=print_progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
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
