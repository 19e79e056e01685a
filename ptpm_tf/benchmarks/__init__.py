"""Measurement tooling, outside the model's import graph: nothing under ``ptpm_tf`` but the
``benchmark`` command imports from here.

- :mod:`~ptpm_tf.benchmarks.suite`: ``ptpm-tf benchmark``, the paper's Tables 2-3 and
  Figs. 6-8 over several seeds;
- :mod:`~ptpm_tf.benchmarks.figures`: the figures of a benchmark's results;
- :mod:`~ptpm_tf.benchmarks.stats`: paired significance tests over seeds;
- :mod:`~ptpm_tf.benchmarks.throughput`: training samples per second, models interleaved;
- :mod:`~ptpm_tf.benchmarks.serving_latency`: SavedModel latency in process and over gRPC;
- :mod:`~ptpm_tf.benchmarks.scale`: load time, memory and throughput on large logs.
"""
