"""``ptpm-tf train``: one model on one dataset, written to a run directory."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from ptpm_tf.cli.options import add_head_settings, add_settings, experiment_config


def add_parser(sub) -> None:
    from ptpm_tf.config import DEFAULT_MODEL, DataConfig, TowerConfig, TrainingConfig
    from ptpm_tf.heads import MODELS
    p = sub.add_parser("train", help="train one model; writes RUN_DIR/metrics.json (test split)")
    p.add_argument("--model", default=DEFAULT_MODEL, choices=tuple(MODELS),
                   help=f"tpm or ptpm (default {DEFAULT_MODEL}: the better on validation "
                        f"with the best preset, BENCHMARKS.md) or a baseline of Table 2")
    p.add_argument("--seed", type=int, default=0, help="seed for data, split and training")
    p.add_argument("--out", help="run directory (default runs/MODEL-DATASET-sSEED)")
    p.add_argument("--logdir", help="TensorBoard logs: losses and their parts, MAE, exact "
                                    "validation XAUC, tree diagnostics (default "
                                    "RUN_DIR/tensorboard; view with tensorboard --logdir)")
    add_settings(p.add_argument_group("data"), DataConfig)
    add_settings(p.add_argument_group("training"), TrainingConfig)
    add_settings(p.add_argument_group("tower"), TowerConfig)
    add_head_settings(p)
    p.set_defaults(func=run)


def prepared_dir(args: argparse.Namespace) -> Optional[str]:
    """``--prepared DIR``, or ``--data-dir`` when it names a prepared directory."""
    from ptpm_tf.data.prepared import is_prepared
    prepared = getattr(args, "prepared", None)
    if prepared is None and is_prepared(args.data_dir):
        prepared = args.data_dir
    return prepared


def run(args: argparse.Namespace) -> int:
    from ptpm_tf.evaluate import decoder_rows, format_table
    from ptpm_tf.selection import train_selected
    from ptpm_tf.training import TENSORBOARD_DIR
    config = experiment_config(args, args.model, prepared=prepared_dir(args))
    out = Path(args.out or f"runs/{args.model}-{args.dataset}-s{args.seed}")
    logdir = Path(args.logdir) if args.logdir else out / TENSORBOARD_DIR
    run = train_selected(config, out, logdir=logdir)  # = train, plus CREAD's search of a
    if config.data.prepared is None:  # a streamed run's load report is in metrics.json
        print(f"data: {run.dataset.report.summary()}")
    if "selection" in run.metrics:
        print(f"chosen on the validation split: {run.metrics['selection']['chosen']}")
    print(format_table(decoder_rows([run.metrics]),
                       run.metrics if "oracle_mae" in run.metrics else None))
    print(f"run written to {out} ({out / 'metrics.json'})")
    return 0
