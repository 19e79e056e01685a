"""``ptpm-tf demo``: the README's main job. TPM and PTPM on one simulator draw and split,
one table, then the exported PTPM answering one request with its personalised tree."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ptpm_tf.cli.options import positive_int

#: the models the demo compares; the last one's export answers the example request
DEMO_MODELS = ("tpm", "ptpm")


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="train TPM and PTPM on the simulator and print the comparison")
    p.add_argument("--rows", type=positive_int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=positive_int, default=8)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--export-dir", default="export",
                   help="export the models here for TF Serving ('' to skip)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptpm_tf.config import DataConfig, ExperimentConfig, TrainingConfig
    from ptpm_tf.data.registry import load_and_split
    from ptpm_tf.evaluate import decoder_rows, format_table
    from ptpm_tf.training import train
    data = DataConfig(rows=args.rows)
    dataset, split = load_and_split(data, args.seed)
    print(f"simulator: {len(dataset)} rows; train {len(split.train)}, "
          f"validation {len(split.validation)}, test {len(split.test)} ({split.method} split)")
    rows, runs = [], {}
    for model in DEMO_MODELS:
        print(f"\n== training {model.upper()} ==")
        config = ExperimentConfig(model=model, seed=args.seed, data=data,
                                  training=TrainingConfig(epochs=args.epochs))
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
    personalised tree, answered by the last model's exported SavedModel."""
    import numpy as np
    import tensorflow as tf
    from ptpm_tf.export import INFO_FILE, SERVING_SIGNATURE, export_model
    from ptpm_tf.heads.tree.describe import describe_tree, label_unit
    print()
    paths = {}
    for name, run in runs.items():
        paths[name] = export_model(run.model, export_dir, name,
                                   example_frame=split.test.head(512))
        print(f"exported {name.upper()} to {paths[name]}")
    name = DEMO_MODELS[-1]
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
    print(f"\nOne request to the exported {name.upper()} (test row {i}: user "
          f"{candidates['user_id'].iloc[i]}, item {candidates['item_id'].iloc[i]}, duration "
          f"{row.get('duration', float('nan')):.1f} s, actual watch time "
          f"{row['watch_time']:.1f} s); {len(pruned)} of the first {len(candidates)} test rows "
          f"have a pruned tree.")
    print(describe_tree({k: v[i] for k, v in out.items()}, info["depth"],
                        leaf_bounds=info["leaf_bounds"], node_value=info["node_value"],
                        scale=label_unit(info, row.get("duration")),
                        min_prob=0.02))
    print(f"\nServe {export_dir}/ with TF Serving: docker compose up (see README).")
