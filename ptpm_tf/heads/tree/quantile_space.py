"""The tree over D2Q's within-duration-group quantile (``label_space='quantile'``).

The training rows are split into equal-frequency duration groups and each group's watch
time keeps its empirical quantile function ``Q_g`` as knots, exactly as D2Q does
(:func:`ptpm_tf.heads.quantile.fit_duration_quantiles`, D2Q's default 20 groups and 101
knots). The tree discretises ``u = F_g(w)`` in [0, 1]: "this view watched longer than a
share ``u`` of the views of items of about this length". A quantile of the tree's
distribution of ``u`` is a quantile in seconds through the monotone ``Q_g`` (exactly, for
any level), so the median and the served quantiles are ``Q_g`` of the tree's. Means do not
commute with ``Q_g``: each group keeps, per global leaf, the mean and second moment in
seconds of ``Q_g(U)`` for ``U`` distributed inside the leaf as the decoder interpolates
it (uniform between consecutive ``leaf_knots``), integrated exactly because ``Q_g`` is
piecewise linear (:func:`leaf_moments`). Eq. 2 is then ``sum_l P(l) mean_g(l)``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ptpm_tf.heads.quantile import DurationQuantiles, fit_duration_quantiles

#: D2Q's defaults (:class:`ptpm_tf.heads.configs.DurationGroupConfig`): equal-frequency
#: duration groups, and knots of each group's quantile function
GROUPS = 20
KNOTS = 101


def fit_tables(y: np.ndarray, duration: Optional[np.ndarray]) -> DurationQuantiles:
    """The duration groups and their quantile functions of the training labels."""
    return fit_duration_quantiles(y, duration, GROUPS, KNOTS)


def _integrals(q: np.ndarray, u: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``int_0^u Q`` and ``int_0^u Q^2`` ([G, P]) of the piecewise-linear ``Q`` through the
    knots ``q`` [G, M] at ``j / (M - 1)``, at the points ``u`` [P] in [0, 1]."""
    m = q.shape[1]
    h = 1.0 / (m - 1)
    q0, slope = q[:, :-1], np.diff(q, axis=1) / h  # [G, M-1]
    piece = q0 * h + slope * h ** 2 / 2
    piece2 = q0 ** 2 * h + q0 * slope * h ** 2 + slope ** 2 * h ** 3 / 3
    c1 = np.concatenate([np.zeros((len(q), 1)), np.cumsum(piece, axis=1)], axis=1)
    c2 = np.concatenate([np.zeros((len(q), 1)), np.cumsum(piece2, axis=1)], axis=1)
    u = np.clip(np.asarray(u, np.float64), 0.0, 1.0)
    i = np.clip(np.floor(u / h).astype(np.int64), 0, m - 2)
    t = u - i * h
    a, s = q0[:, i], slope[:, i]
    return (c1[:, i] + a * t + s * t ** 2 / 2,
            c2[:, i] + a ** 2 * t + a * s * t ** 2 + s ** 2 * t ** 3 / 3)


def leaf_moments(tables: DurationQuantiles, knot_grid: np.ndarray, n_leaves: int,
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """Per group and global leaf ([G+1, L] each): ``E[Q_g(U)]`` and ``E[Q_g(U)^2]`` in
    seconds, ``U`` spread over the leaf as the decoder interpolates it: equal mass
    ``1 / K`` on each of its ``K`` pieces between consecutive knots of ``knot_grid``
    ([L*K+1], :func:`ptpm_tf.heads.tree.decoding.knot_grid`), uniform inside a piece (a
    zero-width piece is a point mass)."""
    q = tables.knots.astype(np.float64)
    grid = np.asarray(knot_grid, np.float64)
    k_pieces = (len(grid) - 1) // n_leaves
    i1, i2 = _integrals(q, grid)
    width = np.diff(grid)  # [L*K]
    at_a, at_a2 = _values(q, grid[:-1])
    wide = width > 1e-12
    safe = np.where(wide, width, 1.0)
    m1 = np.where(wide, np.diff(i1, axis=1) / safe, at_a)
    m2 = np.where(wide, np.diff(i2, axis=1) / safe, at_a2)
    shape = (len(q), n_leaves, k_pieces)
    return m1.reshape(shape).mean(2), m2.reshape(shape).mean(2)


def _values(q: np.ndarray, u: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``Q(u)`` and ``Q(u)^2`` ([G, P]) of the piecewise-linear quantile functions."""
    m = q.shape[1]
    pos = np.clip(u, 0.0, 1.0) * (m - 1)
    i = np.clip(np.floor(pos).astype(np.int64), 0, m - 2)
    v = q[:, i] + (pos - i) * (q[:, i + 1] - q[:, i])
    return v, v ** 2
