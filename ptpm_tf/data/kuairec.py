"""KuaiRec 2.0 (Gao et al., CIKM 2022) as canonical rows.

Files in the folder (UTF-8 with a BOM), found by these patterns, first match wins:

- interactions: ``big_matrix.csv``, ``small_matrix.csv``, ``big_matrix*.csv``,
  ``small_matrix*.csv`` (e.g. the sample's ``big_matrix_1000.csv``); pass the file itself
  as ``data_dir`` to pick ``small_matrix.csv`` when both are there. Columns used:
  ``user_id``, ``video_id``, ``play_duration`` (ms) -> ``watch_time`` (s),
  ``video_duration`` (ms) -> ``duration`` (s), ``timestamp`` (s).
- optional ``user_features*.csv`` (the raw user table, e.g. ``user_features_raw_sample.csv``):
  :data:`USER_CATEGORICAL` and :data:`USER_NUMERIC`, joined on ``user_id``.
- optional ``item_categories*.csv``: ``feat`` is a list like "[27, 9]"; its first entry
  becomes the categorical ``category`` (-1 for an empty list).
- optional ``item_daily_features*.csv``: one row per video and day; the static columns
  :data:`ITEM_DAILY_CATEGORICAL` are taken from each video's earliest day.

Rows with a missing timestamp are dropped and counted (the split is by time); a missing
video_duration leaves ``duration`` NaN. ``rows`` keeps the first rows of the file (it is
sorted by user, so few rows mean few users); ``seed`` is unused (no sampling).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np
import pandas as pd

from ptpm_tf.data import cache
from ptpm_tf.data.dataset import (DURATION, ITEM, LABEL, TIMESTAMP, USER, Dataset,
                                  LoadReport)
from ptpm_tf.data.files import dataset_location, find_file
from ptpm_tf.data.join import join_features
from ptpm_tf.data.reader import LINE, Column, drop_rows, read_csv

#: bump when the output of this loader changes, to invalidate cached datasets
VERSION = 1
NAME = "kuairec"
INTERACTIONS = ("big_matrix.csv", "small_matrix.csv", "big_matrix*.csv", "small_matrix*.csv")
USER_FILES = ("user_features.csv", "user_features*.csv")
CATEGORY_FILES = ("item_categories.csv", "item_categories*.csv")
DAILY_FILES = ("item_daily_features.csv", "item_daily_features*.csv")

#: user table columns (shared by KuaiRand, whose user table has the same layout)
USER_CATEGORICAL = ["user_active_degree", "is_lowactive_period", "is_live_streamer",
                    "is_video_author", "follow_user_num_range", "fans_user_num_range",
                    "friend_user_num_range", "register_days_range",
                    *[f"onehot_feat{k}" for k in range(18)]]
USER_NUMERIC = ["follow_user_num", "fans_user_num", "friend_user_num", "register_days"]
ITEM_DAILY_CATEGORICAL = ["author_id", "video_type", "upload_type", "video_tag_id"]


def load(*, data_dir=None, spec=None, rows: Optional[int] = None, seed: int = 0,
         strict: bool = False) -> Dataset:
    """Load KuaiRec from ``data_dir`` (folder or interaction file); cached (see cache)."""
    folder, main = dataset_location(NAME, data_dir, spec)
    main = main or find_file(folder, INTERACTIONS, "KuaiRec interaction (big/small_matrix)")
    users = find_file(folder, USER_FILES, "user features", required=False)
    cats = find_file(folder, CATEGORY_FILES, "item categories", required=False)
    daily = find_file(folder, DAILY_FILES, "item daily features", required=False)
    sources = [p for p in (main, users, cats, daily) if p is not None]
    return cache.cached_load(
        NAME, VERSION, sources, {"rows": rows, "strict": strict},
        lambda: build(main, users=users, categories=cats, daily=daily, rows=rows,
                      strict=strict))


def build(main: Path, *, users: Optional[Path] = None, categories: Optional[Path] = None,
          daily: Optional[Path] = None, rows: Optional[int] = None,
          strict: bool = False) -> Dataset:
    """Parse the files into a Dataset (no cache)."""
    report = LoadReport()
    f = read_csv(main, [Column("user_id", "int"), Column("video_id", "int"),
                        Column("play_duration", role="watch time"),
                        Column("video_duration", missing="keep"),
                        Column("timestamp")],
                 rows=rows, strict=strict, report=report, main=True)
    f = drop_rows(f, f["play_duration"].to_numpy() < 0, "negative watch time (play_duration)",
                  file=main, column="play_duration", report=report, strict=strict,
                  describe=lambda r: f"negative watch time {r['play_duration']:g} ms")
    dur = f["video_duration"].to_numpy()
    f = drop_rows(f, dur < 0, "negative video_duration", file=main, column="video_duration",
                  report=report, strict=strict,
                  describe=lambda r: f"negative duration {r['video_duration']:g} ms")
    frame = pd.DataFrame({
        USER: f["user_id"].to_numpy(), ITEM: f["video_id"].to_numpy(),
        LABEL: f["play_duration"].to_numpy() / 1000.0,
        DURATION: f["video_duration"].to_numpy() / 1000.0,
        TIMESTAMP: f["timestamp"].to_numpy()}, copy=False)
    report.note("with video_duration missing (duration NaN)", int(frame[DURATION].isna().sum()))
    del f
    categorical: List[str] = []
    numeric: List[str] = []
    side = LoadReport()
    if users is not None:
        c, n = join_user_features(frame, users, strict=strict, report=report, side=side)
        categorical += c
        numeric += n
    if categories is not None:
        table = read_csv(categories, [Column("video_id", "int"), Column("feat", "str")],
                         strict=strict, report=side)
        first = table["feat"].str.extract(r"^\s*\[?\s*(-?\d+)", expand=False)
        table["category"] = pd.to_numeric(first).fillna(-1).astype(np.int64).to_numpy()
        categorical += join_features(frame, table, key="video_id", frame_key=ITEM,
                                     categorical=["category"], numeric=[], report=report,
                                     what=f"a category ({categories.name})")[0]
    if daily is not None:
        table = read_csv(daily, [Column("video_id", "int"), Column("date", missing="keep"),
                                 *[Column(c, "cat", missing="keep")
                                   for c in ITEM_DAILY_CATEGORICAL]],
                         strict=strict, report=side)
        table = table.sort_values(["video_id", "date", LINE], kind="stable")
        categorical += join_features(frame, table, key="video_id", frame_key=ITEM,
                                     categorical=ITEM_DAILY_CATEGORICAL, numeric=[],
                                     report=report,
                                     what=f"item daily features ({daily.name})")[0]
    note_side_drops(report, side)
    return Dataset(NAME, frame, categorical, numeric, report)


def join_user_features(frame: pd.DataFrame, users: Path, *, strict: bool, report: LoadReport,
                       side: LoadReport):
    """Join Kuaishou's user_features file (the same layout in KuaiRec and KuaiRand) onto
    ``frame`` by user id; returns the (categorical, numeric) columns added."""
    table = read_csv(users, [Column("user_id", "int"),
                             *[Column(c, "cat", missing="keep") for c in USER_CATEGORICAL],
                             *[Column(c, missing="keep") for c in USER_NUMERIC]],
                     strict=strict, report=side)
    return join_features(frame, table, key="user_id", frame_key=USER,
                         categorical=USER_CATEGORICAL, numeric=USER_NUMERIC,
                         report=report, what=f"user features ({users.name})")


def note_side_drops(report: LoadReport, side: LoadReport) -> None:
    """Feature-table rows dropped as bad become notes of the main report (with examples)."""
    for reason, n in side.dropped.items():
        ex = side.examples.get(reason)
        report.note(f"of feature tables dropped as {reason}" + (f" (first: {ex})" if ex else ""),
                    n)

