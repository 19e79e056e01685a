"""KuaiRand (Gao et al., CIKM 2022; 1K, Pure or 27K) as canonical rows.

Files in the folder, found by these patterns, first match wins:

- interactions: every ``log_standard_*.csv`` (concatenated in name order; the
  ``log_random_*`` logs of random exposure are not read), else ``kuairand_sample*.csv`` (an
  already joined log, as in the shared sample). Columns used: ``user_id``, ``video_id``,
  ``play_time_ms`` -> ``watch_time`` (s), ``duration_ms`` -> ``duration`` (s; 0 means
  missing and becomes NaN, counted as a note), ``time_ms`` -> ``timestamp`` (s) where
  present, ``tab`` (the app page, categorical) where present. Outcome columns (is_click,
  long_view, stay times, ...) are not used as features: they are known only afterwards.
  User columns already in the log (the joined sample) are used as they are.
- optional ``user_features*.csv``: the KuaiRec user layout
  (:data:`ptpm_tf.data.kuairec.USER_CATEGORICAL`, ``USER_NUMERIC``), joined on user_id
  for columns the log lacks.
- optional ``video_features_basic*.csv``: :data:`VIDEO_CATEGORICAL` (``tag`` is a
  comma-separated list: its first entry is used) and :data:`VIDEO_NUMERIC`, joined on
  video_id for columns the log lacks.

``rows`` caps the rows read over all logs; ``seed`` is unused (no sampling).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd

from ptpm_tf.data import cache
from ptpm_tf.data.dataset import (DURATION, ITEM, LABEL, TIMESTAMP, USER, Dataset,
                                  LoadReport)
from ptpm_tf.data.files import dataset_location, find_file, find_files
from ptpm_tf.data.join import join_features
from ptpm_tf.data.kuairec import USER_CATEGORICAL, USER_NUMERIC, join_user_features, note_side_drops
from ptpm_tf.data.reader import Column, csv_header, drop_rows, read_csv

VERSION = 1
NAME = "kuairand"
LOGS = ("log_standard_*.csv", "kuairand_sample*.csv")
USER_FILES = ("user_features.csv", "user_features*.csv")
VIDEO_FILES = ("video_features_basic.csv", "video_features_basic*.csv")
VIDEO_CATEGORICAL = ["author_id", "video_type", "upload_type", "visible_status",
                     "music_type", "tag"]
VIDEO_NUMERIC = ["server_width", "server_height"]


def load(*, data_dir=None, spec=None, rows: Optional[int] = None, seed: int = 0,
         strict: bool = False) -> Dataset:
    """Load KuaiRand from ``data_dir`` (folder or one log file); cached (see cache)."""
    folder, main = dataset_location(NAME, data_dir, spec)
    logs = [main] if main else find_files(folder, LOGS, "KuaiRand log", many=True)
    users = find_file(folder, USER_FILES, "user features", required=False)
    videos = find_file(folder, VIDEO_FILES, "video features", required=False)
    sources = [*logs, *(p for p in (users, videos) if p is not None)]
    return cache.cached_load(
        NAME, VERSION, sources, {"rows": rows, "strict": strict},
        lambda: build(logs, users=users, videos=videos, rows=rows, strict=strict))


def build(logs: Sequence[Path], *, users: Optional[Path] = None,
          videos: Optional[Path] = None, rows: Optional[int] = None,
          strict: bool = False) -> Dataset:
    """Parse the files into a Dataset (no cache)."""
    report = LoadReport()
    # the user columns present in the (joined) log are read from it
    header = set(csv_header(logs[0]))
    log_cat = ["tab", *[c for c in USER_CATEGORICAL if c in header]]
    log_num = [c for c in USER_NUMERIC if c in header]
    cols = [Column("user_id", "int"), Column("video_id", "int"),
            Column("play_time_ms", role="watch time"),
            Column("duration_ms", missing="keep"),
            Column("time_ms", optional=True, role="timestamp"),
            *[Column(c, "cat", missing="keep", optional=True) for c in log_cat],
            *[Column(c, missing="keep") for c in log_num]]
    parts = []
    for log in logs:
        left = None if rows is None else rows - sum(len(p) for p in parts)
        if left is not None and left <= 0:
            break
        f = read_csv(log, cols, rows=left, strict=strict, report=report, main=True)
        f = drop_rows(f, f["play_time_ms"].to_numpy() < 0, "negative watch time (play_time_ms)",
                      file=log, column="play_time_ms", report=report, strict=strict,
                      describe=lambda r: f"negative watch time {r['play_time_ms']:g} ms")
        f = drop_rows(f, f["duration_ms"].to_numpy() < 0, "negative duration_ms", file=log,
                      column="duration_ms", report=report, strict=strict,
                      describe=lambda r: f"negative duration {r['duration_ms']:g} ms")
        parts.append(f)
    f = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    dur = f["duration_ms"].to_numpy()
    report.note("with duration_ms 0 (missing; duration NaN)", int(np.sum(dur == 0)))
    frame = pd.DataFrame({
        USER: f["user_id"].to_numpy(), ITEM: f["video_id"].to_numpy(),
        LABEL: f["play_time_ms"].to_numpy() / 1000.0,
        DURATION: np.where(dur > 0, dur / 1000.0, np.nan)}, copy=False)
    if "time_ms" in f.columns:
        frame[TIMESTAMP] = f["time_ms"].to_numpy() / 1000.0
    categorical: List[str] = [c for c in log_cat if c in f.columns]
    numeric: List[str] = list(log_num)
    for c in categorical + numeric:
        frame[c] = f[c].array
    del f
    side = LoadReport()
    if users is not None:
        c, n = join_user_features(frame, users, strict=strict, report=report, side=side)
        categorical += c
        numeric += n
    if videos is not None:
        table = read_csv(videos, [Column("video_id", "int"),
                                  *[Column(c, "cat", missing="keep")
                                    for c in VIDEO_CATEGORICAL if c != "tag"],
                                  Column("tag", "str", missing="keep"),
                                  *[Column(c, missing="keep") for c in VIDEO_NUMERIC]],
                         strict=strict, report=side)
        first = table["tag"].str.extract(r"^\s*(-?\d+)", expand=False)
        table["tag"] = pd.to_numeric(first).fillna(-1).astype(np.int64).to_numpy()
        c, n = join_features(frame, table, key="video_id", frame_key=ITEM,
                             categorical=VIDEO_CATEGORICAL, numeric=VIDEO_NUMERIC,
                             report=report, what=f"video features ({videos.name})")
        categorical += c
        numeric += n
    note_side_drops(report, side)
    return Dataset(NAME, frame, categorical, numeric, report)
