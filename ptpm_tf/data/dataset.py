"""The canonical dataset every loader returns (docs/design.md section 5).

A :class:`Dataset` is one pandas frame of canonical rows plus the names of its feature
columns. Canonical columns:

- ``user_id``, ``item_id``: categorical ids (int64 or str);
- ``watch_time``: the label, in seconds, finite and >= 0;
- ``duration`` (optional): the item's length in seconds (NaN where unknown);
- ``timestamp`` (optional): seconds since the epoch, used for time splits;
- ``oracle_median``, ``oracle_mean`` (optional, simulator only): the true conditional
  median and mean of the watch time for the row, for the oracle row of every table;
- any further feature columns named in ``categorical`` or ``numeric``.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

LABEL = "watch_time"
DURATION = "duration"
TIMESTAMP = "timestamp"
USER = "user_id"
ITEM = "item_id"
ORACLE_MEDIAN = "oracle_median"
ORACLE_MEAN = "oracle_mean"


#: longest error message (characters): a message is one line on a terminal, never a dump
MAX_MESSAGE = 600
#: longest input value quoted in a message
MAX_VALUE = 60


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters with a
    note of how much was cut: what an error message may show of arbitrary input."""
    flat = " ".join(str(text).split())
    if len(flat) <= limit:
        return flat
    return f"{flat[:limit]}... ({len(flat) - limit} more characters)"


def shown(value, limit: int = MAX_VALUE) -> str:
    """``repr(value)`` cut to ``limit`` characters, for quoting a bad input value."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


class DataError(ValueError):
    """Bad input, with where it was found (file, row, column) in the message. The message
    is one bounded line (:func:`one_line`), whatever the input held."""

    def __init__(self, message: str, *, file: Optional[str] = None,
                 row: Optional[int] = None, column: Optional[str] = None):
        where = ", ".join(
            f"{k} {one_line(v, 200)}" for k, v in (("file", file), ("row", row),
                                                    ("column", column))
            if v is not None)
        super().__init__(one_line(f"{where}: {message}" if where else message))
        self.file, self.row, self.column = file, row, column


@dataclasses.dataclass
class LoadReport:
    """Rows read and rows dropped, by reason, so that no row is lost without a count."""

    rows_read: int = 0
    dropped: Dict[str, int] = dataclasses.field(default_factory=dict)
    examples: Dict[str, str] = dataclasses.field(default_factory=dict)
    #: rows kept but changed or incomplete (e.g. duration 0 -> NaN, no features joined)
    notes: Dict[str, int] = dataclasses.field(default_factory=dict)

    def drop(self, reason: str, count: int, example: Optional[str] = None) -> None:
        if count <= 0:
            return
        self.dropped[reason] = self.dropped.get(reason, 0) + int(count)
        if example is not None and reason not in self.examples:
            self.examples[reason] = example

    def note(self, what: str, count: int) -> None:
        """Count kept rows that were changed or lack something (not a drop)."""
        if count > 0:
            self.notes[what] = self.notes.get(what, 0) + int(count)

    @property
    def rows_kept(self) -> int:
        return self.rows_read - sum(self.dropped.values())

    def summary(self) -> str:
        notes = "".join(f"; note: {n} rows {what}" for what, n in sorted(self.notes.items()))
        if not self.dropped:
            return f"{self.rows_read} rows read, none dropped" + notes
        parts = [f"{n} {reason}" + (f" (first: {self.examples[reason]})"
                                     if reason in self.examples else "")
                 for reason, n in sorted(self.dropped.items())]
        return (f"{self.rows_read} rows read, {self.rows_read - self.rows_kept} dropped: "
                + "; ".join(parts) + notes)


@dataclasses.dataclass
class Dataset:
    """Canonical rows plus which columns are categorical and numeric features."""

    name: str
    frame: pd.DataFrame
    categorical: List[str]
    numeric: List[str]
    report: LoadReport = dataclasses.field(default_factory=LoadReport)

    def __post_init__(self):
        # The ids are always categorical features and the duration a numeric one when the
        # columns exist, whether or not a loader listed them (a spec implies them).
        ids = [c for c in (USER, ITEM) if c in self.frame.columns]
        self.categorical = ids + [c for c in self.categorical if c not in ids]
        if DURATION in self.frame.columns:
            self.numeric = [DURATION] + [c for c in self.numeric if c != DURATION]
        missing = [c for c in [LABEL, *self.categorical, *self.numeric]
                   if c not in self.frame.columns]
        if missing:
            raise DataError(f"dataset {self.name!r} lacks columns {missing}")
        y = self.frame[LABEL].to_numpy()
        if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)) or np.any(y < 0):
            raise DataError(f"dataset {self.name!r}: watch_time must be finite and >= 0",
                            column=LABEL)

    @property
    def features(self) -> List[str]:
        return [*self.categorical, *self.numeric]

    @property
    def has_duration(self) -> bool:
        return DURATION in self.frame.columns

    @property
    def has_oracle(self) -> bool:
        return ORACLE_MEDIAN in self.frame.columns and ORACLE_MEAN in self.frame.columns

    def __len__(self) -> int:
        return len(self.frame)
