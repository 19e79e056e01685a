"""One training process for tests/test_distributed.py (run as a script, not collected).

    python tests/distributed_worker.py CONFIG_JSON OUT_DIR RESULT_NPZ

Trains ``ExperimentConfig.from_flat(**CONFIG_JSON)`` into ``OUT_DIR`` (``TF_CONFIG`` in the
environment for multi-worker) and writes the final weights, the optimizer step count and the
per-epoch training loss to ``RESULT_NPZ``, with ``steps_here``, the steps this process ran.

With ``DIE_AT=step:N`` in the environment the process kills itself with SIGKILL right
after optimizer step ``N``, with ``DIE_AT=train_end`` when ``fit`` ends (before the final
evaluation and the write of the run directory): a hard crash, with no Python clean-up.
With ``TENSORBOARD=1`` it also writes TensorBoard logs to ``OUT_DIR/tensorboard``.
"""
import json
import os
import signal
import sys

import numpy as np

import ptpm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from ptpm_tf.config import ExperimentConfig
from ptpm_tf.training import train


class DieAt(tf.keras.callbacks.Callback):
    def __init__(self, when: str):
        super().__init__()
        self.when = when

    def _die(self):
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_end(self, batch, logs=None):
        if self.when.startswith("step:") and \
                int(self.model.optimizer.iterations.numpy()) >= int(self.when[5:]):
            self._die()

    def on_train_end(self, logs=None):
        if self.when == "train_end":
            self._die()


class CountSteps(tf.keras.callbacks.Callback):
    steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1


def main() -> None:
    config_json, out_dir, result = sys.argv[1:4]
    config = ExperimentConfig.from_flat(**json.loads(config_json))
    counter = CountSteps()
    callbacks = [counter] + ([DieAt(os.environ["DIE_AT"])] if os.environ.get("DIE_AT") else [])
    logdir = os.path.join(out_dir, "tensorboard") if os.environ.get("TENSORBOARD") else None
    run = train(config, out_dir, verbose=0, callbacks=callbacks, logdir=logdir)
    np.savez(result, iterations=int(run.model.optimizer.iterations.numpy()),
             steps_here=counter.steps,
             loss=np.asarray(run.history["loss"]), mae=run.metrics["mae"],
             **{f"w{i}": w for i, w in enumerate(run.model.get_weights())})


if __name__ == "__main__":
    main()
