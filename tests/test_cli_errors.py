"""The command line's one error path: every expected failure (bad data, bad flags, a bad run
directory, an unreadable file) is one bounded line on stderr and exit status 2; ``--debug``
adds the traceback. Also what ``train`` reports about its load, strict JSON, degenerate
data, and that a rejected command leaves nothing that blocks its correction.

Each case is run in-process through ``cli.main`` on a tiny KuaiRec-format file."""
import gzip
import json
import time
from pathlib import Path

import numpy as np
import pytest

from ptpm_tf import cli
from ptpm_tf.data.dataset import DataError, MAX_MESSAGE
from ptpm_tf.data.registry import load_dataset

HEADER = "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio"
FAST = ["--model", "tpm", "--depth", "2", "--epochs", "1", "--batch-size", "64"]


def row(i, user=None, video=0, play=1000, duration=20000):
    """One KuaiRec line, the ``i``-th in time."""
    user = i % 12 if user is None else user
    return f"{user},{video},{play},{duration},x,20200705,{1593878903 + 60 * i}.5,1.0"


def kuairec_rows(n=300, seed=0, label=None):
    """``n`` KuaiRec rows in time order: 12 users, 30 videos, random play durations (ms);
    ``label`` fixes every play_duration."""
    rng = np.random.default_rng(seed)
    return [row(i, video=int(rng.integers(0, 30)),
                play=int(rng.integers(500, 30000)) if label is None else label,
                duration=int(rng.integers(5000, 40000))) for i in range(n)]


def write_kuairec(folder: Path, lines, header=HEADER) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "big_matrix.csv"
    path.write_text("\n".join([header, *lines, ""]))
    return path


def run_cli(capsys, *args):
    """(exit status, stdout, stderr) of ``ptpm-tf ARGS`` run in this process."""
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *parts):
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err and len(err) < MAX_MESSAGE + 200, err
    for part in parts:
        assert part in err, err


# ------------------------------------------------------------------- flags

@pytest.mark.parametrize("args, part", [
    (["train", "--rows", "0"], "--rows"),
    (["train", "--rows", "-5"], "--rows"),
    (["data", "inspect", "--dataset", "kuairec", "--rows", "0"], "--rows"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--depth", "0"], "--depth"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--split", "a,b"], "--split"),
    (["train", "--split", "0.5,0.5"], "--split"),
    (["train", "--split", "nan,0.5,0.5"], "split fractions"),
])
def test_bad_flags_are_one_line_with_status_2(capsys, tmp_path, args, part):
    code, _, err = run_cli(capsys, *args, "--out", tmp_path / "run")
    assert_one_line_error(code, err, part)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, command", [
    (["export", "--run", "r", "--out", "x"], "ptpm-tf export"),
    (["data", "inspect", "stray.csv"], "ptpm-tf data inspect"),
    (["train", "stray"], "ptpm-tf train"),
])
def test_unknown_arguments_point_at_their_commands_help(capsys, args, command):
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, "unrecognized arguments", f"(see {command} --help)")


def test_rows_must_be_positive_in_python_too(tmp_path):
    """``--rows 0`` used to train on 100,000 simulator rows; ``-5`` ended in SystemError."""
    write_kuairec(tmp_path / "k", kuairec_rows(20))
    for name, data_dir in (("simulator", None), ("kuairec", str(tmp_path / "k"))):
        for rows in (0, -5):
            with pytest.raises(DataError, match="rows must be a positive integer"):
                load_dataset(name, data_dir=data_dir, rows=rows)


def test_rejected_settings_leave_nothing_behind(tmp_path):
    """A rejected ``train --depth 0 --out R`` used to leave ``R/backup/``, and the corrected
    command then refused R as "an interrupted run with a different configuration"."""
    from ptpm_tf.config import ExperimentConfig
    from ptpm_tf.training import train
    out = tmp_path / "R"
    for bad in (dict(depth=0), dict(epochs=0), dict(batch_size=0), dict(learning_rate=-1.0),
                dict(rows=0), dict(split=(0.5, 0.5))):
        with pytest.raises(ValueError):
            config = ExperimentConfig.from_flat(**{"model": "tpm", "rows": 400, **bad})
            train(config, out, verbose=0)
        assert not out.exists(), bad


