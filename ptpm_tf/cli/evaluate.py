"""``ptpm-tf evaluate``: a trained run on its test or validation split."""
from __future__ import annotations

import argparse
from pathlib import Path

from ptpm_tf import atomic_io


def add_parser(sub) -> None:
    from ptpm_tf.heads.tree.config import DECODERS
    p = sub.add_parser("evaluate", help="evaluate a trained run on its test or validation split")
    p.add_argument("--run", required=True, help="run directory written by train")
    p.add_argument("--split", default="test", choices=("test", "validation"))
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.add_argument("--decode", choices=DECODERS,
                   help="serve another decoder than the run's (tree models); metrics of every "
                        "decoder are always reported")
    p.add_argument("--calibration", metavar="OUT_DIR",
                   help="tree models: write the quantile reliability plot (PNG) and the "
                        "coverage / pinball loss per quantile level (JSON) to OUT_DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptpm_tf.evaluate import decoder_rows, evaluate_frame, evaluate_prepared, format_table
    from ptpm_tf.training import load_run
    head = {"decode": args.decode} if args.decode is not None else None
    config, model, dataset, split = load_run(Path(args.run), head=head)
    if split is None:  # streamed from a prepared directory
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
        atomic_io.write_json(Path(args.json), result, indent=2)
        print(f"metrics written to {args.json}")
    if args.calibration:
        from ptpm_tf.calibration import calibration_report, write_calibration
        # a prepared run's rows are a subsample without the simulator's row indices
        report = calibration_report(model, frame, dataset,
                                    config=config if split is not None else None)
        paths = write_calibration(report, Path(args.calibration))
        print(f"calibration: {', '.join(str(p) for p in paths)}")
    return 0
