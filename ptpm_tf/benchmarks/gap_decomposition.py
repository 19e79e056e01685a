"""Where the gap to the oracle lies (issue 11): the heads' own error against what the
features cannot tell the tower.

Each model is trained twice on the same simulator rows and split: on the observable
features, and with the simulator's hidden per-row state added as numeric inputs (the
parameters of the row's watch-time mixture, the sufficient statistic of its conditional
distribution). Given those, a head that fits the conditional distribution exactly would
reach the oracle, so what is left of the gap is the head's own error (plus finite data);
the difference between the two runs is what the observable features leave unknown.

    python -m ptpm_tf.benchmarks.gap_decomposition --rows 300000 --seeds 0,1,2 \\
        --variants dml,d2q,tpm-best,ptpm-best --out results/gap

Early stopping on validation MAE, as in the benchmark; test metrics reported.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

#: the mixture's parameters given to the model as inputs in the "hidden state" runs
HIDDEN = ("p_skip", "p_partial", "p_complete", "p_replay", "kum_a", "kum_b", "replay_mean")


def with_hidden_state(simulation):
    """The simulation's dataset with the mixture's parameters as extra numeric columns."""
    from ptpm_tf.data.dataset import Dataset
    ds = simulation.dataset
    frame = ds.frame.copy()
    for name in HIDDEN:
        frame[f"hidden_{name}"] = getattr(simulation.mixture, name)
    return Dataset(ds.name, frame, categorical=list(ds.categorical),
                   numeric=[*ds.numeric, *(f"hidden_{n}" for n in HIDDEN)], report=ds.report)


def run_one(variant: str, dataset, split, seed: int, rows: int, epochs: int) -> dict:
    """Train ``variant`` (a benchmark variant name) on ``split``; its validation and test
    MAE / XAUC and the epochs it ran."""
    from ptpm_tf.benchmarks.variants import VARIANTS
    from ptpm_tf.config import DataConfig, ExperimentConfig, TrainingConfig
    from ptpm_tf.evaluate import evaluate_frame
    from ptpm_tf.training import train
    model, overrides = VARIANTS[variant]
    config = ExperimentConfig(model=model, preset="paper", seed=seed,
                              data=DataConfig(rows=rows),
                              training=TrainingConfig(epochs=epochs), head=dict(overrides))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = train(config, None, dataset=dataset, split=split, verbose=0)
    val = evaluate_frame(run.model, split.validation, dataset, model_name=model,
                         diagnostics=False)
    return {"val_mae": val["mae"], "val_xauc": val["xauc"], "mae": run.metrics["mae"],
            "xauc": run.metrics["xauc"], "oracle_mae": run.metrics["oracle_mae"],
            "oracle_xauc": run.metrics["oracle_xauc"],
            "epochs": len(run.history.get("loss", []))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--rows", type=int, default=300_000, help="simulator rows")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (data, split, weights)")
    ap.add_argument("--variants", default="dml,d2q,tpm-best,ptpm-best",
                    help="benchmark variants (ptpm_tf.benchmarks.variants.VARIANTS)")
    ap.add_argument("--epochs", type=int, default=8, help="maximum epochs (early stopping)")
    ap.add_argument("--out", default="results/gap", help="folder for results.json")
    args = ap.parse_args(argv)

    import ptpm_tf  # noqa: F401  (Keras 2 before TensorFlow)
    from ptpm_tf.data.simulator import simulate_with_truth
    from ptpm_tf.data.splits import split_dataset
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else []
    done = {(r["seed"], r["variant"], r["inputs"]) for r in results}
    for seed in (int(s) for s in args.seeds.split(",")):
        sim = simulate_with_truth(args.rows, seed)
        for inputs, dataset in (("observable", sim.dataset),
                                ("hidden state", with_hidden_state(sim))):
            split = split_dataset(dataset, seed=seed)
            for variant in args.variants.split(","):
                if (seed, variant, inputs) in done:
                    continue
                t = time.perf_counter()
                r = run_one(variant, dataset, split, seed, args.rows, args.epochs)
                r.update(seed=seed, variant=variant, inputs=inputs,
                         seconds=round(time.perf_counter() - t, 1))
                results.append(r)
                path.write_text(json.dumps(results, indent=1))
                print(f"seed {seed} {inputs:12s} {variant:10s} val MAE {r['val_mae']:.3f} "
                      f"test MAE {r['mae']:.3f} XAUC {r['xauc']:.4f} (oracle "
                      f"{r['oracle_mae']:.3f} / {r['oracle_xauc']:.4f}), {r['epochs']} epochs",
                      flush=True)
    print(summary(results))
    return 0


def summary(results) -> str:
    """Mean test MAE / XAUC per variant and inputs, and the share of the gap to the oracle
    that the hidden state closes."""
    lines = ["| model | inputs | seeds | test MAE | test XAUC | MAE gap to oracle |",
             "|---|---|---|---|---|---|"]
    for variant in dict.fromkeys(r["variant"] for r in results):
        for inputs in ("observable", "hidden state"):
            rs = [r for r in results if r["variant"] == variant and r["inputs"] == inputs]
            if not rs:
                continue
            mae = np.mean([r["mae"] for r in rs])
            gap = np.mean([r["mae"] - r["oracle_mae"] for r in rs])
            lines.append(f"| {variant} | {inputs} | {len(rs)} | {mae:.3f} | "
                         f"{np.mean([r['xauc'] for r in rs]):.4f} | {gap:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