def test_a_backup_without_progress_does_not_block_another_configuration(tmp_path):
    """A run that failed (or was killed) before its first backup left only
    ``backup/config.json``: a different configuration then starts over instead of being
    refused; one with real progress is still refused."""
    from ptpm_tf.resume import RunBackup
    from ptpm_tf.config import ExperimentConfig
    RunBackup(tmp_path, writer=True).check_config(ExperimentConfig.from_flat(depth=3))
    RunBackup(tmp_path, writer=True).check_config(ExperimentConfig.from_flat(depth=4))
    saved = json.loads((tmp_path / "backup" / "config.json").read_text())
    assert saved["depth"] == 4
    (tmp_path / "backup" / "progress").mkdir()
    (tmp_path / "backup" / "progress" / "epoch-0.json").write_text("{}")
    with pytest.raises(ValueError, match="different configuration"):
        RunBackup(tmp_path, writer=True).check_config(ExperimentConfig.from_flat(depth=5))


# ------------------------------------------------------------------- files

def test_unreadable_file(capsys, tmp_path, monkeypatch):
    """A file the user may not read (simulated: the tests may run as root)."""
    from ptpm_tf.data import reader
    path = write_kuairec(tmp_path, kuairec_rows(10))

    def denied(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(reader, "open", denied, raising=False)
    code, _, err = run_cli(capsys, "data", "inspect", "--dataset", "kuairec",
                           "--data-dir", tmp_path, "--out", tmp_path / "i")
    assert_one_line_error(code, err, str(path), "Permission denied")


def test_an_oserror_anywhere_is_one_line(capsys, tmp_path, monkeypatch):
    """The last line of defence: an OSError the loaders did not wrap still ends in one
    line naming the file, status 2; ``--debug`` adds its traceback."""
    from ptpm_tf.data import inspect

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/some/where.csv")

    monkeypatch.setattr(inspect, "inspect_dataset", denied)
    write_kuairec(tmp_path, kuairec_rows(10))
    args = ("data", "inspect", "--dataset", "kuairec", "--data-dir", tmp_path,
            "--out", tmp_path / "i")
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, "Permission denied: /some/where.csv")
    code, _, err = run_cli(capsys, *args, "--debug")
    assert code == 2 and "Traceback" in err and err.strip().endswith("/some/where.csv")


@pytest.mark.parametrize("kind", ["gzip", "cr", "nul"])
def test_compressed_binary_or_cr_only_files(capsys, tmp_path, kind):
    text = "\n".join([HEADER, *kuairec_rows(10), ""])
    path = tmp_path / "big_matrix.csv"
    if kind == "gzip":
        path.write_bytes(gzip.compress(text.encode()))
        part = "gzip-compressed"
    elif kind == "cr":
        path.write_bytes(text.replace("\n", "\r").encode())
        part = "bare CR"
    else:
        path.write_bytes(text.encode()[:40] + b"\0\0" + text.encode()[40:])
        part = "NUL bytes"
    code, _, err = run_cli(capsys, "data", "inspect", "--dataset", "kuairec",
                           "--data-dir", tmp_path, "--out", tmp_path / "i")
    assert_one_line_error(code, err, str(path), "row 1", part)
    code, _, err = run_cli(capsys, "train", *FAST, "--dataset", "kuairec",
                           "--data-dir", tmp_path, "--out", tmp_path / "run")
    assert_one_line_error(code, err, str(path), part)


def test_inspect_exits_2_on_bad_input(capsys, tmp_path):
    """``data inspect`` used to exit 1 on every bad input."""
    (tmp_path / "big_matrix.csv").write_bytes(b"")
    code, _, err = run_cli(capsys, "data", "inspect", "--dataset", "kuairec",
                           "--data-dir", tmp_path, "--out", tmp_path / "i")
    assert_one_line_error(code, err, "file is empty", "row 1")


