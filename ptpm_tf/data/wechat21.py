"""WeChat Big Data Challenge 2021 (WeChat Channels) as canonical rows.

Files in the folder (first match wins):

- ``user_action.csv`` (or ``user_action*.csv``): ``userid`` -> user_id, ``feedid`` ->
  item_id, ``play`` (ms) -> ``watch_time`` (s), ``date_`` (day number 1..14) ->
  ``timestamp`` = date_ * 86400 s (a day, not a moment: rows of one day keep file
  order in a time split), ``device`` (categorical). Outcome columns (stay, like, ...) are
  not used as features.
- ``feed_info.csv`` (or ``feed_info*.csv``), required because it has the duration:
  ``videoplayseconds`` -> ``duration`` (s), and the categoricals ``authorid``,
  ``bgm_song_id``, ``bgm_singer_id`` (missing -> -1) and ``tag`` = the first entry of
  ``manual_tag_list`` (";"-separated, -1 if empty), joined on feedid. A feed absent from
  feed_info gets a NaN duration (counted as a note).

``rows`` keeps the first rows of user_action.csv; ``seed`` is unused (no sampling).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from ptpm_tf.data import cache
from ptpm_tf.data.dataset import (DURATION, ITEM, LABEL, TIMESTAMP, USER, Dataset,
                                  LoadReport)
from ptpm_tf.data.files import dataset_location, find_file
from ptpm_tf.data.join import join_features
from ptpm_tf.data.kuairec import note_side_drops
from ptpm_tf.data.reader import Column, drop_rows, read_csv

VERSION = 1
NAME = "wechat21"
ACTIONS = ("user_action.csv", "user_action*.csv")
FEEDS = ("feed_info.csv", "feed_info*.csv")
FEED_CATEGORICAL = ["authorid", "bgm_song_id", "bgm_singer_id", "tag"]
DAY = 86400.0


def load(*, data_dir=None, spec=None, rows: Optional[int] = None, seed: int = 0,
         strict: bool = False) -> Dataset:
    """Load WeChat21 from ``data_dir`` (folder or user_action file); cached (see cache)."""
    folder, main = dataset_location(NAME, data_dir, spec)
    main = main or find_file(folder, ACTIONS, "WeChat21 user_action")
    feeds = find_file(folder, FEEDS, "WeChat21 feed_info (it holds the durations)")
    return cache.cached_load(NAME, VERSION, [main, feeds], {"rows": rows, "strict": strict},
                             lambda: build(main, feeds, rows=rows, strict=strict))


def build(actions: Path, feeds: Path, *, rows: Optional[int] = None,
          strict: bool = False) -> Dataset:
    """Parse the two files into a Dataset (no cache)."""
    report = LoadReport()
    f = read_csv(actions, [Column("userid", "int"), Column("feedid", "int"),
                           Column("play", role="watch time"),
                           Column("date_", "int", role="timestamp"),
                           Column("device", "cat", missing="keep")],
                 rows=rows, strict=strict, report=report, main=True)
    f = drop_rows(f, f["play"].to_numpy() < 0, "negative watch time (play)", file=actions,
                  column="play", report=report, strict=strict,
                  describe=lambda r: f"negative watch time {r['play']:g} ms")
    frame = pd.DataFrame({
        USER: f["userid"].to_numpy(), ITEM: f["feedid"].to_numpy(),
        LABEL: f["play"].to_numpy() / 1000.0,
        TIMESTAMP: f["date_"].to_numpy() * DAY, "device": f["device"].array}, copy=False)
    del f
    side = LoadReport()
    table = read_csv(feeds, [Column("feedid", "int"),
                             Column("videoplayseconds", missing="keep"),
                             *[Column(c, "cat", missing="keep")
                               for c in ("authorid", "bgm_song_id", "bgm_singer_id")],
                             Column("manual_tag_list", "str", missing="keep")],
                     strict=strict, report=side)
    first = table["manual_tag_list"].str.extract(r"^\s*(-?\d+)", expand=False)
    table["tag"] = pd.to_numeric(first).fillna(-1).astype(np.int64).to_numpy()
    dur = table["videoplayseconds"].to_numpy()
    table["videoplayseconds"] = np.where(dur >= 0, dur, np.nan)
    cat, num = join_features(frame, table, key="feedid", frame_key=ITEM,
                             categorical=FEED_CATEGORICAL, numeric=["videoplayseconds"],
                             report=report, what=f"feed info ({feeds.name})")
    frame.rename(columns={"videoplayseconds": DURATION}, inplace=True)
    report.note("with duration missing (NaN)", int(frame[DURATION].isna().sum()))
    note_side_drops(report, side)
    return Dataset(NAME, frame, ["device", *cat], [], report)
