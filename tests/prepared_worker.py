"""One worker process for tests/test_prepared.py (run as a script, not collected).

    python tests/prepared_worker.py PREPARED_DIR RESULT_NPZ RUN_DIR

Under ``MultiWorkerMirroredStrategy`` (``TF_CONFIG`` in the environment) it reads one epoch
of the prepared training split through ``strategy.experimental_distribute_dataset``, as
``model.fit`` does, and records the row keys it saw; then it trains one epoch streamed from
the prepared directory into ``RUN_DIR``. Writes ``rows`` and ``iterations`` to RESULT_NPZ.
"""
import sys

import numpy as np

import ptpm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from ptpm_tf import distribute


def main() -> None:
    prepared_dir, result, run_dir = sys.argv[1:4]
    strategy = distribute.make_strategy("multi_worker")  # before TensorFlow runs anything
    from ptpm_tf.data.prepared import ROW, open_prepared
    from ptpm_tf.config import ExperimentConfig
    from ptpm_tf.training import train

    prepared = open_prepared(prepared_dir)
    batches = prepared.batches("train", 64, shuffle=True, seed=0, columns=[ROW])
    rows = []
    for batch in strategy.experimental_distribute_dataset(batches):
        rows += [r.numpy() for r in strategy.experimental_local_results(batch[ROW])]
    config = ExperimentConfig.from_flat(model="ptpm", prepared=prepared_dir, depth=3, epochs=1,
                         batch_size=128, strategy="multi_worker")
    run = train(config, run_dir, verbose=0)
    np.savez(result, rows=np.concatenate(rows),
             iterations=int(run.model.optimizer.iterations.numpy()))


if __name__ == "__main__":
    main()
