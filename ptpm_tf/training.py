"""Training one model on one dataset: split, fit with validation early stopping, write a
run directory that :mod:`ptpm_tf.evaluate` (and export) can rebuild the model from.

A run directory holds ``config.json`` (everything needed to rebuild the model and reload
its data and split), ``weights.*`` (a TF checkpoint, tree constants included),
``split.npz`` (+ ``.json``), ``history.json`` and ``metrics.json`` (test split). It is
written in a temporary directory and renamed into place, so it is never half-written;
while training runs it holds only ``backup/``, from which a killed run resumes
(:mod:`ptpm_tf.resume`).

``ExperimentConfig.training.strategy`` picks the ``tf.distribute`` strategy (``default``,
``mirrored``, ``multi_worker``; :mod:`ptpm_tf.distribute`): the model, its head constants and the
optimizer are built under the strategy's scope, ``batch_size`` is the global batch, and
with several workers the input is sharded by data and only the chief writes the run
directory.

``train(..., logdir=DIR)`` writes TensorBoard logs (:mod:`ptpm_tf.summaries`); ``ptpm-tf
train`` writes them to ``RUN_DIR/tensorboard`` unless told otherwise. Logs inside the run
directory are carried into the finished run; a fresh (not resumed) run starts them anew.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import pandas as pd
import tensorflow as tf

from ptpm_tf import atomic_io, distribute
from ptpm_tf.data.dataset import DURATION, LABEL, Dataset, DataError
from ptpm_tf.data.pipeline import make_tf_dataset
from ptpm_tf.data.prepared import Prepared, open_prepared
from ptpm_tf.data.registry import load, load_and_split
from ptpm_tf.data.splits import Split, split_dataset
from ptpm_tf.features import FeatureEncoder
from ptpm_tf.config import ExperimentConfig
from ptpm_tf.heads import build_head, head_class
from ptpm_tf.model import WatchTimeModel
from ptpm_tf.resume import ResumableEarlyStopping, RunBackup
from ptpm_tf.tower import Tower


@dataclasses.dataclass
class Run:
    """A trained model with its data, split and results."""

    config: ExperimentConfig
    model: WatchTimeModel
    #: the loaded dataset, or the :class:`Prepared` directory streamed from
    dataset: Union[Dataset, Prepared]
    #: the in-memory split (None when streamed: the prepared directory holds the split)
    split: Optional[Split]
    history: Dict[str, list]
    metrics: Dict[str, Any]
    seconds: float


#: where ``ptpm-tf train`` writes TensorBoard logs by default, inside the run directory
TENSORBOARD_DIR = "tensorboard"
#: what a run directory holds; train refuses to replace a directory holding anything else
RUN_ENTRIES = ("config.json", "history.json", "metrics.json", "split.npz", "split.npz.json",
               "checkpoint", "backup", TENSORBOARD_DIR)


def check_run_dir(out_dir: Path) -> None:
    """Refuse ``out_dir`` if it holds files that are not a run's: the finished run replaces
    the whole directory, and must not take a user's other files with it."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        if out_dir.exists():
            raise ValueError(f"{out_dir} exists and is not a directory")
        return
    foreign = sorted(p.name for p in out_dir.iterdir()
                     if p.name not in RUN_ENTRIES and not p.name.startswith(("weights.", ".")))
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ValueError(f"{out_dir} holds files that are not part of a run ({shown}); a run "
                         f"replaces its directory, so choose an empty or a run directory")


def fit_head_to_data(config: ExperimentConfig, dataset) -> ExperimentConfig:
    """``config`` with the head settings the dataset allows (``Head.settings_for``: a
    ratio tree on a dataset without a duration falls back to seconds with a one-line
    notice, unless the ratio space was asked for explicitly). ``dataset``: a ``Dataset``
    or a prepared directory (both have ``name`` and ``numeric``)."""
    settings = config.head_config()
    fitted, notice = head_class(config.model).settings_for(settings, dataset.name,
                                                           dataset.numeric, set(config.head))
    if notice:
        print(f"ptpm-tf: note: {notice}", file=sys.stderr)
    changed = {f.name: getattr(fitted, f.name) for f in dataclasses.fields(fitted)
               if getattr(fitted, f.name) != getattr(settings, f.name)}
    return config.replace(**changed) if changed else config


def check_labels(split: Split) -> None:
    """Refuse a training split whose watch times are all equal: every model would learn a
    constant and every ranking metric (XAUC) would be undefined."""
    y = split.train[LABEL].to_numpy()
    if len(y) and np.all(y == y[0]):
        raise DataError(f"every watch_time of the training split is {float(y[0]):g} "
                        f"({len(y)} rows): nothing to learn", column=LABEL)


