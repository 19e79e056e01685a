"""Settings chosen on the validation split (CREAD's threshold shape ``a``).

A head class may declare ``selection_grid = {name: (values...)}``: :func:`train_selected`
then trains one model per value (same data, same split), scores each on the
**validation** split and keeps the one with the lowest validation MAE (ties: higher
validation XAUC). The test split is evaluated for the chosen model only, by ``train``'s
usual final evaluation. A value fixed in ``config.head`` skips the search.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Optional

from ptpm_tf.heads import head_class


def selection_grid(model: str) -> dict:
    """``{setting: (values...)}`` chosen on the validation split for ``model``."""
    return dict(head_class(model).selection_grid)


def selection_score(val_mae: float, val_xauc: float) -> tuple:
    """The key candidates are ranked by (lowest first): validation MAE, then the higher
    validation XAUC."""
    return (val_mae, -val_xauc)


def train_selected(config, out_dir: Optional[Path] = None, *, dataset=None, split=None,
                   verbose=None, logdir: Optional[Path] = None):
    """``train``, with the head's ``selection_grid`` searched on the validation split.
    With ``logdir``, each candidate logs to ``logdir/<key>-<value>``."""
    from ptpm_tf.data.registry import load_and_split
    from ptpm_tf.evaluate import evaluate_frame
    from ptpm_tf.training import logs_in_run, save_run, train

    grid = {k: v for k, v in selection_grid(config.model).items() if k not in config.head}
    if not grid:
        return train(config, out_dir, dataset=dataset, split=split, verbose=verbose,
                     logdir=logdir)
    if len(grid) != 1:
        raise ValueError("only one-dimensional selection grids are supported")
    if config.data.prepared is not None:
        raise ValueError(f"{config.model}'s search over {', '.join(grid)} on the validation "
                         "split runs in memory; fix the value (e.g. --cread-a) to train "
                         "from a prepared directory")
    (key, values), = grid.items()
    if dataset is None:
        dataset, split = load_and_split(config.data, config.seed)
    elif split is None:
        raise ValueError("a dataset passed in comes with its split")
    carry = logs_in_run(logdir, out_dir)
    if carry:  # the search is not resumable: its logs start anew
        shutil.rmtree(Path(out_dir) / carry[0], ignore_errors=True)
    best, tried = None, []
    for value in values:
        cfg = dataclasses.replace(config, head={**config.head, key: value})
        run = train(cfg, None, dataset=dataset, split=split, verbose=verbose,
                    logdir=None if logdir is None else Path(logdir) / f"{key}-{value}")
        val = evaluate_frame(run.model, split.validation, dataset, model_name=config.model,
                             diagnostics=False)
        tried.append({key: value, "val_mae": val["mae"], "val_xauc": val["xauc"]})
        score = (val["mae"], -val["xauc"])
        if best is None or score < best[0]:
            best = (score, run, value)
    _, run, value = best
    run.metrics["selection"] = {"criterion": "validation MAE", "chosen": {key: value},
                                "candidates": tried}
    if out_dir is not None:
        save_run(run, Path(out_dir), carry=carry)
    return run
