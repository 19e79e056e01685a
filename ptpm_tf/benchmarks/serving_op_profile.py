"""Which ops of ``serving_default`` PTPM pays for and TPM does not (issue 14).

Exports the ``ptpm`` and ``tpm`` runs of ``--runs-dir`` (as ``serving_latency --runs-dir``
reads them), loads each through the TF1 session loader (TF Serving's path) and runs
``serving_default`` on the same ``--candidates`` test rows with a full trace, ``--calls``
times. Prints the mean time per op (microseconds, as the tracer measures it: only the
relative sizes mean anything) for both models, ops matched by name, PTPM's largest first.

    ptpm-tf train --model ptpm --rows 100000 --epochs 1 --out /tmp/runs/ptpm
    ptpm-tf train --model tpm  --rows 100000 --epochs 1 --out /tmp/runs/tpm
    python -m ptpm_tf.benchmarks.serving_op_profile --runs-dir /tmp/runs --candidates 512
"""
from __future__ import annotations

import argparse
import collections
import re
import tempfile
from pathlib import Path

import tensorflow as tf

import ptpm_tf  # noqa: F401
from ptpm_tf.export import SERVING_SIGNATURE, export_model
from ptpm_tf.serving.local_server import Servable
from ptpm_tf.training import load_run


def op_times(version_dir: Path, feed, calls: int) -> dict:
    """{op name: mean microseconds per call} of ``serving_default``."""
    servable = Servable("m", int(version_dir.name), version_dir)
    sig = servable.signatures[SERVING_SIGNATURE]
    fetches = {k: v.name for k, v in sig.outputs.items()}
    feed = {sig.inputs[k].name: v for k, v in feed.items()}
    for _ in range(20):
        servable.session.run(fetches, feed)
    total = collections.Counter()
    options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
    for _ in range(calls):
        meta = tf.compat.v1.RunMetadata()
        servable.session.run(fetches, feed, options=options, run_metadata=meta)
        for dev in meta.step_stats.dev_stats:
            for node in dev.node_stats:
                name = re.sub(r"^(StatefulPartitionedCall[^/]*/)+", "", node.node_name)
                total[name] += node.all_end_rel_micros
    servable.close()
    return {k: v / calls for k, v in total.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs-dir", required=True, help="folder with ptpm/ and tpm/ runs")
    p.add_argument("--candidates", type=int, default=512)
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--top", type=int, default=30)
    args = p.parse_args(argv)
    times, tmp = {}, Path(tempfile.mkdtemp(prefix="ptpm-ops-"))
    for name in ("ptpm", "tpm"):
        tf.keras.backend.clear_session()  # the same layer names in both graphs
        _, model, _, split = load_run(Path(args.runs_dir) / name)
        path = export_model(model, tmp, name, example_frame=split.test.head(512))
        feed = model.encoder.raw_arrays(split.test.sample(n=args.candidates, random_state=0,
                                                          replace=len(split.test) < args.candidates))
        times[name] = op_times(path, feed, args.calls)
    print(f"serving_default, {args.candidates} candidates, mean us per call over {args.calls} "
          f"traced calls: PTPM {sum(times['ptpm'].values()):.0f}, "
          f"TPM {sum(times['tpm'].values()):.0f}")
    print(f"{'PTPM us':>9s} {'TPM us':>9s}  op")
    names = sorted(set(times["ptpm"]) | set(times["tpm"]),
                   key=lambda k: -max(times["ptpm"].get(k, 0.0), times["tpm"].get(k, 0.0)))
    for k in names[: args.top]:
        print(f"{times['ptpm'].get(k, 0.0):9.1f} {times['tpm'].get(k, 0.0):9.1f}  {k}")


if __name__ == "__main__":
    main()