def test_every_row_dropped_is_an_error(capsys, tmp_path):
    """``data inspect`` used to exit 0 on a file whose every row was dropped."""
    write_kuairec(tmp_path, [row(i, video="v") for i in range(5)])  # non-integer video_id
    code, _, err = run_cli(capsys, "data", "inspect", "--dataset", "kuairec",
                           "--data-dir", tmp_path, "--out", tmp_path / "i")
    assert_one_line_error(code, err, "no rows left", "5 non-integer")
    assert not (tmp_path / "i" / "inspect.json").exists()


def test_a_huge_value_is_quoted_short(capsys, tmp_path):
    """A 1 MB user_id used to be echoed in full to stdout, inspect.json, the cache and,
    under --strict, stderr."""
    rows = kuairec_rows(30)
    rows[3] = row(3, user="7" * 1_000_000 + "x")
    write_kuairec(tmp_path, rows)
    code, out, err = run_cli(capsys, "data", "inspect", "--dataset", "kuairec",
                             "--data-dir", tmp_path, "--out", tmp_path / "i")
    assert code == 0, err
    assert len(out) < 5000 and "row 5" in out and "column user_id" in out
    assert (tmp_path / "i" / "inspect.json").stat().st_size < 10_000
    code, _, err = run_cli(capsys, "data", "inspect", "--dataset", "kuairec", "--strict",
                           "--data-dir", tmp_path, "--out", tmp_path / "i")
    assert_one_line_error(code, err, "row 5", "column user_id", "characters)")


