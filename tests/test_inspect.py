"""data inspect (JSON + PNG + printed summary) and the scale benchmark at a tiny N."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ptpm_tf.data import inspect as data_inspect
from ptpm_tf.benchmarks import scale as scale_bench
from ptpm_tf.data.dataset import Dataset
from ptpm_tf.data.registry import load_dataset

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("PTPM_TF_CACHE_DIR", str(tmp_path / "cache"))


def test_inspect_known_values(tmp_path):
    frame = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": [5, 6, 5, 7, 7],
                          "watch_time": [0.0, 10.0, 5.0, 20.0, 3.0],
                          "duration": [10.0, 10.0, np.nan, 15.0, 6.0],
                          "category": [1, 2, 1, 2, 2]})
    ds = Dataset("toy", frame, ["category"], [])
    info = data_inspect.inspect_dataset(ds, tmp_path / "out")
    assert (info["rows"], info["users"], info["items"]) == (5, 3, 3)
    assert info["watch_time"]["p50"] == 5.0 and info["watch_time"]["max"] == 20.0
    assert set(info["watch_time"]) >= {f"p{p}" for p in (1, 5, 10, 25, 50, 75, 90, 95, 99)}
    assert info["share_zero_watch_time"] == pytest.approx(0.2)
    # full plays among rows with a duration: 10>=10, 20>=15 of 4
    assert info["rows_with_duration"] == 4 and info["share_full_play"] == pytest.approx(0.5)
    assert info["duration"]["p50"] == 10.0
    written = json.loads((tmp_path / "out" / "inspect.json").read_text())
    assert written == json.loads(json.dumps(info))
    png = (tmp_path / "out" / "watch_time_distributions.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000


def test_inspect_without_user_or_duration(tmp_path):
    ds = Dataset("bare", pd.DataFrame({"watch_time": [1.0, 2.0, 0.0]}), [], [])
    info = data_inspect.inspect_dataset(ds, tmp_path)
    assert info["users"] is None and info["duration"] is None
    assert info["share_full_play"] is None
    assert (tmp_path / "watch_time_distributions.png").exists()
    assert "full plays: n/a" in data_inspect.summary_text(info, tmp_path)


def test_run_prints_summary(tmp_path, capsys):
    rc = data_inspect.run("cikm16", data_dir=str(DATA / "cikm16-diginetica-sample"),
                          out=str(tmp_path / "o"))
    out = capsys.readouterr().out
    assert rc == 0
    assert "dataset cikm16: 2,314 rows" in out
    assert "dropped 686: last view of a session" in out
    assert "full plays: n/a (no duration)" in out
    info = json.loads((tmp_path / "o" / "inspect.json").read_text())
    assert info["load_report"]["rows_read"] == 3000


def test_run_kuairec_sample_full_plays(tmp_path, capsys):
    assert data_inspect.main(["--dataset", "kuairec", "--data-dir",
                              str(DATA / "kuairec-sample"), "--out", str(tmp_path)]) == 0
    info = json.loads((tmp_path / "inspect.json").read_text())
    raw = pd.read_csv(DATA / "kuairec-sample" / "big_matrix_1000.csv", encoding="utf-8-sig")
    assert info["share_full_play"] == pytest.approx(
        float(np.mean(raw["play_duration"] >= raw["video_duration"])))
    assert info["share_zero_watch_time"] == pytest.approx(0.01)
    assert "full plays (watch_time >= duration): 53.3% of 1,000 rows" in capsys.readouterr().out


def test_run_reports_errors_on_one_line(tmp_path, capsys):
    """Bad input exits 2 (the README's status for bad input), on the module's own entry
    point as on ``ptpm-tf data inspect``."""
    assert data_inspect.main(["--dataset", "kuairec",
                              "--data-dir", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m ptpm_tf.data.inspect: error: ") and "\n" not in err
    assert "missing" in err


def test_scale_file_tiny(tmp_path):
    path = scale_bench.make_kuairec_scale(tmp_path, rows=5000, seed=1)
    assert path.name == "big_matrix.csv" and path.read_bytes()[:3] == b"\xef\xbb\xbf"
    ds = load_dataset("kuairec", data_dir=str(tmp_path))
    raw = pd.read_csv(path, encoding="utf-8-sig")
    assert len(ds) == 5000 and not ds.report.dropped
    np.testing.assert_allclose(ds.frame["watch_time"], raw["play_duration"] / 1000)
    assert (ds.frame["category"] >= 0).all() and (ds.frame["author_id"] >= 0).all()
    assert "user_active_degree" in ds.categorical


@pytest.mark.slow
def test_scale_bench_tiny(tmp_path):
    """The benchmark's own code path (fresh cold and warm processes) at 3,000 rows."""
    result = scale_bench.run_bench(tmp_path, rows=3000)
    assert result["rows"] == 3000
    for phase in ("cold", "warm"):
        assert result[phase]["rows"] == 3000 and result[phase]["peak_rss_mb"] > 0
    assert list((tmp_path / "cache").glob("kuairec-*.parquet"))
