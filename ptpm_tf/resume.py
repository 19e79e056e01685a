"""Resuming a killed training run from its run directory.

While ``train`` runs, the run directory holds only ``backup/``:

- ``backup/keras/``: ``tf.keras.callbacks.BackupAndRestore`` (model, optimizer and
  epoch/step counters), written at the end of every epoch or every ``backup_every`` steps.
  TensorFlow writes a checkpoint's files first and then atomically replaces the
  ``checkpoint`` pointer file, so a kill mid-write leaves the previous checkpoint in force.
- ``backup/progress/``: what ``BackupAndRestore`` does not keep: early stopping's state
  (wait count, best value and epoch, best weights) and the logs of the finished epochs,
  one file per epoch written atomically by :class:`ResumableEarlyStopping` *before* the
  epoch's checkpoint, so the state matching whichever checkpoint is restored is on disk.
- ``backup/config.json``: the configuration being trained; a restart with a different one
  is refused rather than resumed into a mismatched checkpoint.

A restart with the same command restores the last checkpoint and early stopping's state
and runs the remaining steps, so it ends with the same number of optimizer steps and epochs
as an uninterrupted run. It does not reproduce the uninterrupted run bit for bit: the
shuffling and the pruning draws restart from the seed. If the kill came after the last
epoch (during the final evaluation or write), training is not repeated: the best weights
are taken from ``backup/progress``. The finished run replaces the directory atomically
(:func:`ptpm_tf.distribute.install_dir`), which removes ``backup/``.

With several workers only the chief writes here; every worker reads it back on a restart,
so on several machines the run directory must be on storage they all see.
"""
from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import tensorflow as tf

from ptpm_tf import distribute

#: fields of ``TrainConfig`` that may change between an interrupted run and its restart
RESTART_MAY_CHANGE = ("strategy", "backup_every")


class RunBackup:
    """The ``backup/`` folder of a run directory (see the module docstring)."""

    def __init__(self, out_dir: Path, writer: bool):
        self.root = Path(out_dir) / "backup"
        self.keras_dir = self.root / "keras"
        self.progress_dir = self.root / "progress"
        self.writer = writer

    def check_config(self, config) -> None:
        """Record ``config`` (chief), or refuse to resume a backup of another one."""
        current = _fingerprint(config)
        path = self.root / "config.json"
        if path.exists():
            saved = json.loads(path.read_text())
            if saved != current:
                changed = sorted(k for k in set(saved) | set(current)
                                 if saved.get(k) != current.get(k))
                raise ValueError(
                    f"{self.root} holds an interrupted run with a different configuration "
                    f"({', '.join(changed)} differ); rerun the same command to resume it, "
                    f"or delete {self.root} to start over")
        elif self.writer:
            self.root.mkdir(parents=True, exist_ok=True)
            distribute.write_atomic(path, json.dumps(current, indent=2, sort_keys=True))

    def latest_progress(self) -> Optional[Dict[str, Any]]:
        epochs = list_progress(self.progress_dir)
        return load_progress(self.progress_dir, epochs[-1]) if epochs else None


def _fingerprint(config) -> Dict[str, Any]:
    d = json.loads(json.dumps(dataclasses.asdict(config), default=list))
    return {k: v for k, v in d.items() if k not in RESTART_MAY_CHANGE}


