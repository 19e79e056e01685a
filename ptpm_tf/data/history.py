"""Viewing-history features: what the log already knew about a row's user and item before
the row happened (``--history-features``).

A watch-time model has to infer a user's habits (does this user skip, finish, replay?)
from the id embedding alone, which sees a few dozen views per user and overfits within
two epochs. These features state the habits directly, from the same log: for each row,
over the **earlier** rows (in time order) of the same user, and of the same item,

- ``*_hist_views``: how many there were;
- ``*_hist_ratio``: their mean watch ratio ``min(w / d, 5)`` (with a duration);
- ``*_hist_complete``: the share watched to the end, ``w >= d`` (with a duration);
- ``*_hist_log_seconds``: their mean ``log1p(w)``.

Means are shrunk toward the mean of every earlier row of the log by ``PRIOR_VIEWS``
pseudo-views, so a user's first view gets the log's mean so far rather than an empty
mean. A row's own label never enters its features (strictly earlier rows only), so
training on them does not leak the label; at serving time they are what the logging
system knows about the user and item at the request, passed in the request like any
numeric feature.
"""
from __future__ import annotations

from typing import List

import numpy as np
import pandas as pd

from ptpm_tf.data.dataset import DURATION, ITEM, LABEL, TIMESTAMP, USER, DataError, Dataset

#: pseudo-views of the log's running mean added to each user's and item's history
PRIOR_VIEWS = 5.0
#: watch ratios above this count as this (a few long replays would dominate a mean)
RATIO_CAP = 5.0


#: whose history: the prefix of the feature names and the id column
_SIDES = {"user": USER, "item": ITEM}


def history_columns(dataset: Dataset) -> List[str]:
    """The names :func:`add_history_features` adds to ``dataset``."""
    stats = (["ratio", "complete"] if dataset.has_duration else []) + ["log_seconds"]
    return [f"{side}_hist_{s}" for side, col in _SIDES.items() if col in
            dataset.frame.columns for s in ["views", *stats]]


def add_history_features(dataset: Dataset) -> Dataset:
    """``dataset`` with the history features as extra numeric columns (module doc).
    Needs a timestamp: history is defined by time order."""
    frame = dataset.frame
    if TIMESTAMP not in frame.columns:
        raise DataError(f"dataset {dataset.name!r} has no timestamp: history features need "
                        f"the time order of the views", column=TIMESTAMP)
    order = np.argsort(frame[TIMESTAMP].to_numpy(), kind="stable")
    y = frame[LABEL].to_numpy(np.float64)[order]
    values = {"log_seconds": np.log1p(y)}
    if dataset.has_duration:
        d = frame[DURATION].to_numpy(np.float64)[order]
        known = np.isfinite(d) & (d > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            values["ratio"] = np.where(known, np.minimum(y / d, RATIO_CAP), np.nan)
            values["complete"] = np.where(known, (y >= d).astype(np.float64), np.nan)
    out = frame.copy()
    added = history_columns(dataset)
    for name in added:
        side, stat = name.split("_hist_")
        keys = frame[_SIDES[side]].to_numpy()[order]
        if stat == "views":
            col = _earlier_counts(keys)
        else:
            col = _earlier_means(keys, values[stat])
        full = np.empty(len(frame))
        full[order] = col
        out[name] = full
    return Dataset(dataset.name, out, list(dataset.categorical),
                   [*dataset.numeric, *added], dataset.report)


def _earlier_counts(keys: np.ndarray) -> np.ndarray:
    """Per row (in time order): the number of earlier rows with the same key."""
    return pd.Series(np.ones(len(keys))).groupby(keys).cumcount().to_numpy(np.float64)


def _earlier_means(keys: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per row (in time order): the mean of ``x`` over earlier rows with the same key,
    shrunk toward the mean over all earlier rows by ``PRIOR_VIEWS`` pseudo-rows. NaN
    values of ``x`` (no duration) are left out of every mean."""
    ok = np.isfinite(x)
    x0 = np.where(ok, x, 0.0)
    n_all = np.cumsum(ok) - ok
    s_all = np.cumsum(x0) - x0
    prior = s_all / np.maximum(n_all, 1)  # 0 before the log's first value: no future peeked
    grouped = pd.DataFrame({"x": x0, "n": ok.astype(np.float64)}).groupby(keys)
    s = grouped["x"].cumsum().to_numpy() - x0
    n = grouped["n"].cumsum().to_numpy() - ok
    return (s + PRIOR_VIEWS * prior) / (n + PRIOR_VIEWS)