def test_spec_yaml_error_is_one_line(capsys, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("path: data.csv\nlabel: [watch\nuser: u\n")
    code, _, err = run_cli(capsys, "data", "inspect", "--dataset", "csv", "--spec", spec,
                           "--out", tmp_path / "i")
    assert_one_line_error(code, err, str(spec), "not valid YAML/JSON", "row 3")
    spec.write_bytes(b"\xff\xfe\x00bad")
    code, _, err = run_cli(capsys, "data", "inspect", "--dataset", "csv", "--spec", spec,
                           "--out", tmp_path / "i")
    assert_one_line_error(code, err, str(spec), "not UTF-8")


# ------------------------------------------------------------------- training runs

@pytest.fixture(scope="module")
def dirty_run(tmp_path_factory):
    """A tiny TPM run on a KuaiRec file with bad rows of three kinds, through the CLI."""
    root = tmp_path_factory.mktemp("dirty")
    rows = kuairec_rows(300)
    rows[10] = row(10, video="v9")
    rows[20] = "1,2,3"
    rows[30] = row(30, play=-40)
    write_kuairec(root / "data", rows)
    code = cli.main(["train", *FAST, "--dataset", "kuairec", "--data-dir",
                     str(root / "data"), "--out", str(root / "run")])
    assert code == 0
    return root


def test_train_reports_its_load(dirty_run, capsys):
    """``train`` used to drop bad rows silently: now stdout and metrics.json carry the
    counts by reason with the first example of each."""
    metrics = json.loads((dirty_run / "run" / "metrics.json").read_text())
    report = metrics["load_report"]
    assert report["rows_read"] == 300 and report["rows_kept"] == 297
    assert sum(report["dropped"].values()) == 3 and len(report["dropped"]) == 3
    for reason, example in report["examples"].items():
        assert "big_matrix.csv" in example and "row " in example, (reason, example)
    assert any("row 12" in e for e in report["examples"].values())  # rows[10] is line 12


def test_the_simulator_reports_its_rows():
    report = load_dataset("simulator", rows=500).report
    assert report.rows_read == report.rows_kept == 500 and not report.dropped


@pytest.mark.slow
def test_train_prints_its_load(capsys, tmp_path):
    rows = kuairec_rows(200)
    rows[5] = "1,2,3"
    write_kuairec(tmp_path / "data", rows)
    code, out, err = run_cli(capsys, "train", *FAST, "--dataset", "kuairec",
                             "--data-dir", tmp_path / "data", "--out", tmp_path / "run")
    assert code == 0, err
    assert "data: 200 rows read, 1 dropped: 1 malformed row" in out and "row 7" in out


def test_evaluate_on_a_damaged_run(dirty_run, capsys, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(dirty_run / "run", run)
    code, _, err = run_cli(capsys, "evaluate", "--run", run)
    assert code == 0, err
    (run / "config.json").write_text((run / "config.json").read_text()[:-40])
    code, _, err = run_cli(capsys, "evaluate", "--run", run)
    assert_one_line_error(code, err, str(run / "config.json"), "not valid JSON")
    shutil.copy(dirty_run / "run" / "config.json", run / "config.json")
    for weights in run.glob("weights.*"):
        weights.unlink()
    code, _, err = run_cli(capsys, "evaluate", "--run", run)
    assert_one_line_error(code, err, "weights", str(run))


def test_all_zero_label_is_refused(capsys, tmp_path):
    """An all-zero label used to train with exit 0 and report XAUC NaN."""
    write_kuairec(tmp_path / "data", kuairec_rows(200, label=0))
    code, _, err = run_cli(capsys, "train", *FAST, "--dataset", "kuairec",
                           "--data-dir", tmp_path / "data", "--out", tmp_path / "run")
    assert_one_line_error(code, err, "every watch_time", "nothing to learn")
    assert not (tmp_path / "run").exists()


def _strict(text):
    def refuse(name):
        raise AssertionError(f"bare {name} in JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.slow
def test_undefined_metrics_are_null_in_strict_json(capsys, tmp_path):
    """A test split whose watch times are all equal has no XAUC: metrics.json says null,
    never a bare NaN that strict JSON parsers reject."""
    rows = kuairec_rows(300)
    rows[-40:] = [row(i, play=5000) for i in range(260, 300)]  # newest (test split): all 5 s
    write_kuairec(tmp_path / "data", rows)
    code, _, err = run_cli(capsys, "train", *FAST, "--dataset", "kuairec",
                           "--data-dir", tmp_path / "data", "--out", tmp_path / "run")
    assert code == 0, err
    metrics = _strict((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["xauc"] is None and metrics["mae"] is not None
    _strict((tmp_path / "run" / "history.json").read_text())
    _strict((tmp_path / "run" / "config.json").read_text())
    code, _, err = run_cli(capsys, "evaluate", "--run", tmp_path / "run",
                           "--json", tmp_path / "eval.json")
    assert code == 0, err
    assert _strict((tmp_path / "eval.json").read_text())["xauc"] is None


# ------------------------------------------------------------------- resume bookkeeping

@pytest.mark.slow
def test_mid_epoch_resume_keeps_the_epoch_whole(tmp_path):
    """After a resume in the middle of an epoch, that epoch's history entry used to cover
    only the resumed steps, and ``train_seconds`` only the rerun."""
    import tensorflow as tf
    from ptpm_tf.config import ExperimentConfig
    from ptpm_tf.training import train

    class Crash(Exception):
        pass

    class CrashAt(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) >= 17:
                raise Crash()

    class StepsPerEpoch(tf.keras.callbacks.Callback):
        """The training loss mean's count after each epoch's last step: the steps that
        epoch's history entry covers (validation resets the means before the epoch ends)."""
        counts = {}

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            self.counts[self.epoch] = int(self.model.loss_trackers["loss"].count.numpy())

        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()

        def on_train_end(self, logs=None):
            self.seconds = time.perf_counter() - self.started

    # 2400 training rows in batches of 240: 10 steps per epoch; backups every 4 steps
    config = ExperimentConfig.from_flat(model="tpm", rows=3000, depth=3, batch_size=240, epochs=3,
                         patience=5, backup_every=4)
    out = tmp_path / "run"
    with pytest.raises(Crash):
        train(config, out, verbose=0, callbacks=[CrashAt()])
    progress = out / "backup" / "progress"
    with np.load(progress / "running-16.npz") as saved:  # the backup in force: step 16
        assert int(saved["epoch"]) == 1
        seconds_before = float(saved["seconds"])
    counter = StepsPerEpoch()
    run = train(config, out, verbose=0, callbacks=[counter])
    assert run.metrics["optimizer_steps"] == 30
    assert counter.counts == {1: 10, 2: 10}  # epoch 1: 6 steps before the crash, 4 after
    assert run.metrics["train_seconds"] >= round(seconds_before + counter.seconds, 2) - 0.01
    assert len(run.history["loss"]) == 3
