"""Summarise decoder experiment runs (issue 7) as Markdown tables: for each group of run
directories ``<name>-s<seed>``, the mean ± std over seeds (and per seed) of the test MAE and
XAUC of both decoders, the average learned tree depth and the epochs run.

    python -m ptpm_tf.benchmarks.decoder_summary runs/exp tpm ptpm ptpm-med ptpm-med-rmed ... \
        [--ref ptpm-med]

With ``--ref NAME``, also the paired (same seed = same data and split) differences of each
group's median-decoder MAE and XAUC from group NAME's.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _stat(xs, digits):
    a = np.asarray(xs, float)
    s = f"{a.mean():.{digits}f}"
    return s + (f" ± {a.std(ddof=1):.{digits}f}" if len(a) > 1 else "")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m ptpm_tf.benchmarks.decoder_summary",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="folder of run directories NAME-sSEED")
    p.add_argument("names", nargs="+", help="run groups (NAME of NAME-sSEED)")
    p.add_argument("--ref", help="group the paired differences are taken from")
    args = p.parse_args(argv)
    root, names, ref = Path(args.root), args.names, args.ref
    print("| runs | seeds | served | MAE mean-dec. | MAE median-dec. | ΔMAE | XAUC mean-dec. | "
          "XAUC median-dec. | ΔXAUC | avg depth | epochs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    oracle = []
    for name in names:
        ms = [json.loads(p.read_text()) for p in sorted(root.glob(f"{name}-s*/metrics.json"))]
        if not ms:
            continue
        oracle += [(m["oracle_mae"], m["oracle_xauc"]) for m in ms if "oracle_mae" in m]
        g = lambda k: [m[k] for m in ms]
        d_mae = [100 * (b / a - 1) for a, b in zip(g("mae_mean"), g("mae_median"))]
        d_xauc = [b - a for a, b in zip(g("xauc_mean"), g("xauc_median"))]
        print(f"| {name} | {len(ms)} | {ms[0].get('decode')} | {_stat(g('mae_mean'), 3)} | "
              f"{_stat(g('mae_median'), 3)} | {_stat(d_mae, 1)} % | {_stat(g('xauc_mean'), 4)} | "
              f"{_stat(g('xauc_median'), 4)} | {_stat(d_xauc, 4)} | "
              f"{_stat(g('avg_tree_depth'), 2)} | {_stat(g('epochs_run'), 1)} |")
    if oracle:
        o = np.asarray(sorted(set(oracle)))
        print(f"| oracle (median / mean) | {len(o)} | | {_stat(o[:, 0], 3)} | | | "
              f"{_stat(o[:, 1], 4)} | | | | |")
    if ref is not None:
        load = lambda n: {p.parent.name.rsplit("-s", 1)[1]: json.loads(p.read_text())
                          for p in sorted(root.glob(f"{n}-s*/metrics.json"))}
        base = load(ref)
        print()
        print(f"Paired differences from {ref} (median decoder; same seeds):")
        print()
        print("| runs | seeds | ΔMAE (s) | ΔXAUC | global-tree ΔMAE (s) |")
        print("|---|---|---|---|---|")
        for name in names:
            if name == ref:
                continue
            runs = load(name)
            common = sorted(set(runs) & set(base))
            if not common:
                continue
            dm = [runs[s]["mae_median"] - base[s]["mae_median"] for s in common]
            dx = [runs[s]["xauc_median"] - base[s]["xauc_median"] for s in common]
            dg = [runs[s]["mae_global_tree_median"] - base[s]["mae_global_tree_median"]
                  for s in common]
            print(f"| {name} | {len(common)} | {_stat(dm, 3)} | {_stat(dx, 4)} | {_stat(dg, 3)} |")
    print()
    print("Per seed (MAE mean-dec. / median-dec., XAUC mean-dec. / median-dec.):")
    for name in names:
        for p in sorted(root.glob(f"{name}-s*/metrics.json")):
            m = json.loads(p.read_text())
            print(f"- {p.parent.name}: {m['mae_mean']:.3f} / {m['mae_median']:.3f}, "
                  f"{m['xauc_mean']:.4f} / {m['xauc_median']:.4f}, depth "
                  f"{m['avg_tree_depth']:.2f}, epochs {m['epochs_run']}")


if __name__ == "__main__":
    main()
