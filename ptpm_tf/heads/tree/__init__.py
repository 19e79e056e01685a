"""The tree model (TPM and PTPM) in one place, in the order of the paper:

- :mod:`~ptpm_tf.heads.tree.config`: :class:`TreeConfig`, the settings and their defaults;
- :mod:`~ptpm_tf.heads.tree.geometry`: the global tree, its equal-frequency leaf bounds,
  node values and the heap index arithmetic (paper section 4.1);
- :mod:`~ptpm_tf.heads.tree.head`: :class:`TreeHead`, the per-node classifiers (Eq. 1-3),
  the pruning model and the personalised tree (Eq. 5-10), the total loss (Eq. 18);
- :mod:`~ptpm_tf.heads.tree.losses`: the UCL-weighted path loss (Eq. 13-17) and the
  self-critical REINFORCE loss of tree structure learning (Eq. 11-12);
- :mod:`~ptpm_tf.heads.tree.decoding`: the leaf distribution's median, quantiles and
  survival;
- :mod:`~ptpm_tf.heads.tree.completion`: the monotone map that recalibrates ``p_complete``;
- :mod:`~ptpm_tf.heads.tree.describe`: one request's personalised tree, readable.

Importing the package does not import TensorFlow (the CLI reads :class:`TreeConfig`
before it loads TensorFlow); ``TreeHead`` is imported on first use.
"""


def __getattr__(name):
    if name == "TreeHead":
        from ptpm_tf.heads.tree.head import TreeHead
        return TreeHead
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TreeHead"]
