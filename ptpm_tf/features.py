"""Preprocessing inside the model: raw feature values in, dense tensors out.

Keeping the lookups and normalisation in the graph means the SavedModel takes raw values
(ids as int64 or strings, numbers as float32) and needs no side files; ids never seen in
training hash into OOV buckets instead of failing.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from ptpm_tf.data.pipeline import CodedStrings


def _is_string(series: pd.Series) -> bool:
    return not (pd.api.types.is_integer_dtype(series) or pd.api.types.is_bool_dtype(series))


def signed_log1p(x):
    """Compress heavy-tailed counts and durations while keeping the sign."""
    return np.sign(x) * np.log1p(np.abs(x))


class FeatureEncoder(tf.keras.layers.Layer):
    """Lookup (with OOV buckets) for categorical features, signed log + standardisation
    for numeric ones (NaN becomes 0 plus a missing indicator).

    Its state (vocabularies, means, scales) is plain config, so ``get_config`` round-trips it
    and a model rebuilt from a run's config then restored from a checkpoint is complete.
    """

    def __init__(self, categorical: Dict[str, dict], numeric: Dict[str, dict],
                 num_oov: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.categorical = categorical
        self.numeric = numeric
        self.num_oov = num_oov
        self.lookups = {}
        for name, spec in categorical.items():
            layer_cls = (tf.keras.layers.StringLookup if spec["dtype"] == "string"
                         else tf.keras.layers.IntegerLookup)
            vocab = spec["vocab"] if spec["dtype"] == "string" else np.asarray(spec["vocab"], np.int64)
            self.lookups[name] = layer_cls(vocabulary=vocab, num_oov_indices=num_oov,
                                           name=f"lookup_{name}")

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, categorical: Sequence[str],
                   numeric: Sequence[str], max_tokens: int = 200_000,
                   num_oov: int = 8) -> "FeatureEncoder":
        """Fit vocabularies (most frequent ``max_tokens`` values) and numeric statistics on
        the training frame."""
        cat = {}
        for name in categorical:
            col = frame[name]
            is_str = _is_string(col)
            values = col.astype(str) if is_str else col.astype(np.int64)
            counts = values.value_counts(sort=True)
            vocab = counts.index[:max_tokens]
            cat[name] = {"dtype": "string" if is_str else "int64",
                         "vocab": [str(v) for v in vocab] if is_str else [int(v) for v in vocab]}
        num = {}
        for name in numeric:
            x = signed_log1p(frame[name].to_numpy(np.float64))
            finite = x[np.isfinite(x)]
            mean = float(finite.mean()) if len(finite) else 0.0
            std = float(finite.std()) if len(finite) > 1 else 1.0
            num[name] = {"mean": mean, "std": std if std > 1e-8 else 1.0}
        return cls(cat, num, num_oov=num_oov)

    def vocab_size(self, name: str) -> int:
        return len(self.categorical[name]["vocab"]) + self.num_oov

    def input_signature(self) -> Dict[str, tf.TensorSpec]:
        """Raw inputs, one 1-D tensor per feature (the SavedModel's serving inputs)."""
        sig = {name: tf.TensorSpec([None], tf.string if s["dtype"] == "string" else tf.int64,
                                   name=name) for name, s in self.categorical.items()}
        sig.update({name: tf.TensorSpec([None], tf.float32, name=name) for name in self.numeric})
        return sig

    def raw_arrays(self, frame: pd.DataFrame) -> Dict[str, np.ndarray]:
        """Columns of ``frame`` as the arrays the model takes (dtype per input signature)."""
        out = {}
        for name, s in self.categorical.items():
            col = frame[name]
            out[name] = (col.astype(str).to_numpy(dtype=object) if s["dtype"] == "string"
                         else col.to_numpy(np.int64))
        for name in self.numeric:
            out[name] = frame[name].to_numpy(np.float32)
        return out

    def compact_arrays(self, frame: pd.DataFrame) -> dict:
        """:meth:`raw_arrays` with string columns as :class:`CodedStrings` (int32 codes and
        their distinct values), for tf.data pipelines over large frames."""
        out = {}
        for name, s in self.categorical.items():
            if s["dtype"] == "string":
                codes, uniques = pd.factorize(frame[name].astype(str), use_na_sentinel=False)
                out[name] = CodedStrings(codes.astype(np.int32),
                                         np.asarray([str(u) for u in uniques], dtype=object))
            else:
                out[name] = frame[name].to_numpy(np.int64)
        for name in self.numeric:
            out[name] = frame[name].to_numpy(np.float32)
        return out

    def call(self, inputs):
        """-> (dict of int ids per categorical feature, [B, 2 * n_numeric] float tensor)."""
        ids = {name: self.lookups[name](inputs[name]) for name in self.categorical}
        cols = []
        for name, s in self.numeric.items():
            x = tf.cast(inputs[name], tf.float32)
            missing = tf.math.is_nan(x)
            z = (tf.sign(x) * tf.math.log1p(tf.abs(x)) - s["mean"]) / s["std"]
            cols.append(tf.where(missing, tf.zeros_like(z), z))
            cols.append(tf.cast(missing, tf.float32))
        dense = tf.stack(cols, axis=1) if cols else None
        return ids, dense

    def get_config(self):
        return {**super().get_config(), "categorical": self.categorical,
                "numeric": self.numeric, "num_oov": self.num_oov}

