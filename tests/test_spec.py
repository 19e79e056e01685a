"""Dataset spec: the simulator's shape, CSV and Parquet, units, optional roles, bad specs."""
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ptpm_tf.data.dataset import DataError
from ptpm_tf.data.registry import load_dataset
from ptpm_tf.data.spec import DatasetSpec, read_spec, spec_from_dict, write_spec

SIM_SPEC = {"name": "simulator", "path": "simulator.csv", "sep": ",",
            "label": {"column": "watch_time", "unit": "s"},
            "user": "user_id", "item": "item_id",
            "duration": {"column": "duration", "unit": "s"},
            "timestamp": {"column": "timestamp", "unit": "s"},
            "categorical": ["category"], "numeric": ["user_tenure_days"],
            "oracle": {"median": "oracle_median", "mean": "oracle_mean"}}
SIM_CSV = """user_id,item_id,watch_time,duration,timestamp,category,user_tenure_days,oracle_median,oracle_mean
1,10,5.5,10,100,3,1.5,5,6
2,11,12.0,,101,4,,11,12
3,12,0,7.5,102,,30,0.5,1
"""


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("PTPM_TF_CACHE_DIR", str(tmp_path / "cache"))


def write(tmp_path, spec, body=SIM_CSV, name="spec.json"):
    (tmp_path / "simulator.csv").write_text(body)
    path = tmp_path / name
    path.write_text(json.dumps(spec))
    return path


def test_simulator_spec_json(tmp_path):
    ds = load_dataset("csv", spec=str(write(tmp_path, SIM_SPEC)))
    f = ds.frame
    assert ds.name == "simulator" and len(ds) == 3 and not ds.report.dropped
    assert list(f.columns) == ["user_id", "item_id", "watch_time", "duration", "timestamp",
                               "oracle_median", "oracle_mean", "category", "user_tenure_days"]
    assert f["watch_time"].tolist() == [5.5, 12.0, 0.0]
    assert np.isnan(f["duration"].iloc[1]) and f["duration"].iloc[2] == 7.5
    assert f["category"].tolist() == [3, 4, -1] and f["category"].dtype == np.int64
    assert np.isnan(f["user_tenure_days"].iloc[1])
    assert ds.has_oracle and f["oracle_mean"].tolist() == [6.0, 12.0, 1.0]
    assert ds.categorical == ["user_id", "item_id", "category"]
    assert ds.numeric == ["duration", "user_tenure_days"]


def test_yaml_spec_and_roundtrip(tmp_path):
    spec = spec_from_dict(SIM_SPEC)
    path = write_spec(spec, tmp_path / "spec.yaml")
    (tmp_path / "simulator.csv").write_text(SIM_CSV)
    again = read_spec(path)
    assert again.to_dict() == spec.to_dict() == {**SIM_SPEC}
    assert len(load_dataset("csv", spec=str(path))) == 3


def test_units_ms_and_datetime(tmp_path):
    body = "u,i,play_ms,len_ms,when\nA,x,1500,3000,2020-07-05 00:00:01\nB,y,250,,2020-07-05T00:00:02+02:00\n"
    spec = {"path": "simulator.csv", "label": {"column": "play_ms", "unit": "ms"},
            "user": "u", "item": "i", "duration": {"column": "len_ms", "unit": "ms"},
            "timestamp": {"column": "when", "unit": "datetime"}}
    ds = load_dataset("csv", spec=str(write(tmp_path, spec, body)))
    f = ds.frame
    assert ds.name == "spec"  # default: the spec file's stem
    assert f["watch_time"].tolist() == [1.5, 0.25]
    assert f["duration"].iloc[0] == 3.0 and np.isnan(f["duration"].iloc[1])
    assert f["timestamp"].tolist() == [1593907201.0, 1593900002.0]
    assert f["user_id"].tolist() == ["A", "B"] and str(f["user_id"].dtype) == "str"


def test_timestamp_ms(tmp_path):
    body = "w,t\n1,1649390000000\n2,1649390001500\n"
    spec = {"path": "simulator.csv", "label": "w", "timestamp": {"column": "t", "unit": "ms"}}
    f = load_dataset("csv", spec=str(write(tmp_path, spec, body))).frame
    assert f["timestamp"].tolist() == [1649390000.0, 1649390001.5]


def test_bad_datetime_is_dropped_with_place(tmp_path):
    body = "w,t\n1,2020-01-01\n2,not a date\n"
    spec = {"path": "simulator.csv", "label": "w", "timestamp": {"column": "t",
                                                                 "unit": "datetime"}}
    ds = load_dataset("csv", spec=str(write(tmp_path, spec, body)))
    assert len(ds) == 1 and ds.report.dropped == {"bad timestamp (t)": 1}
    ex = ds.report.examples["bad timestamp (t)"]
    assert "simulator.csv, row 3, column t" in ex and "'not a date'" in ex


