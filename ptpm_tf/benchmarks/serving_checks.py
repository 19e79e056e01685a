"""What the serving-boundary checks cost (issue 15): the same trained PTPM exported with
:func:`ptpm_tf.export.checked_inputs` / :func:`~ptpm_tf.export.checked_outputs` and
without them (both replaced by pass-throughs for the second export), timed in one process
through the session loader, call by call alternating (``serving_latency.measure_in_process``).

    python -m ptpm_tf.benchmarks.serving_checks [--rows 20000] [--repeats 3] [--iters 400]

Prints one table row per repeat and batch size and the median ratios checked/unchecked.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import ptpm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from ptpm_tf import export
from ptpm_tf.benchmarks.serving_latency import format_in_process, measure_in_process


def _serve_unchecked(self, features):
    """``ServingModule._serve`` without the checks."""
    decoded = self._decode(features, distribution=False)
    return {k: decoded[k] for k in self.output_names[export.SERVING_SIGNATURE] if k in decoded}


def _distribution_unchecked(self, features):
    """``ServingModule._distribution`` without the checks."""
    decoded = self._decode(features, distribution=True)
    return {k: decoded[k] for k in self.output_names[export.DISTRIBUTION_SIGNATURE]
            if k in decoded}


def _regress_unchecked(self, inputs):
    """``ServingModule._regress`` without the checks."""
    import tensorflow as tf
    features = tf.io.parse_example(inputs, self.example_spec())
    return {export.REGRESS_OUTPUT: self._decode(features, distribution=False)["watch_time"]}


def _node_count(path: Path) -> int:
    """Nodes of the SavedModel's graph and function library (both signatures)."""
    from tensorflow.core.protobuf import saved_model_pb2
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((path / "saved_model.pb").read_bytes())
    return sum(len(mg.graph_def.node) + sum(len(f.node_def) for f in mg.graph_def.library.function)
               for mg in sm.meta_graphs)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--batch-sizes", default="1,64,512")
    p.add_argument("--iters", type=int, default=400)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    from ptpm_tf.config import ExperimentConfig
    from ptpm_tf.training import train
    config = ExperimentConfig.from_flat(model="ptpm", rows=args.rows, depth=args.depth, epochs=1)
    run = train(config, None, verbose=0)
    root = Path(tempfile.mkdtemp(prefix="serving-checks-"))
    paths = {"checked": export.export_model(run.model, root, "checked",
                                            example_frame=run.split.test.head(512))}
    module = export.ServingModule
    checked = module._serve, module._distribution, module._regress
    module._serve, module._distribution, module._regress = (
        _serve_unchecked, _distribution_unchecked, _regress_unchecked)
    try:
        paths["unchecked"] = export.export_model(run.model, root, "unchecked",
                                                 example_frame=run.split.test.head(512))
    finally:
        module._serve, module._distribution, module._regress = checked
    assert "Assert" in export.graph_ops(paths["checked"])
    assert "Assert" not in export.graph_ops(paths["unchecked"])
    print("graph nodes: " + ", ".join(f"{k} {_node_count(v)}" for k, v in paths.items()))
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    results = []
    for rep in range(args.repeats):
        for r in measure_in_process(paths, run.split.test, sizes, args.iters, args.warmup,
                                    run.model.encoder):
            results.append({**r, "repeat": rep})
    print(format_in_process(results, num="checked", den="unchecked")
          .replace("PTPM", "checked").replace("TPM", "unchecked"))


if __name__ == "__main__":
    main()
