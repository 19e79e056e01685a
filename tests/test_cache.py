"""Columnar cache: warm loads do not parse CSV and give an identical Dataset; invalidation."""
import os
import shutil
import stat
from pathlib import Path

import pandas as pd
import pyarrow.csv as pv
import pytest

from ptpm_tf.data import cache, kuairec
from ptpm_tf.data.registry import load_dataset

DATA = Path(__file__).parent / "data"


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("PTPM_TF_CACHE_DIR", str(d))
    monkeypatch.delenv("PTPM_TF_NO_CACHE", raising=False)
    return d


@pytest.fixture
def parses(monkeypatch):
    """Counts CSV parses (every loader reads CSV through pyarrow.csv.open_csv)."""
    calls = []
    real = pv.open_csv

    def counting(*a, **kw):
        calls.append(a[0])
        return real(*a, **kw)

    monkeypatch.setattr(pv, "open_csv", counting)
    return calls


def same(a, b):
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert (a.name, a.categorical, a.numeric, a.report) == \
        (b.name, b.categorical, b.numeric, b.report)


@pytest.mark.parametrize("name, folder", [("kuairec", "kuairec-sample"),
                                          ("kuairand", "kuairand-sample"),
                                          ("cikm16", "cikm16-diginetica-sample")])
def test_warm_cache_is_identical_and_does_not_parse(cache_dir, parses, monkeypatch, name,
                                                    folder):
    cold = load_dataset(name, data_dir=str(DATA / folder))
    assert parses and list(cache_dir.glob(f"{name}-*.parquet"))
    monkeypatch.setattr(pv, "open_csv", lambda *a, **k: pytest.fail("CSV parsed again"))
    warm = load_dataset(name, data_dir=str(DATA / folder))
    same(cold, warm)


def copy_sample(tmp_path):
    folder = tmp_path / "kuairec"
    shutil.copytree(DATA / "kuairec-sample", folder)
    return folder


def test_invalidated_by_mtime_size_and_version(tmp_path, cache_dir, parses, monkeypatch):
    folder = copy_sample(tmp_path)
    main = folder / "big_matrix_1000.csv"
    load_dataset("kuairec", data_dir=str(folder))
    n = len(parses)
    load_dataset("kuairec", data_dir=str(folder))
    assert len(parses) == n  # warm
    st = main.stat()
    os.utime(main, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))  # touched
    load_dataset("kuairec", data_dir=str(folder))
    assert len(parses) > n
    n = len(parses)
    with open(main, "a") as f:  # grown
        f.write("7,1,1000,2000,2020-07-05 00:00:00.000,20200705,1593878903.0,0.5\n")
    ds = load_dataset("kuairec", data_dir=str(folder))
    assert len(parses) > n and len(ds) == 1001
    n = len(parses)
    (folder / "user_features_raw_sample.csv").touch()  # a side file counts too
    load_dataset("kuairec", data_dir=str(folder))
    assert len(parses) > n
    n = len(parses)
    monkeypatch.setattr(kuairec, "VERSION", kuairec.VERSION + 1)  # loader changed
    load_dataset("kuairec", data_dir=str(folder))
    assert len(parses) > n
    assert len(list(cache_dir.glob("kuairec-*.json"))) == 1  # rebuilt in place


def test_params_get_their_own_entry(cache_dir):
    a = load_dataset("kuairec", data_dir=str(DATA / "kuairec-sample"), rows=10)
    b = load_dataset("kuairec", data_dir=str(DATA / "kuairec-sample"))
    assert (len(a), len(b)) == (10, 1000)
    assert len(list(cache_dir.glob("kuairec-*.parquet"))) == 2


def test_beside_the_data_or_user_cache_when_read_only(tmp_path, monkeypatch):
    monkeypatch.delenv("PTPM_TF_CACHE_DIR", raising=False)
    monkeypatch.delenv("PTPM_TF_NO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = copy_sample(tmp_path)
    load_dataset("kuairec", data_dir=str(folder))
    assert list((folder / ".ptpmcache").glob("kuairec-*.parquet"))
    ro = tmp_path / "ro"
    shutil.copytree(DATA / "kuairec-sample", ro)
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        cold = load_dataset("kuairec", data_dir=str(ro))
        assert not (ro / ".ptpmcache").exists()  # no write bits: not written, even as root
        assert list((tmp_path / "xdg" / "ptpm-tf").glob("kuairec-*.parquet"))
        same(cold, load_dataset("kuairec", data_dir=str(ro)))
    finally:
        ro.chmod(0o755)


def test_corrupt_entry_is_rebuilt(cache_dir, parses):
    cold = load_dataset("kuairec", data_dir=str(DATA / "kuairec-sample"))
    for p in cache_dir.glob("kuairec-*.parquet"):
        p.write_bytes(b"not parquet")
    n = len(parses)
    same(cold, load_dataset("kuairec", data_dir=str(DATA / "kuairec-sample")))
    assert len(parses) > n


def test_no_cache_switch(cache_dir, monkeypatch):
    monkeypatch.setenv("PTPM_TF_NO_CACHE", "1")
    load_dataset("kuairec", data_dir=str(DATA / "kuairec-sample"))
    assert not cache_dir.exists()


def test_entry_name_depends_on_paths_and_params(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert cache.entry_name("x", [a], {"rows": 1}) != cache.entry_name("x", [b], {"rows": 1})
    assert cache.entry_name("x", [a], {"rows": 1}) != cache.entry_name("x", [a], {"rows": 2})
    assert cache.entry_name("x", [a], {"rows": 1}) == cache.entry_name("x", [a], {"rows": 1})
