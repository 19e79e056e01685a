"""Loaders on the real samples in tests/data (and a WeChat21 fixture in the public layout)."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ptpm_tf.data.cikm16 import LAST_VIEW
from ptpm_tf.data.dataset import DataError
from ptpm_tf.data.registry import load_dataset

DATA = Path(__file__).parent / "data"
KUAIREC = DATA / "kuairec-sample"
KUAIRAND = DATA / "kuairand-sample"
CIKM = DATA / "cikm16-diginetica-sample"


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("PTPM_TF_CACHE_DIR", str(tmp_path / "cache"))


def _raw(path, **kw):
    return pd.read_csv(path, encoding="utf-8-sig", **kw)


# ------------------------------------------------------------------ KuaiRec

def test_kuairec_sample_values():
    ds = load_dataset("kuairec", data_dir=str(KUAIREC))
    raw = _raw(KUAIREC / "big_matrix_1000.csv")
    f = ds.frame
    assert len(ds) == 1000 and ds.report.rows_read == 1000 and not ds.report.dropped
    np.testing.assert_array_equal(f["user_id"], raw["user_id"])
    np.testing.assert_array_equal(f["item_id"], raw["video_id"])
    np.testing.assert_allclose(f["watch_time"], raw["play_duration"] / 1000.0)
    np.testing.assert_allclose(f["duration"], raw["video_duration"] / 1000.0)
    np.testing.assert_allclose(f["timestamp"], raw["timestamp"])
    assert f["watch_time"].iloc[0] == pytest.approx(13.838)
    assert (f["watch_time"] == 0).sum() == 10  # 1.0% zeros, as SOURCE.md says
    assert f["user_id"].dtype == np.int64 and f["item_id"].dtype == np.int64


def test_kuairec_sample_joins():
    ds = load_dataset("kuairec", data_dir=str(KUAIREC))
    f = ds.frame
    # user features of user 0 (the only user): high_active, follow_user_num 5, (0,10]
    assert set(f["user_active_degree"]) == {"high_active"}
    assert set(f["follow_user_num"]) == {5.0}
    assert set(f["follow_user_num_range"]) == {"(0,10]"}
    assert "register_days" in ds.numeric and "onehot_feat17" in ds.categorical
    # first category of the feat list; videos not in the file -> -1
    cats = _raw(KUAIREC / "item_categories_sample.csv")
    first = cats["feat"].str.extract(r"(\d+)", expand=False).astype(int)
    expected = f["item_id"].map(dict(zip(cats["video_id"], first))).fillna(-1).astype(int)
    np.testing.assert_array_equal(f["category"], expected)
    assert (f["category"] >= 0).sum() == 176
    assert ds.report.notes["without a category (item_categories_sample.csv)"] == 824
    # item_daily covers none of the sampled videos: all -1 / "" and counted
    assert set(f["author_id"]) == {-1} and set(f["video_type"]) == {""}
    assert ds.report.notes["without item daily features (item_daily_features_sample.csv)"] \
        == 1000
    # the item_daily sample has 272 lines broken by a mis-encoded text field (57 fields)
    note = next(k for k in ds.report.notes if "malformed" in k)
    assert ds.report.notes[note] == 272
    assert "item_daily_features_sample.csv, row 61" in note


def test_kuairec_item_daily_static_columns(tmp_path):
    """item_daily: one row per video, the earliest day's static columns."""
    for name in ("big_matrix_1000.csv",):
        (tmp_path / name).write_bytes((KUAIREC / name).read_bytes())
    (tmp_path / "item_daily_features.csv").write_text(
        "video_id,date,author_id,video_type,upload_type,video_tag_id\n"
        "3649,20200706,7,AD,Web,5\n3649,20200705,8,NORMAL,ShortImport,6\n")
    ds = load_dataset("kuairec", data_dir=str(tmp_path))
    row = ds.frame[ds.frame["item_id"] == 3649].iloc[0]
    assert (row["author_id"], row["video_type"], row["upload_type"], row["video_tag_id"]) \
        == (8, "NORMAL", "ShortImport", 6)


def test_kuairec_rows_cap_and_file_as_data_dir():
    ds = load_dataset("kuairec", data_dir=str(KUAIREC / "big_matrix_1000.csv"), rows=100)
    assert len(ds) == 100 and ds.report.rows_read == 100
    assert "user_active_degree" in ds.frame.columns  # side files found beside the file


# ------------------------------------------------------------------ KuaiRand