def load_report(dataset: Dataset) -> Dict[str, Any]:
    """The dataset's load report as ``metrics.json`` holds it (``load_report``): rows read
    and kept, rows dropped by reason with the first example of each, notes."""
    report = dataset.report
    return {"rows_read": report.rows_read, "rows_kept": report.rows_kept,
            **dataclasses.asdict(report)}


def build_model(config: ExperimentConfig, encoder: FeatureEncoder) -> WatchTimeModel:
    tower = Tower({name: encoder.vocab_size(name) for name in encoder.categorical},
                  **dataclasses.asdict(config.tower))
    head = build_head(config.model, config.head_config(), seed=config.seed)
    return WatchTimeModel(encoder, tower, head)


#: validation rows (at most, evenly spread) the post-hoc calibration of a streamed run uses
CALIBRATION_ROWS = 1_000_000


def stream_columns(prepared: Prepared, model: WatchTimeModel) -> list:
    """What a streamed training batch reads: the model's inputs, the label columns the
    heads' targets take, and the row key."""
    from ptpm_tf.data.prepared import ROW
    labels = [c for c in (LABEL, DURATION) if c in prepared.meta["dtypes"]]
    return list(dict.fromkeys([*model.encoder.input_signature(), *labels, ROW]))


def with_targets(batches: tf.data.Dataset, model: WatchTimeModel, probe: pd.DataFrame,
                 seed: int) -> tf.data.Dataset:
    """``(features, targets)`` batches: the head's ``targets`` computed per batch from the
    batch's label columns (the rule the in-memory path applies to the validation split;
    ``seed`` plus the batch's first row key seeds the tie-breaking draws).

    ``probe``: two rows of labels, to learn the targets' names and types."""
    from ptpm_tf.data.prepared import ROW
    head, inputs = model.head, list(model.encoder.input_signature())
    has_duration = DURATION in probe.columns
    example = head.targets(probe, seed=seed)
    names = list(example)
    dtypes = [tf.as_dtype(example[k].dtype) for k in names]

    def targets(first_row, y, *duration):
        frame = pd.DataFrame({LABEL: y, **({DURATION: duration[0].astype(np.float64)}
                                           if duration else {})})
        out = head.targets(frame, seed=seed + int(first_row))
        return [np.asarray(out[k], dtype=example[k].dtype) for k in names]

    def add_targets(batch):
        labels = [batch[LABEL], *([batch[DURATION]] if has_duration else [])]
        values = tf.numpy_function(targets, [batch[ROW][0], *labels], dtypes, stateful=False)
        out = {k: tf.ensure_shape(v, [None, *example[k].shape[1:]])
               for k, v in zip(names, values)}
        return {k: batch[k] for k in inputs}, out

    options = batches.options()
    return batches.map(add_targets, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE).with_options(options)


def streaming_train_data(prepared: Prepared, model: WatchTimeModel, config: ExperimentConfig,
                         strategy: tf.distribute.Strategy, probe: pd.DataFrame):
    """(training batches, steps per epoch) streamed from ``prepared``.

    On one worker an epoch is one pass over the training shards. Under a multi-worker
    strategy each worker reads only its own shards (``AutoShardPolicy.FILE``: shard ``i``
    goes to worker ``i % W``), and every worker must take the same number of steps: an
    epoch is then as many global batches as the worker with the fewest rows can fill, so
    up to one batch of rows per worker and epoch is left out (the shards are read again
    from the start each epoch, reshuffled)."""
    workers = distribute.num_workers(strategy)
    columns = stream_columns(prepared, model)
    if workers <= 1:
        ds = prepared.batches("train", config.training.batch_size, shuffle=True, seed=config.seed,
                              columns=columns)
        return with_targets(ds, model, probe, seed=config.seed), None
    rows = prepared.shard_rows("train")
    if len(rows) < workers:
        raise ValueError(f"{prepared.path}: {len(rows)} training shards for {workers} workers; "
                         "prepare it again with a smaller --shard-rows (at least one shard "
                         "per worker)")
    per_worker = [sum(rows[w::workers]) for w in range(workers)]
    steps = min(per_worker) // max(1, config.training.batch_size // workers)
    if steps < 1:
        raise ValueError(f"{prepared.path}: a worker has {min(per_worker)} training rows, "
                         f"fewer than one batch of {config.training.batch_size // workers}")
    ds = prepared.batches("train", config.training.batch_size, shuffle=True, seed=config.seed,
                          columns=columns, repeat=True)
    return with_targets(ds, model, probe, seed=config.seed), steps


