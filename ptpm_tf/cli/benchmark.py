"""``ptpm-tf benchmark``: several models x seeds on one dataset, the paper's tables and
figures (:mod:`ptpm_tf.benchmarks.suite`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ptpm_tf.cli.options import add_settings, section_values


def add_parser(sub) -> None:
    from ptpm_tf.benchmarks.suite import BenchmarkConfig
    p = sub.add_parser("benchmark", help="several models x seeds on one dataset: paper-style "
                                          "tables (Tables 2, 3) and figures (Figs. 6-8)")
    add_settings(p, BenchmarkConfig)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Every model over a dataset for several seeds: tables.md, results.json, PNGs."""
    from ptpm_tf.benchmarks.suite import BenchmarkConfig, run_benchmark
    config = BenchmarkConfig(**section_values(args, BenchmarkConfig))
    results = run_benchmark(config, progress=not args.no_progress)
    out = Path(config.out)
    print((out / "tables.md").read_text())
    print(f"results in {out}: results.json, tables.md, "
          + ", ".join(results.get("figures", [])))
    return 0
