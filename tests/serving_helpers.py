"""Shared by test_export.py and test_serving.py: tiny PTPM and TPM runs, trained once per
test process (depth 3, one epoch on 3000 simulator rows)."""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

import ptpm_tf  # noqa: F401

DEPTH = 3
ROWS = 3000


@functools.lru_cache(maxsize=None)
def tiny_runs():
    """{'ptpm': Run, 'tpm': Run, 'dir': Path} sharing one dataset and split. PTPM's pruning
    bias starts at 0 so that its deterministic trees are pruned for part of the rows."""
    from ptpm_tf.data.registry import load_dataset
    from ptpm_tf.data.splits import split_dataset
    from ptpm_tf.config import ExperimentConfig
    from ptpm_tf.training import train
    root = Path(tempfile.mkdtemp(prefix="ptpm-serving-tests-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    dataset = load_dataset("simulator", rows=ROWS, seed=0)
    split = split_dataset(dataset, seed=0)
    runs = {"dir": root}
    # PTPM with the default (best) preset, TPM with the paper's: both decoders are served
    for name, preset, head in (("ptpm", "best", {"prune_bias_init": 0.0}),
                               ("tpm", "paper", {})):
        config = ExperimentConfig.from_flat(model=name, preset=preset, rows=ROWS, depth=DEPTH,
                                            epochs=1, batch_size=256, head=head)
        runs[name] = train(config, root / "runs" / name, dataset=dataset, split=split,
                           verbose=0)
    return runs


@functools.lru_cache(maxsize=None)
def tiny_exports():
    """{'ptpm': version dir, 'tpm': version dir, 'root': export dir} of :func:`tiny_runs`."""
    from ptpm_tf.export import export_model
    runs = tiny_runs()
    root = runs["dir"] / "export"
    out = {"root": root}
    for name in ("ptpm", "tpm"):
        out[name] = export_model(runs[name].model, root, name,
                                 example_frame=runs[name].split.test.head(64))
    return out


def sample_rows(n: int = 40):
    return tiny_runs()["ptpm"].split.test.head(n)


def with_unseen_ids(features: dict) -> dict:
    """A copy of raw feature arrays whose user and item ids were never seen in training."""
    out = {k: np.array(v, copy=True) for k, v in features.items()}
    for key in ("user_id", "item_id"):
        if out[key].dtype == object:
            out[key][:] = [f"never-seen-{i}" for i in range(len(out[key]))]
        else:
            out[key][:] = 10 ** 12 + np.arange(len(out[key]))
    return out