def _verbosity(verbose: Optional[int]) -> int:
    if verbose is not None:
        return verbose
    return 1 if sys.stdout.isatty() else 2


def train(config: ExperimentConfig, out_dir: Optional[Path] = None, *,
          dataset: Optional[Dataset] = None, split: Optional[Split] = None,
          verbose: Optional[int] = None, callbacks: Sequence[tf.keras.callbacks.Callback] = (),
          logdir: Optional[Path] = None) -> Run:
    """Train ``config.model`` and evaluate it on the test split.

    ``dataset`` / ``split`` may be passed in so that several models share one load and one
    split (as the demo and the benchmark do). Early stopping watches ``config.training.monitor`` on
    the validation split and restores the best weights; the test split is touched only by
    the final evaluation.

    With ``out_dir``, training backs itself up in ``out_dir/backup`` at the end of every
    epoch (or every ``config.training.backup_every`` steps) and a rerun of the same call
    resumes from there (:mod:`ptpm_tf.resume`); the run directory is written atomically at the end.

    With ``logdir``, TensorBoard logs are written there (:mod:`ptpm_tf.summaries`); when
    it lies inside ``out_dir`` it becomes part of the finished run directory.

    Under ``config.training.strategy = 'multi_worker'`` every worker runs this same call (same data,
    seed and ``out_dir``); all of them train and evaluate, only the chief writes.
    """
    from ptpm_tf.evaluate import evaluate_frame, evaluate_prepared

    # first: MultiWorkerMirroredStrategy must exist before TensorFlow runs anything else
    strategy = distribute.make_strategy(config.training.strategy)
    writer = distribute.is_chief(strategy)
    if out_dir is not None:
        check_run_dir(Path(out_dir))
    tf.keras.utils.set_random_seed(config.seed)
    prepared = None
    if config.data.prepared is not None:
        if dataset is not None or split is not None:
            raise ValueError("a prepared directory holds its own data and split; pass "
                             "neither dataset nor split with config.data.prepared")
        prepared = open_prepared(config.data.prepared)
        config = config.replace(dataset=prepared.name)
    elif dataset is not None:
        if dataset.name != config.data.dataset:
            raise ValueError(f"config.data.dataset is {config.data.dataset!r} but the dataset "
                             f"passed in is {dataset.name!r}")
        if config.data.rows is None and dataset.name == "simulator":
            config = config.replace(rows=len(dataset))
    elif split is None:
        dataset, split = load_and_split(config.data, config.seed)
    else:
        raise ValueError("a split comes with the dataset it splits; pass both or neither")
    # every head setting written out: the run rebuilds this head whatever the defaults become
    config = fit_head_to_data(config, prepared if prepared is not None else dataset).resolved()
    if prepared is None and split is None:
        split = split_dataset(dataset, config.data.split, seed=config.seed)
    if split is not None:
        check_labels(split)
    backup = RunBackup(Path(out_dir), writer) if out_dir is not None else None
    carry = logs_in_run(logdir, out_dir)
    if backup is not None:
        if carry and writer and not backup.root.exists():  # a fresh run: no stale logs
            shutil.rmtree(Path(out_dir) / carry[0], ignore_errors=True)
        backup.check_config(config)
    if prepared is not None:
        encoder = prepared.encoder()
        # the heads fit their constants from the training labels alone (16 bytes a row),
        # sampled down to fit_rows: bounded memory and time to the first batch
        adapt_frame = prepared.train_labels(config.data.fit_rows, seed=config.seed)
    else:
        encoder = FeatureEncoder.from_frame(split.train, dataset.categorical, dataset.numeric)
        adapt_frame = split.train
    with strategy.scope():
        model = build_model(config, encoder)
        train_targets = model.head.adapt(adapt_frame)
        if backup is not None:  # BackupAndRestore restores into built variables only
            model(encoder.raw_arrays(split.train.iloc[:2]) if prepared is None else
                  next(iter(prepared.batches("train", 2, columns=list(encoder.input_signature())))))
        model.compile(optimizer=tf.keras.optimizers.Adam(config.training.learning_rate))
    steps_per_epoch = None
    if prepared is None:
        val_targets = model.head.targets(split.validation, seed=config.seed + 1)
        train_ds = make_tf_dataset(encoder.compact_arrays(split.train), train_targets,
                                   batch_size=config.training.batch_size, shuffle=True,
                                   seed=config.seed)
        val_ds = make_tf_dataset(encoder.compact_arrays(split.validation), val_targets,
                                 batch_size=max(config.training.batch_size, 4096))
    else:
        probe = adapt_frame.iloc[:2]
        del adapt_frame, train_targets
        train_ds, steps_per_epoch = streaming_train_data(prepared, model, config, strategy,
                                                         probe)
        val_ds = with_targets(prepared.batches("validation", max(config.training.batch_size, 4096),
                                               columns=stream_columns(prepared, model),
                                               shard_by_file=False),
                              model, probe, seed=config.seed + 1)
    stop = ResumableEarlyStopping(
        progress_dir=backup.progress_dir if backup is not None else None, writer=writer,
        max_epochs=config.training.epochs, save_freq=config.training.backup_every,
        monitor=config.training.monitor, patience=config.training.patience,
        mode="max" if "xauc" in config.training.monitor else "min", restore_best_weights=True)
    fit_callbacks = [stop]
    if logdir is not None:
        from ptpm_tf.summaries import tensorboard_callbacks
        fit_callbacks += tensorboard_callbacks(Path(logdir), val_ds, writer=writer)
    if backup is not None:
        fit_callbacks.append(tf.keras.callbacks.BackupAndRestore(
            str(backup.keras_dir), save_freq=config.training.backup_every or "epoch",
            delete_checkpoint=False))
    done = backup.latest_progress() if backup is not None else None
    if done is not None and done["finished"]:
        # killed after the last epoch: the trained model is early stopping's best weights
        model.set_weights(done["best_weights_arrays"])
        model.optimizer.iterations.assign(done["iterations"])
        epoch_logs = done["epoch_logs"]
        seconds = float(done.get("train_seconds", 0.0))
    else:
        model.fit(train_ds, validation_data=val_ds, epochs=config.training.epochs,
                  steps_per_epoch=steps_per_epoch,
                  callbacks=[*fit_callbacks, *callbacks], verbose=_verbosity(verbose))
        epoch_logs = stop.epoch_logs
        seconds = stop.train_seconds  # of the whole run: a resumed one adds its saved time
    if prepared is not None:
        n_val = prepared.rows("validation")
        validation = prepared.frame("validation", stride=max(1, -(-n_val // CALIBRATION_ROWS)))
    else:
        validation = split.validation
    with strategy.scope():
        calibrated = model.head.calibrate(model, validation)
    del validation
    history = {k: [float(e[k]) for e in epoch_logs if k in e]
               for k in dict.fromkeys(k for e in epoch_logs for k in e)}
    if prepared is not None:
        metrics = evaluate_prepared(model, prepared, "test", model_name=config.model)
        train_rows = prepared.rows("train")
    else:
        metrics = evaluate_frame(model, split.test, dataset, model_name=config.model)
        train_rows = len(split.train)
    metrics.update(train_seconds=round(seconds, 2), epochs_run=len(history.get("loss", [])),
                   train_rows=train_rows,
                   samples_per_second=round(train_rows * len(epoch_logs)
                                            / max(seconds, 1e-9), 1),
                   optimizer_steps=int(model.optimizer.iterations.numpy()))
    metrics.update({f"validation_{k}": v for k, v in calibrated.items()})
    metrics["load_report"] = (load_report(dataset) if prepared is None
                              else prepared.meta.get("report"))
    if strategy.num_replicas_in_sync > 1:
        metrics.update(strategy=config.training.strategy, replicas=strategy.num_replicas_in_sync)
    run = Run(config, model, dataset if prepared is None else prepared, split, history,
              metrics, seconds)
    if out_dir is not None:
        save_run(run, Path(out_dir), strategy, carry=carry)
    return run


def logs_in_run(logdir: Optional[Path], out_dir: Optional[Path]) -> tuple:
    """(the run directory's entry holding ``logdir``,) when ``logdir`` lies inside
    ``out_dir``, else ()."""
    if logdir is None or out_dir is None:
        return ()
    try:
        rel = Path(logdir).resolve().relative_to(Path(out_dir).resolve())
    except ValueError:
        return ()
    if not rel.parts or rel.parts[0] != TENSORBOARD_DIR:
        raise ValueError(f"--logdir inside the run directory must be under "
                         f"{Path(out_dir) / TENSORBOARD_DIR}, got {logdir}")
    return (rel.parts[0],)


def save_run(run: Run, out_dir: Path,
             strategy: Optional[tf.distribute.Strategy] = None, carry: Sequence[str] = ()) -> None:
    """Write the run directory atomically: into a temporary directory beside ``out_dir``,
    renamed onto it when complete (replacing a previous run and its ``backup/``). Entries
    ``carry`` of the current ``out_dir`` (the TensorBoard logs written while training) are
    moved into the new one.

    ``strategy`` defaults to the one the model was built under. Under a multi-worker
    strategy every worker must call this (saving synchronised
    variables is a collective); the non-chief workers write to a temporary directory
    that is then deleted.
    """
    out_dir = Path(out_dir)
    strategy = strategy or run.model.distribute_strategy
    chief = distribute.is_chief(strategy)
    if chief:
        check_run_dir(out_dir)
    stage = atomic_io.staging_dir(out_dir) if chief else distribute.worker_dir(out_dir, strategy)
    try:
        _write_run(run, stage)
        if chief:
            for name in carry:
                if (out_dir / name).exists():
                    os.rename(out_dir / name, stage / name)
            atomic_io.install_dir(stage, out_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _write_run(run: Run, out_dir: Path) -> None:
    (out_dir / "config.json").write_text(atomic_io.dumps(
        {"experiment": run.config.to_dict(), "model": run.model.get_config(),
         "dataset": {"name": run.dataset.name, "rows": len(run.dataset),
                     "categorical": run.dataset.categorical,
                     "numeric": run.dataset.numeric}}, indent=2, default=list))
    run.model.save_weights(str(out_dir / "weights"))
    if run.split is not None:  # a streamed run's split is its prepared directory's
        run.split.save_indices(out_dir / "split.npz")
    (out_dir / "history.json").write_text(atomic_io.dumps(run.history, indent=2))
    (out_dir / "metrics.json").write_text(atomic_io.dumps(run.metrics, indent=2,
                                                            default=float))


def load_model(run_dir: Path, head: Optional[Dict[str, Any]] = None):
    """Rebuild a run's model (weights and tree constants restored) without its data, from
    the configuration the run saved and nothing else.

    ``head``: head settings to change that do not touch the weights (e.g. ``decode``).
    Returns ``(config, model)``.
    """
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.json)")
    try:
        saved = json.loads(path.read_text())
        # runs written before configs were nested saved one flat mapping, "train"
        config = ExperimentConfig.from_dict(saved["experiment"] if "experiment" in saved
                                            else saved["train"])
        encoder = FeatureEncoder.from_config(saved["model"]["encoder"])
        int(saved["dataset"]["rows"])
    except OSError as err:
        raise DataError(f"cannot read the run's configuration: {err.strerror}",
                        file=str(path)) from None
    except json.JSONDecodeError as err:
        raise DataError(f"not valid JSON ({err.msg}); the run directory is damaged",
                        file=str(path), row=err.lineno,
                        column=f"character {err.colno}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise DataError(f"not a run configuration written by train ({type(err).__name__}: "
                        f"{err})", file=str(path)) from None
    if head:
        config = config.replace(**head)
    weights = run_dir / "weights.index"
    if not weights.exists():
        raise DataError("the run's weights are missing (weights.index and weights.data-*); "
                        "the run directory is incomplete", file=str(weights))
    model = build_model(config, encoder)
    # create the variables before restoring: two rows of placeholder inputs
    model({name: tf.zeros([2], spec.dtype) if spec.dtype != tf.string else tf.constant(["", ""])
           for name, spec in encoder.input_signature().items()})
    try:
        model.load_weights(str(run_dir / "weights")).expect_partial()
    except (tf.errors.OpError, ValueError) as err:
        raise DataError(f"cannot restore the run's weights: {err}",
                        file=str(weights)) from None
    model.head.after_restore()
    return config, model


def load_run(run_dir: Path, head: Optional[Dict[str, Any]] = None):
    """Rebuild a run's model (weights and tree constants restored), its dataset and split.
    ``head``: as :func:`load_model`.

    Returns ``(config, model, dataset, split)``; for a run streamed from a prepared
    directory, ``dataset`` is that :class:`Prepared` directory and ``split`` is None.
    """
    run_dir = Path(run_dir)
    config, model = load_model(run_dir, head)
    saved = json.loads((run_dir / "config.json").read_text())
    if config.data.prepared is not None:
        dataset = open_prepared(config.data.prepared)
        split = None
    else:
        dataset = load(config.data, config.seed)
    if len(dataset) != saved["dataset"]["rows"]:
        raise ValueError(f"{run_dir}: the run was trained on {saved['dataset']['rows']} rows of "
                         f"{config.data.dataset!r} but {len(dataset)} load now; the data changed")
    if config.data.prepared is None:
        try:
            idx = np.load(run_dir / "split.npz")
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read the run's split ({err})",
                            file=str(run_dir / "split.npz")) from None
        frame = dataset.frame
        split = Split(frame.loc[idx["train"]], frame.loc[idx["validation"]],
                      frame.loc[idx["test"]], method="saved",
                      fractions=tuple(config.data.split), seed=config.seed)
    return config, model, dataset, split
