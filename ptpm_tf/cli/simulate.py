"""``ptpm-tf simulate``: the built-in simulator's data as a CSV file plus its dataset spec."""
from __future__ import annotations

import argparse
from pathlib import Path

from ptpm_tf.cli.options import positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("simulate", help="write simulator data as CSV plus its dataset spec")
    p.add_argument("--rows", type=positive_int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptpm_tf.data.simulator import simulate as draw, write_simulation
    ds = draw(rows=args.rows, seed=args.seed)
    csv_path, spec_path = write_simulation(ds, Path(args.out))
    print(f"wrote {len(ds)} rows to {csv_path}\nspec: {spec_path}")
    return 0
