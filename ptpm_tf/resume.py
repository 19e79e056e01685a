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
(:func:`ptpm_tf.atomic_io.install_dir`), which removes ``backup/``.

With several workers only the chief writes here; every worker reads it back on a restart,
so on several machines the run directory must be on storage they all see.
"""
from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import tensorflow as tf

from ptpm_tf import atomic_io

#: settings of an ``ExperimentConfig`` that may change between an interrupted run and its restart
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
            try:
                saved = json.loads(path.read_text())
            except ValueError:  # torn by a kill: nothing can resume from it
                saved = None
            if saved != current and self.has_progress():
                changed = sorted(k for k in set(saved) | set(current)
                                 if saved.get(k) != current.get(k))
                raise ValueError(
                    f"{self.root} holds an interrupted run with a different configuration "
                    f"({', '.join(changed)} differ); rerun the same command to resume it, "
                    f"or delete {self.root} to start over")
            elif saved != current and self.writer:
                # a run that failed or was killed before its first backup: nothing to resume
                atomic_io.write_atomic(path, json.dumps(current, indent=2, sort_keys=True))
        elif self.writer:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_io.write_atomic(path, json.dumps(current, indent=2, sort_keys=True))

    def has_progress(self) -> bool:
        """Whether training got as far as a backup (a checkpoint or an epoch's state)."""
        keras = self.keras_dir.is_dir() and any(self.keras_dir.iterdir())
        return keras or bool(list_progress(self.progress_dir))

    def latest_progress(self) -> Optional[Dict[str, Any]]:
        epochs = list_progress(self.progress_dir)
        return load_progress(self.progress_dir, epochs[-1]) if epochs else None


def _fingerprint(config) -> Dict[str, Any]:
    d = json.loads(json.dumps(config.flat(), default=list))
    return {k: v for k, v in d.items() if k not in RESTART_MAY_CHANGE}


def list_progress(progress_dir: Path) -> List[int]:
    """Epochs with a saved progress state, ascending."""
    if not Path(progress_dir).is_dir():
        return []
    found = (re.fullmatch(r"epoch-(\d+)\.json", p.name) for p in Path(progress_dir).iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def list_running(progress_dir: Path) -> List[int]:
    """Steps with a saved mid-epoch running state, ascending."""
    found = (re.fullmatch(r"running-(\d+)\.npz", p.name) for p in Path(progress_dir).iterdir())
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
    non-chief workers) reads but never writes. ``train_seconds`` is the training time of
    the whole run: the time saved with the restored state plus this ``fit``'s.

    With ``save_freq`` (steps; ``BackupAndRestore`` saves mid-epoch at the same steps) it
    also writes ``running-<step>.npz`` before each mid-epoch checkpoint: the running means
    of the epoch's metrics and the training time so far. A ``fit`` resumed mid-epoch puts
    them back, so that epoch's logs cover all its steps, not only the resumed ones (one
    replica only: summed replica-local metric variables cannot be assigned across replicas).
    """

    def __init__(self, progress_dir: Optional[Path] = None, writer: bool = True,
                 max_epochs: Optional[int] = None, save_freq: Optional[int] = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.progress_dir = Path(progress_dir) if progress_dir is not None else None
        self.writer = writer
        self.max_epochs = max_epochs
        self.save_freq = save_freq
        self._epoch = 0
        self._start_fit()
        # the batch hook reads no logs: taking them as tensors spares a sync per step
        self._supports_tf_logs = True

    def _start_fit(self) -> None:
        """The state of a ``fit`` that has not restored anything yet."""
        self.epoch_logs: List[Dict[str, float]] = []
        self.restored_epochs = 0
        self.seconds_before = 0.0
        self._first_epoch_seen = False
        self._fit_start = time.perf_counter()
        self._batches = 0

    def _implements_train_batch_hooks(self):
        return bool(self.save_freq)

    @property
    def train_seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self._fit_start

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._start_fit()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if not self._first_epoch_seen:
            self._first_epoch_seen = True
            if epoch > 0 and self.progress_dir is not None:
                self.restore(epoch - 1)
            if self.progress_dir is not None:
                self._restore_running(epoch)

    def on_train_batch_end(self, batch, logs=None):
        if not self.save_freq:
            return
        self._batches += 1  # counted as BackupAndRestore counts, to save at its steps
        if self._batches >= self.save_freq:
            self._batches = 0
            if self.progress_dir is not None and self.writer:
                self._save_running()

    def _save_running(self) -> None:
        d = self.progress_dir
        d.mkdir(parents=True, exist_ok=True)
        step = int(self.model.optimizer.iterations.numpy())
        # reading a replica-local metric under several replicas is a collective that only
        # this (the chief's) callback would join: keep the time only
        values = ([] if self.model.distribute_strategy.num_replicas_in_sync > 1 else
                  [v.numpy() for m in self.model.metrics for v in m.variables])
        buf = io.BytesIO()
        np.savez(buf, epoch=self._epoch, seconds=self.train_seconds,
                 **{f"m{i}": v for i, v in enumerate(values)})
        atomic_io.write_atomic(d / f"running-{step}.npz", buf.getvalue())
        for old in list_running(d)[:-2]:  # the checkpoint in force matches one of the last two
            (d / f"running-{old}.npz").unlink(missing_ok=True)

    def _restore_running(self, epoch: int) -> None:
        """Put back the epoch's running metrics and time if the restored checkpoint was
        taken mid-epoch ``epoch``."""
        step = int(self.model.optimizer.iterations.numpy())
        path = self.progress_dir / f"running-{step}.npz"
        if step == 0 or not path.exists():
            return
        with np.load(path) as saved:
            if int(saved["epoch"]) != epoch:
                return  # taken at the epoch's last step: this epoch starts afresh
            self.seconds_before = float(saved["seconds"])
            if self.model.distribute_strategy.num_replicas_in_sync > 1:
                return
            variables = [v for m in self.model.metrics for v in m.variables]
            if len(saved.files) - 2 != len(variables):
                return
            for i, v in enumerate(variables):
                v.assign(saved[f"m{i}"])

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
        self.seconds_before = float(state.get("train_seconds", 0.0))

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}  # tf logs (see __init__)
        self.epoch_logs.append(dict(logs))
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
                atomic_io.write_atomic(d / weights_file, buf.getvalue())
        best = float(self.best)
        state = {"epoch": epoch, "wait": int(self.wait), "best": best,
                 "best_epoch": int(self.best_epoch), "stopped_epoch": int(self.stopped_epoch),
                 "finished": finished, "best_weights": weights_file,
                 "iterations": int(self.model.optimizer.iterations.numpy()),
                 "train_seconds": self.train_seconds, "epoch_logs": self.epoch_logs}
        atomic_io.write_atomic(d / f"epoch-{epoch}.json", json.dumps(state))
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