def test_kuairand_sample():
    ds = load_dataset("kuairand", data_dir=str(KUAIRAND))
    raw = pd.read_csv(KUAIRAND / "kuairand_sample.csv")
    f = ds.frame
    assert len(ds) == 200 and not ds.report.dropped
    np.testing.assert_allclose(f["watch_time"], raw["play_time_ms"] / 1000.0)
    zero = (raw["duration_ms"] == 0).to_numpy()
    assert zero.sum() == 18
    assert f["duration"][zero].isna().all()
    np.testing.assert_allclose(f["duration"][~zero], raw["duration_ms"][~zero] / 1000.0)
    assert ds.report.notes["with duration_ms 0 (missing; duration NaN)"] == 18
    assert "timestamp" not in f.columns  # the joined sample has no time_ms
    # user columns come from the log itself
    np.testing.assert_array_equal(f["register_days"], raw["register_days"].astype(float))
    assert "tab" in ds.categorical and "register_days" in ds.numeric
    # video features joined from video_features_basic_pure.csv
    vids = pd.read_csv(KUAIRAND / "video_features_basic_pure.csv").set_index("video_id")
    np.testing.assert_array_equal(f["author_id"], vids.loc[raw["video_id"], "author_id"])
    assert set(f["upload_type"]) <= set(vids["upload_type"].dropna())
    tag = vids.loc[raw["video_id"], "tag"].astype(str).str.split(",").str[0].astype(int)
    np.testing.assert_array_equal(f["tag"], tag)
    assert "without video features (video_features_basic_pure.csv)" not in ds.report.notes


def test_kuairand_log_standard_with_time(tmp_path):
    (tmp_path / "log_standard_4_08_to_4_21_1k.csv").write_text(
        "user_id,video_id,date,hourmin,time_ms,is_click,play_time_ms,duration_ms,tab\n"
        "1,10,20220408,1000,1649390000000,1,1500,3000,1\n"
        "2,11,20220408,1000,1649390001000,0,0,0,2\n")
    (tmp_path / "log_standard_4_22_to_5_08_1k.csv").write_text(
        "user_id,video_id,date,hourmin,time_ms,is_click,play_time_ms,duration_ms,tab\n"
        "3,12,20220422,1000,1650600000000,1,2500,5000,1\n")
    (tmp_path / "log_random_4_22_to_5_08_1k.csv").write_text("not,read\n1,2\n")
    ds = load_dataset("kuairand", data_dir=str(tmp_path))
    assert ds.frame["user_id"].tolist() == [1, 2, 3]
    assert ds.frame["timestamp"].tolist() == [1649390000.0, 1649390001.0, 1650600000.0]
    assert ds.frame["watch_time"].tolist() == [1.5, 0.0, 2.5]
    assert np.isnan(ds.frame["duration"].iloc[1])
    assert ds.categorical == ["user_id", "item_id", "tab"]


# ------------------------------------------------------------------ WeChat21

ACTIONS = """userid,feedid,date_,device,read_comment,comment,like,play,stay,click_avatar,forward,follow,favorite
8,71474,1,1,0,0,1,500,5366,0,0,0,0
8,73916,1,1,0,0,0,250,1533,0,0,0,0
8,50282,2,1,0,0,0,750,1302,0,0,0,0
14,11391,2,2,0,0,1,3000,5533,0,0,0,0
14,99999,3,2,0,0,0,1200,1400,0,0,0,0
"""
FEEDS = """feedid,authorid,videoplayseconds,description,ocr,asr,bgm_song_id,bgm_singer_id,manual_keyword_list,machine_keyword_list,manual_tag_list,machine_tag_list,description_char,ocr_char,asr_char
71474,1528,11,104741 1 12,,,,,17164;10442,,81;210;207,142 0.85;81 0.11,26 27,,
73916,1442,16,,,,4486.0,1.0,,,269,269 0.9,,,
50282,8648,31,,,,24785.0,2281.0,,,23;81,,,,
11391,1380,60,,,,,,,,,,,,
"""


def test_wechat21_fixture(tmp_path):
    (tmp_path / "user_action.csv").write_text(ACTIONS)
    (tmp_path / "feed_info.csv").write_text(FEEDS)
    ds = load_dataset("wechat21", data_dir=str(tmp_path))
    f = ds.frame
    assert len(ds) == 5
    assert f["user_id"].tolist() == [8, 8, 8, 14, 14]
    assert f["watch_time"].tolist() == [0.5, 0.25, 0.75, 3.0, 1.2]
    assert f["duration"].tolist()[:4] == [11.0, 16.0, 31.0, 60.0]
    assert np.isnan(f["duration"].iloc[4])  # feed 99999 is not in feed_info
    assert f["timestamp"].tolist() == [86400.0, 86400.0, 172800.0, 172800.0, 259200.0]
    assert f["authorid"].tolist() == [1528, 1442, 8648, 1380, -1]
    assert f["bgm_song_id"].tolist() == [-1, 4486, 24785, -1, -1]
    assert f["tag"].tolist() == [81, 269, 23, -1, -1]
    assert f["device"].tolist() == [1, 1, 1, 2, 2]
    assert ds.categorical == ["user_id", "item_id", "device", "authorid", "bgm_song_id", "bgm_singer_id", "tag"]
    assert ds.report.notes["without feed info (feed_info.csv)"] == 1


