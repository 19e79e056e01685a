"""Training on TensorFlow's distributed runtime, and resuming a killed run.

- Two worker processes on 127.0.0.1 (``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``)
  train a few steps on the simulator and end with identical weights; the loss went down
  and only the chief wrote the run directory.
- A training process killed with SIGKILL mid-epoch is restarted with the same command and
  ends with the same optimizer step count and epochs as an uninterrupted run; one killed
  after its last epoch does not train again. In a two-worker cluster, one worker killed
  mid-epoch makes the other fail (not hang); both restarted resume from the backup.
- Under ``MirroredStrategy`` on two logical CPUs, the loss parts, the summed gradient and
  the global-batch statistics (UCL weights, rewards, advantage std) equal the
  single-device values on the same global batch, including a replica with no rows.

Every child process runs in its own process group and is killed in ``finally``.
"""
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ptpm_tf  # noqa: F401

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKER = HERE / "distributed_worker.py"
TIMEOUT = 240  # generous: the test machines are shared and heavily loaded

# tiny: depth 3, 2 400 training rows, batches of 240 -> 10 steps per epoch
SMALL = dict(model="ptpm", rows=3000, depth=3, batch_size=240, seed=0, patience=5)
STEPS_PER_EPOCH = 10


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "DIE_AT")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def _start(args, env, log):
    return subprocess.Popen([sys.executable, *map(str, args)], env=env, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _kill(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)


def _tail(path, n=3000):
    text = Path(path).read_text(errors="replace")
    return "\n".join(line for line in text[-n:].splitlines()
                     if not line.startswith(("I0000", "W0000", "E0000")))


def _run_worker(config, out_dir, result, log, **env):
    """One training process to completion; returns its exit code."""
    with open(log, "w") as f:
        proc = _start([WORKER, json.dumps(config), out_dir, result], _env(**env), f)
        try:
            return proc.wait(timeout=TIMEOUT)
        finally:
            _kill(proc)


def _run_cluster(config, out, tmp_path, tag, die_at=(None, None), **extra_env):
    """Two MultiWorkerMirroredStrategy workers on 127.0.0.1 (free ports) running the same
    training; ``die_at[i]`` makes worker ``i`` SIGKILL itself. Returns the exit codes."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs, logs = [], []
    try:
        for i in range(2):
            env = {"TF_CONFIG": json.dumps({"cluster": cluster,
                                            "task": {"type": "worker", "index": i}}),
                   **extra_env}
            if die_at[i]:
                env["DIE_AT"] = die_at[i]
            logs.append(tmp_path / f"{tag}-worker{i}.log")
            with open(logs[-1], "w") as f:
                procs.append(_start([WORKER, json.dumps(config), out, tmp_path / f"w{i}.npz"],
                                    _env(**env), f))
        codes = [p.wait(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            _kill(p)
    return codes, "\n".join(_tail(log) for log in logs)


def _same_weights(tmp_path):
    chief, other = (np.load(tmp_path / f"w{i}.npz") for i in range(2))
    weights = sorted(k for k in chief.files if k.startswith("w"))
    assert len(weights) > 10 and weights == sorted(k for k in other.files if k.startswith("w"))
    for k in weights:
        np.testing.assert_array_equal(chief[k], other[k], err_msg=k)
    assert int(chief["iterations"]) == int(other["iterations"])
    return chief


@pytest.mark.slow
def test_two_workers_end_with_identical_weights_and_lower_loss(tmp_path):
    config = dict(SMALL, epochs=2, strategy="multi_worker")
    out = tmp_path / "run"
    codes, logs = _run_cluster(config, out, tmp_path, "train", TENSORBOARD="1")
    assert codes == [0, 0], logs
    chief = _same_weights(tmp_path)
    # the global batch is split over the two workers: 10 steps per epoch, not 20
    assert int(chief["iterations"]) == 2 * STEPS_PER_EPOCH
    loss = chief["loss"]
    assert len(loss) == 2 and loss[-1] < loss[0]

    # only the chief wrote the run directory, completely, and nothing was left beside it
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["strategy"] == "multi_worker"
    assert metrics["optimizer_steps"] == 2 * STEPS_PER_EPOCH
    assert not (out / "backup").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    # one TensorBoard log, the chief's: Keras' writers (train, validation) and the
    # validation summaries; the other worker's temporary logs are gone
    logs = sorted(str(p.relative_to(out / "tensorboard")).split("/events")[0]
                  for p in (out / "tensorboard").rglob("events.out.tfevents.*"))
    assert logs == ["train", "validation", "validation"]


@pytest.mark.slow
def test_killed_mid_epoch_resumes_with_the_same_number_of_steps(tmp_path):
    epochs = 3
    config = dict(SMALL, epochs=epochs, backup_every=4)
    out, result = tmp_path / "run", tmp_path / "result.npz"
    # backups after steps 4, 8, 12, 16; killed after step 17, in the middle of epoch 2 of 3
    code = _run_worker(config, out, result, tmp_path / "first.log", DIE_AT="step:17")
    assert code == -signal.SIGKILL, _tail(tmp_path / "first.log")
    assert not result.exists() and not (out / "metrics.json").exists()
    assert (out / "backup" / "keras" / "chief" / "checkpoint").exists()
    assert json.loads((out / "backup" / "progress" / "epoch-0.json").read_text())["iterations"] \
        == STEPS_PER_EPOCH

    code = _run_worker(config, out, result, tmp_path / "second.log")  # the same command
    assert code == 0, _tail(tmp_path / "second.log")
    res = np.load(result)
    # an uninterrupted run: 3 epochs of 10 steps (patience > epochs, no early stop)
    assert int(res["iterations"]) == epochs * STEPS_PER_EPOCH
    assert int(res["steps_here"]) == epochs * STEPS_PER_EPOCH - 16  # resumed after step 16
    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "history.json").read_text())
    assert metrics["optimizer_steps"] == epochs * STEPS_PER_EPOCH
    assert metrics["epochs_run"] == epochs and len(history["val_mae"]) == epochs
    assert not (out / "backup").exists()


@pytest.mark.slow
def test_killed_worker_the_cluster_restarts_and_resumes(tmp_path):
    config = dict(SMALL, epochs=1, strategy="multi_worker", backup_every=3)
    out = tmp_path / "run"
    # worker 1 dies after step 7 (backups after steps 3 and 6); worker 0's collectives
    # are aborted by TensorFlow's health check, so it exits with an error, not a hang
    codes, logs = _run_cluster(config, out, tmp_path, "killed", die_at=(None, "step:7"))
    assert codes[1] == -signal.SIGKILL and codes[0] not in (0, None), (codes, logs)
    assert (out / "backup" / "keras" / "chief" / "checkpoint").exists()

    codes, logs = _run_cluster(config, out, tmp_path, "restarted")  # the same command
    assert codes == [0, 0], logs
    chief = _same_weights(tmp_path)
    assert int(chief["iterations"]) == STEPS_PER_EPOCH and int(chief["steps_here"]) == 4
    assert json.loads((out / "metrics.json").read_text())["optimizer_steps"] == STEPS_PER_EPOCH


@pytest.mark.slow
def test_killed_after_training_resumes_without_training_again(tmp_path):
    config = dict(SMALL, epochs=1)
    out, result = tmp_path / "run", tmp_path / "result.npz"
    code = _run_worker(config, out, result, tmp_path / "first.log", DIE_AT="train_end")
    assert code == -signal.SIGKILL, _tail(tmp_path / "first.log")
    assert not (out / "metrics.json").exists()

    code = _run_worker(config, out, result, tmp_path / "second.log")
    assert code == 0, _tail(tmp_path / "second.log")
    res = np.load(result)
    assert int(res["steps_here"]) == 0 and int(res["iterations"]) == STEPS_PER_EPOCH
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 1


def test_restart_with_another_configuration_is_refused(tmp_path):
    from ptpm_tf.resume import RunBackup
    from ptpm_tf.config import ExperimentConfig

    RunBackup(tmp_path, writer=True).check_config(ExperimentConfig.from_flat(depth=3))
    # an epoch was backed up (before one is, another configuration starts afresh)
    (tmp_path / "backup" / "progress").mkdir()
    (tmp_path / "backup" / "progress" / "epoch-0.json").write_text("{}")
    # the strategy and the backup frequency may change between restarts
    RunBackup(tmp_path, writer=True).check_config(
        ExperimentConfig.from_flat(depth=3, strategy="mirrored", backup_every=5))
    with pytest.raises(ValueError, match="depth"):
        RunBackup(tmp_path, writer=True).check_config(ExperimentConfig.from_flat(depth=4))


def test_a_directory_with_other_files_is_not_replaced(tmp_path):
    from ptpm_tf.config import ExperimentConfig
    from ptpm_tf.training import check_run_dir, train

    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(ValueError, match="notes.txt"):
        check_run_dir(tmp_path)
    with pytest.raises(ValueError, match="not part of a run"):
        train(ExperimentConfig.from_flat(rows=200, depth=2, epochs=1), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_install_dir_replaces_a_run_whole(tmp_path):
    from ptpm_tf.atomic_io import install_dir, staging_dir, write_atomic

    target = tmp_path / "run"
    for version in ("old", "new"):
        stage = staging_dir(target)
        write_atomic(stage / "metrics.json", version)
        install_dir(stage, target)
        assert (target / "metrics.json").read_text() == version
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging or old copies left


@pytest.mark.slow
def test_mirrored_two_devices_match_one_device_on_the_same_global_batch(tmp_path):
    log = tmp_path / "mirrored.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, str(HERE / "distributed_mirrored.py")],
                                env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=f,
                                text=True, start_new_session=True)
        try:
            stdout, _ = proc.communicate(timeout=TIMEOUT)
        finally:
            _kill(proc)
    assert proc.returncode == 0, _tail(log)
    diff = json.loads(stdout)
    for case in (diff, diff["one_row_one_empty"]):
        for part in ("ce", "reg", "var"):
            assert case[f"parts_{part}"] <= 1e-5 * max(1.0, case[f"parts_{part}_ref"]), (part, case)
        assert case["grads"] <= 1e-5 * max(1.0, case["grads_ref"]), case
    for name in ("ucl", "sample_adv", "batch_adv"):
        assert diff[name] < 1e-5, (name, diff)
    assert diff["std"] < 1e-5 * 20, diff  # std of values ~ 20


@pytest.mark.slow
def test_cli_strategy_flag(tmp_path):
    from ptpm_tf.cli import build_parser
    from ptpm_tf.cli.options import experiment_config

    args = build_parser().parse_args(["train", "--strategy", "multi_worker", "--backup-every", "50"])
    config = experiment_config(args, args.model)
    assert config.training.strategy == "multi_worker" and config.training.backup_every == 50
    res = subprocess.run([sys.executable, "-m", "ptpm_tf.cli", "train", "--strategy",
                          "multi_worker", "--rows", "100", "--out", str(tmp_path / "r")],
                         env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 2 and "TF_CONFIG" in res.stderr and res.stderr.count("\n") == 1
