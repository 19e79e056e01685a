"""Data: the canonical row format, the simulator, public-format loaders, splits, tf.data."""
from ptpm_tf.data.dataset import Dataset, DataError, LoadReport

__all__ = ["Dataset", "DataError", "LoadReport"]
