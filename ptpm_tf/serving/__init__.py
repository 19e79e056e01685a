"""Serving an exported PTPM model over gRPC (docs/design.md section 6).

- :mod:`ptpm_tf.serving.client`: a client on ``tensorflow_serving.apis`` (the
  PredictionService and ModelService stubs): model metadata, Predict, Regress, waiting for
  a model to become available, and turning a table of raw features into a request with the
  dtypes the server's signature asks for (``ptpm-tf predict``).
- :mod:`ptpm_tf.serving.loadtest`: p50/p95/p99 latency and throughput per batch size
  (candidates per request) and concurrency, several models side by side
  (``ptpm-tf loadtest``).
- :mod:`ptpm_tf.serving.local_server`: a PredictionService that answers from the exported
  SavedModel through the TF1 session loader, the SavedModelBundle path TF Serving uses.
  ``tensorflow_model_server`` is not installable from PyPI, so the tests run the client
  and the load test against this server; production is the ``tensorflow/serving`` image
  of ``docker-compose.yml``.
- :mod:`ptpm_tf.benchmarks.serving_latency`: in-process SavedModel latency, PTPM against TPM
  (BENCHMARKS.md).
"""