def list_progress(progress_dir: Path) -> List[int]:
    """Epochs with a saved progress state, ascending."""
    if not Path(progress_dir).is_dir():
        return []
    found = (re.fullmatch(r"epoch-(\d+)\.json", p.name) for p in Path(progress_dir).iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def load_progress(progress_dir: Path, epoch: int) -> Dict[str, Any]:
    state = json.loads((Path(progress_dir) / f"epoch-{epoch}.json").read_text())
    if state.get("best_weights"):
        with np.load(Path(progress_dir) / state["best_weights"]) as npz:
            state["best_weights_arrays"] = [npz[f"w{i}"] for i in range(len(npz.files))]
    return state


class ResumableEarlyStopping(tf.keras.callbacks.EarlyStopping):
    """``EarlyStopping`` whose state survives a restart, plus a record of the epoch logs.

    After every epoch it writes ``epoch-<e>.json`` (wait count, best value and epoch, the
    logs of every epoch so far, whether training is finished) and, when the best epoch
    changed, ``best-<e>.npz`` (the weights early stopping will restore) into
    ``progress_dir``. When a resumed ``fit`` starts at epoch ``k`` it reloads the state
    written after epoch ``k - 1``. Put it *before* ``BackupAndRestore`` in the callback
    list, so that each epoch's state is on disk before that epoch's checkpoint.

    ``epoch_logs`` is the full history (restored epochs included); ``writer=False`` (the
    non-chief workers) reads but never writes.
    """

    def __init__(self, progress_dir: Optional[Path] = None, writer: bool = True,
                 max_epochs: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.progress_dir = Path(progress_dir) if progress_dir is not None else None
        self.writer = writer
        self.max_epochs = max_epochs
        self.epoch_logs: List[Dict[str, float]] = []
        self.restored_epochs = 0
        self._first_epoch_seen = False

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.epoch_logs = []
        self.restored_epochs = 0
        self._first_epoch_seen = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._first_epoch_seen:
            self._first_epoch_seen = True
            if epoch > 0 and self.progress_dir is not None:
                self.restore(epoch - 1)

    def restore(self, epoch: int) -> None:
        """Take over the state written after ``epoch`` (or the latest one before it)."""
        saved = [e for e in list_progress(self.progress_dir) if e <= epoch]
        if not saved:
            return
        if saved[-1] != epoch:
            tf.get_logger().warning("early-stopping state of epoch %d missing; using epoch %d's",
                                    epoch, saved[-1])
        state = load_progress(self.progress_dir, saved[-1])
        self.wait, self.best = state["wait"], state["best"]
        self.best_epoch, self.stopped_epoch = state["best_epoch"], state["stopped_epoch"]
        self.best_weights = state.get("best_weights_arrays")
        self.epoch_logs = list(state["epoch_logs"])
        self.restored_epochs = len(self.epoch_logs)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_logs.append({k: float(v) for k, v in (logs or {}).items()})
        best_weights_before = self.best_weights
        super().on_epoch_end(epoch, logs)
        if self.progress_dir is not None and self.writer:
            finished = bool(self.model.stop_training) or (
                self.max_epochs is not None and epoch + 1 >= self.max_epochs)
            self._save(epoch, self.best_weights is not best_weights_before, finished)

    def _save(self, epoch: int, new_best: bool, finished: bool) -> None:
        d = self.progress_dir
        d.mkdir(parents=True, exist_ok=True)
        weights_file = None
        if self.best_weights is not None:
            weights_file = f"best-{self.best_epoch}.npz"
            if new_best or not (d / weights_file).exists():
                buf = io.BytesIO()
                np.savez(buf, **{f"w{i}": w for i, w in enumerate(self.best_weights)})
                distribute.write_atomic(d / weights_file, buf.getvalue())
        best = float(self.best)
        state = {"epoch": epoch, "wait": int(self.wait), "best": best,
                 "best_epoch": int(self.best_epoch), "stopped_epoch": int(self.stopped_epoch),
                 "finished": finished, "best_weights": weights_file,
                 "iterations": int(self.model.optimizer.iterations.numpy()),
                 "epoch_logs": self.epoch_logs}
        distribute.write_atomic(d / f"epoch-{epoch}.json", json.dumps(state))
        self._prune(keep_from=epoch - 1)

    def _prune(self, keep_from: int) -> None:
        """Drop states older than the previous epoch's and weights no state refers to."""
        d = self.progress_dir
        for e in list_progress(d):
            if e < keep_from:
                (d / f"epoch-{e}.json").unlink(missing_ok=True)
        used = {json.loads((d / f"epoch-{e}.json").read_text()).get("best_weights")
                for e in list_progress(d)}
        for p in d.glob("best-*.npz"):
            if p.name not in used:
                p.unlink(missing_ok=True)

