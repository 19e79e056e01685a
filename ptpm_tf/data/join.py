"""Left-joining a per-user or per-item feature table onto the interaction rows.

Done by index lookup and ``take`` per column (not ``DataFrame.merge``) so that a 12.5M-row
frame grows by the new columns only, with no copy of the rows already there. A row whose
key is not in the table gets the missing value of each column (-1 or "" for a categorical,
NaN for a numeric) and is counted in ``report.notes``; a key repeated in the table keeps
its first row. Columns the interaction rows already have are not overwritten.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
import pandas as pd

from ptpm_tf.data.dataset import LoadReport


def join_features(frame: pd.DataFrame, table: pd.DataFrame, *, key: str, frame_key: str,
                  categorical: Sequence[str], numeric: Sequence[str], report: LoadReport,
                  what: str) -> Tuple[List[str], List[str]]:
    """Add ``table``'s columns to ``frame`` in place, matched on ``frame_key == key``.

    Returns the (categorical, numeric) columns actually added.
    """
    table = table.drop_duplicates(key, keep="first")
    idx = pd.Index(table[key].to_numpy()).get_indexer(frame[frame_key].to_numpy())
    miss = idx < 0
    report.note(f"without {what}", int(miss.sum()))
    safe = np.where(miss, 0, idx)
    added_cat, added_num = [], []
    for col in categorical:
        if col in frame.columns or col not in table.columns:
            continue
        src = table[col]
        if pd.api.types.is_integer_dtype(src.dtype):
            vals = src.to_numpy()[safe] if len(src) else np.zeros(len(frame), np.int64)
            frame[col] = np.where(miss, -1, vals)
        else:
            vals = src.array.take(safe) if len(src) else \
                pd.array(np.full(len(frame), ""), dtype="str")
            frame[col] = pd.Series(vals).where(~miss, "").array if miss.any() else vals
        added_cat.append(col)
    for col in numeric:
        if col in frame.columns or col not in table.columns:
            continue
        src = table[col].to_numpy(dtype=np.float64)
        vals = src[safe] if len(src) else np.full(len(frame), np.nan)
        frame[col] = np.where(miss, np.nan, vals)
        added_num.append(col)
    return added_cat, added_num