def test_non_numeric_feature_drops_the_row_with_place(tmp_path):
    body = SIM_CSV.replace("1,10,5.5,10,100,3,1.5,", "1,10,5.5,10,100,3,long,")
    ds = load_dataset("csv", spec=str(write(tmp_path, SIM_SPEC, body)))
    assert len(ds) == 2 and ds.report.dropped == {"non-numeric user_tenure_days": 1}
    ex = ds.report.examples["non-numeric user_tenure_days"]
    assert "simulator.csv, row 2, column user_tenure_days" in ex and "'long'" in ex
    with pytest.raises(DataError) as e:
        load_dataset("csv", spec=str(tmp_path / "spec.json"), strict=True)
    assert "simulator.csv, row 2, column user_tenure_days" in str(e.value)


def test_no_user_means_no_user_column(tmp_path):
    """Documented fallback: without a user column there is no user_id (no fake user)."""
    body = "w,item\n1,5\n2,6\n"
    ds = load_dataset("csv", spec=str(write(tmp_path, {"path": "simulator.csv", "label": "w",
                                                       "item": "item"}, body)))
    assert "user_id" not in ds.frame.columns and ds.frame["item_id"].tolist() == [5, 6]


def test_parquet_and_data_dir_override(tmp_path):
    frame = pd.DataFrame({"user_id": [1, 2, 3], "item_id": [7, 8, 9],
                          "watch_time": [1.0, -2.0, 3.0], "category": ["a", "b", None]})
    other = tmp_path / "elsewhere"
    other.mkdir()
    pq.write_table(pa.Table.from_pandas(frame), other / "log.parquet")
    spec = {"path": "log.parquet", "label": "watch_time", "user": "user_id",
            "item": "item_id", "categorical": ["category"]}
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(json.dumps(spec))
    with pytest.raises(DataError, match="data file named by the spec not found"):
        load_dataset("csv", spec=str(spec_path))
    ds = load_dataset("csv", spec=str(spec_path), data_dir=str(other))
    assert ds.frame["watch_time"].tolist() == [1.0, 3.0]
    assert ds.frame["category"].tolist() == ["a", ""]
    ex = ds.report.examples["negative watch time"]
    assert "log.parquet, row 2, column watch_time" in ex
    assert len(load_dataset("csv", spec=str(spec_path), data_dir=str(other), rows=1)) == 1


def test_semicolon_sep_and_format_key(tmp_path):
    body = "w;u\n1;1\n2;2\n"
    (tmp_path / "data.txt").write_text(body)
    spec = {"path": "data.txt", "format": "csv", "sep": ";", "label": "w", "user": "u"}
    (tmp_path / "s.json").write_text(json.dumps(spec))
    assert load_dataset("csv", spec=str(tmp_path / "s.json")).frame["user_id"].tolist() == [1, 2]


@pytest.mark.parametrize("change, message", [
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"label": {"column": "watch_time", "units": "s"}}, "unknown key 'label.units'"),
    ({"oracle": {"median": "a", "mean": "b", "p90": "c"}}, "unknown key 'oracle.p90'"),
    ({"label": {"column": "watch_time", "unit": "min"}}, "'label.unit' must be one of s, ms"),
    ({"timestamp": {"column": "t", "unit": "days"}}, "'timestamp.unit' must be one of"),
    ({"label": None}, "missing key 'label'"),
    ({"path": None}, "missing key 'path'"),
    ({"categorical": "category"}, "'categorical' must be a list"),
    ({"numeric": ["watch_time"]}, "has a canonical name"),
    ({"numeric": ["oracle_mean"], "oracle": None}, "has a canonical name"),
    ({"categorical": ["category", "user_id"], "user": "uid"}, "has a canonical name"),
    ({"item": "user_id"}, "column 'user_id' has two roles"),
    ({"format": "xlsx"}, "'format' must be csv or parquet"),
    ({"sep": ";;"}, "'sep' must be one character"),
])
def test_bad_spec_names_the_key(tmp_path, change, message):
    spec = {**SIM_SPEC, **change}
    spec = {k: v for k, v in spec.items() if v is not None or k in ("label", "path")}
    path = write(tmp_path, spec)
    with pytest.raises(DataError) as e:
        load_dataset("csv", spec=str(path))
    assert message in str(e.value) and "spec.json" in str(e.value)


def test_spec_missing_column_in_file(tmp_path):
    path = write(tmp_path, {**SIM_SPEC, "numeric": ["tenure"]})
    with pytest.raises(DataError) as e:
        load_dataset("csv", spec=str(path))
    assert "simulator.csv, row 1, column tenure" in str(e.value)


def test_spec_not_found_and_not_yaml(tmp_path):
    with pytest.raises(DataError, match="spec file not found"):
        read_spec(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("path: [unclosed\n")
    with pytest.raises(DataError, match="not valid YAML/JSON"):
        read_spec(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(DataError, match="expected a mapping"):
        read_spec(tmp_path / "list.yaml")


def test_spec_object_accepted(tmp_path):
    write(tmp_path, SIM_SPEC)
    spec = spec_from_dict(SIM_SPEC, source=tmp_path / "spec.json")
    assert isinstance(spec, DatasetSpec)
    assert len(load_dataset("csv", spec=spec)) == 3