def test_wechat21_needs_feed_info(tmp_path):
    (tmp_path / "user_action.csv").write_text(ACTIONS)
    with pytest.raises(DataError, match=r"no WeChat21 feed_info .*feed_info\.csv"):
        load_dataset("wechat21", data_dir=str(tmp_path))


# ------------------------------------------------------------------ CIKM16

def test_cikm16_sample_dwell():
    ds = load_dataset("cikm16", data_dir=str(CIKM))
    raw = pd.read_csv(CIKM / "sample_train-item-views.csv", sep=";")
    n_sessions = raw["session_id"].nunique()
    assert ds.report.rows_read == 3000
    assert ds.report.dropped == {LAST_VIEW: n_sessions} and n_sessions == 686
    assert len(ds) == 3000 - 686
    assert "sample_train-item-views.csv, row 6, column timeframe" in ds.report.examples[LAST_VIEW]
    # independent dwell computation: next timeframe within the session, sorted by timeframe
    r = raw.assign(line=np.arange(len(raw)) + 2).sort_values(["session_id", "timeframe", "line"])
    r["dwell"] = r.groupby("session_id")["timeframe"].shift(-1) - r["timeframe"]
    r = r.dropna(subset=["dwell"]).sort_values("line")
    np.testing.assert_allclose(ds.frame["watch_time"], r["dwell"] / 1000.0)
    np.testing.assert_array_equal(ds.frame["item_id"], r["item_id"])
    # the first row: session 1's view at 526309 ms, dwell until the session's next view
    s1 = raw[raw["session_id"] == 1].sort_values("timeframe")["timeframe"].to_numpy()
    assert ds.frame["watch_time"].iloc[0] == pytest.approx(
        (s1[np.searchsorted(s1, 526309) + 1] - 526309) / 1000.0)
    # anonymous users -> -session id; known users keep their id
    anon = r["user_id"].isna().to_numpy()
    np.testing.assert_array_equal(ds.frame["user_id"][anon], -r["session_id"][anon])
    np.testing.assert_array_equal(ds.frame["user_id"][~anon], r["user_id"][~anon].astype(int))
    assert "duration" not in ds.frame.columns
    ts = ((pd.to_datetime(r["eventdate"]) - pd.Timestamp(0)) / pd.Timedelta(seconds=1)).to_numpy()
    np.testing.assert_allclose(ds.frame["timestamp"], ts + r["timeframe"].to_numpy() / 1000.0)


def test_cikm16_strict_does_not_reject_last_views():
    ds = load_dataset("cikm16", data_dir=str(CIKM), strict=True, rows=50)
    assert len(ds) > 0 and LAST_VIEW in ds.report.dropped


def test_cikm16_official_header_and_categories(tmp_path):
    (tmp_path / "train-item-views.csv").write_text(
        "sessionId;userId;itemId;timeframe;eventdate\n"
        "1;NA;81766;526309;2016-05-09\n1;NA;31331;1031018;2016-05-09\n"
        "2;7;5;0;2016-05-10\n2;7;6;1500;2016-05-10\n2;7;7;1500;2016-05-10\n")
    (tmp_path / "product-categories.csv").write_text("itemId;categoryId\n81766;3\n5;9\n")
    ds = load_dataset("cikm16", data_dir=str(tmp_path))
    assert ds.frame["user_id"].tolist() == [-1, 7, 7]
    assert ds.frame["watch_time"].tolist() == [504.709, 1.5, 0.0]
    assert ds.frame["category"].tolist() == [3, 9, -1]
    assert ds.report.dropped[LAST_VIEW] == 2


# ------------------------------------------------------------------ registry

def test_unknown_dataset_and_spec_misuse():
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load_dataset("nope")
    with pytest.raises(DataError, match="--spec is only used with --dataset csv"):
        load_dataset("kuairec", data_dir=str(KUAIREC), spec="x.yaml")
    with pytest.raises(DataError, match="needs --spec"):
        load_dataset("csv")
