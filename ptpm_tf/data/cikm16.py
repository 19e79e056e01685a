"""CIKM Cup 2016 (DIGINETICA) item views as canonical rows, with dwell time as the label.

File (first match wins): ``train-item-views.csv``, ``*train-item-views*.csv`` (e.g. the
shared ``sample_train-item-views.csv``), ";"-separated with the header
``sessionId;userId;itemId;timeframe;eventdate`` (``session_id;user_id;...`` also accepted).
``timeframe`` is the ms offset of the view from its session's start.

- ``watch_time`` (s) = the next view's timeframe minus this one's within the session,
  views sorted by timeframe (ties keep file order). The last view of each session has no
  next view, so no dwell: it is dropped and counted under
  :data:`LAST_VIEW` (not an input error: ``strict`` does not raise for it). With ``rows``,
  the last session read may be cut short, so its last row read is dropped the same way.
- ``user_id``: the userId; anonymous views ("NA") get ``-sessionId`` instead, so that a
  session stands for its unknown user and never collides with a real (positive) user id.
- ``timestamp`` (s) = eventdate (the session's day, UTC midnight) + timeframe / 1000.
- no ``duration`` (items are web pages).
- optional ``product-categories.csv`` (``itemId;categoryId``) adds the categorical
  ``category`` (-1 where unknown).

Rows keep the file's order. ``seed`` is unused (no sampling).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from ptpm_tf.data import cache
from ptpm_tf.data.dataset import ITEM, LABEL, TIMESTAMP, USER, Dataset, LoadReport, shown
from ptpm_tf.data.files import dataset_location, find_file
from ptpm_tf.data.join import join_features
from ptpm_tf.data.kuairec import note_side_drops
from ptpm_tf.data.reader import LINE, Column, drop_rows, read_csv, where

VERSION = 1
NAME = "cikm16"
VIEWS = ("train-item-views.csv", "*train-item-views*.csv")
CATEGORIES = ("product-categories.csv", "*product-categories*.csv")
SEP = ";"
LAST_VIEW = "last view of a session (no next view, so no dwell time)"


def load(*, data_dir=None, spec=None, rows: Optional[int] = None, seed: int = 0,
         strict: bool = False) -> Dataset:
    """Load CIKM16 from ``data_dir`` (folder or the item-views file); cached (see cache)."""
    folder, main = dataset_location(NAME, data_dir, spec)
    main = main or find_file(folder, VIEWS, "CIKM16 train-item-views")
    cats = find_file(folder, CATEGORIES, "product categories", required=False)
    sources = [main] + ([cats] if cats else [])
    return cache.cached_load(NAME, VERSION, sources, {"rows": rows, "strict": strict},
                             lambda: build(main, categories=cats, rows=rows, strict=strict))


def build(views: Path, *, categories: Optional[Path] = None, rows: Optional[int] = None,
          strict: bool = False) -> Dataset:
    """Parse the views into a Dataset of dwell times (no cache)."""
    report = LoadReport()
    f = read_csv(views, [Column("session_id", "int", aliases=("sessionId",)),
                         Column("user_id", "int", missing="keep", aliases=("userId",)),
                         Column("item_id", "int", aliases=("itemId",)),
                         Column("timeframe", role="view time"),
                         Column("eventdate", "str")],
                 sep=SEP, rows=rows, strict=strict, report=report)
    f = drop_rows(f, f["timeframe"].to_numpy() < 0, "negative timeframe", file=views,
                  column="timeframe", report=report, strict=strict,
                  describe=lambda r: f"negative timeframe {r['timeframe']:g} ms")
    day = pd.to_datetime(f["eventdate"], format="%Y-%m-%d", errors="coerce")
    f = drop_rows(f, day.isna().to_numpy(), "bad eventdate", file=views, column="eventdate",
                  report=report, strict=strict,
                  describe=lambda r: f"not a YYYY-MM-DD date: {shown(r['eventdate'])}")
    day = pd.to_datetime(f["eventdate"], format="%Y-%m-%d", utc=True)
    day_s = ((day - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy()

    session = f["session_id"].to_numpy()
    tf = f["timeframe"].to_numpy()
    order = np.lexsort((f[LINE].to_numpy(), tf, session))
    s_sorted, tf_sorted = session[order], tf[order]
    has_next = np.zeros(len(order), dtype=bool)
    has_next[:-1] = s_sorted[1:] == s_sorted[:-1]
    dwell = np.full(len(order), np.nan)
    dwell[:-1] = tf_sorted[1:] - tf_sorted[:-1]
    keep_sorted = order[has_next]
    last = order[~has_next]
    if len(last):
        first = last[np.argmin(f[LINE].to_numpy()[last])]
        report.drop(LAST_VIEW, len(last), where(views, int(f[LINE].iat[first]), "timeframe",
                                                f"session {session[first]}'s last view"))
    label = np.empty(len(f))
    label[keep_sorted] = dwell[has_next] / 1000.0
    keep = np.sort(keep_sorted)  # back to file order

    user = f["user_id"].array
    anonymous = np.asarray(user.isna())
    user_id = np.where(anonymous, -session, np.asarray(user.fillna(0), dtype=np.int64))
    report.note("with an anonymous user (user_id = -session id)",
                int(np.count_nonzero(anonymous[keep])))
    frame = pd.DataFrame({USER: user_id[keep], ITEM: f["item_id"].to_numpy()[keep],
                          LABEL: label[keep], TIMESTAMP: day_s[keep] + tf[keep] / 1000.0},
                         copy=False)
    del f
    categorical = []
    if categories is not None:
        side = LoadReport()
        table = read_csv(categories, [Column("item_id", "int", aliases=("itemId",)),
                                      Column("category", "cat", missing="keep",
                                             aliases=("categoryId", "category_id"))],
                         sep=SEP, strict=strict, report=side)
        categorical = join_features(frame, table, key="item_id", frame_key=ITEM,
                                    categorical=["category"], numeric=[], report=report,
                                    what=f"a category ({categories.name})")[0]
        note_side_drops(report, side)
    return Dataset(NAME, frame, categorical, [], report)
