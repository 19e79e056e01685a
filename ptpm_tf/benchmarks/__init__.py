"""Measurement tooling, outside the model's import graph: nothing under ``ptpm_tf`` but the
``benchmark`` command imports from here.

- :mod:`~ptpm_tf.benchmarks.suite`: ``ptpm-tf benchmark``, the paper's Tables 2-3 and
  Figs. 6-8 over several seeds;
- :mod:`~ptpm_tf.benchmarks.figures`: the figures of a benchmark's results;
- :mod:`~ptpm_tf.benchmarks.stats`: paired significance tests over seeds;
- :mod:`~ptpm_tf.benchmarks.throughput`: training samples per second, models interleaved;
- :mod:`~ptpm_tf.benchmarks.serving_latency`: SavedModel latency in process and over gRPC;
- :mod:`~ptpm_tf.benchmarks.scale`: load time, memory and throughput on large logs;
- :mod:`~ptpm_tf.benchmarks.variants`: the benchmark's variants and the tables' rows;
- one-off studies behind numbers in ``docs/``: ``pruning_headroom`` (how much pruning
  could gain), ``decoder_knots`` and ``decoder_summary`` (the decoders' study),
  ``serving_checks`` (the cost of the in-graph serving checks).

Each runnable module answers ``python -m ptpm_tf.benchmarks.<name> --help``.
"""
