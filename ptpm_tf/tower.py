"""The shared tower (paper section 4.4, Fig. 5): embeddings -> feature crossing -> MLP.

Every model in the project (PTPM, TPM and each baseline) uses this same tower and differs
only in its head, so comparisons measure the heads and losses, not the architecture.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs


class Tower(tf.keras.layers.Layer):
    """Embeds each categorical id, concatenates the numeric block, applies ``n_cross``
    DCN cross layers (``tfrs.layers.dcn.Cross``) and an MLP; returns the shared hidden
    representation every head reads."""

    def __init__(self, vocab_sizes: dict, embedding_dim: int = 16, n_cross: int = 2,
                 hidden: Sequence[int] = (256, 128), dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.vocab_sizes = dict(vocab_sizes)
        self.embedding_dim = embedding_dim
        self.n_cross = n_cross
        self.hidden = tuple(hidden)
        self.dropout = dropout
        self.embeddings = {
            name: tf.keras.layers.Embedding(size, embedding_dim, name=f"embed_{name}",
                                            embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.05))
            for name, size in self.vocab_sizes.items()}
        self.crosses = [tfrs.layers.dcn.Cross(name=f"cross_{i}") for i in range(n_cross)]
        self.mlp = [tf.keras.layers.Dense(units, activation="relu", name=f"mlp_{i}")
                    for i, units in enumerate(self.hidden)]
        self.drop = tf.keras.layers.Dropout(dropout) if dropout > 0 else None

    def call(self, encoded, training=False):
        ids, dense = encoded
        parts = [self.embeddings[name](ids[name]) for name in self.vocab_sizes]
        if dense is not None:
            parts.append(dense)
        x0 = tf.concat(parts, axis=1)
        x = x0
        for cross in self.crosses:
            x = cross(x0, x)
        for layer in self.mlp:
            x = layer(x)
            if self.drop is not None:
                x = self.drop(x, training=training)
        return x

    def get_config(self):
        return {**super().get_config(), "vocab_sizes": self.vocab_sizes,
                "embedding_dim": self.embedding_dim, "n_cross": self.n_cross,
                "hidden": list(self.hidden), "dropout": self.dropout}
