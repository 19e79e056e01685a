"""Fuzzing the loaders with Hypothesis: random corruptions of a small KuaiRec-format file
and of a dataset spec. Every outcome is a dataset whose dropped rows are all counted, or
a :class:`DataError` of one bounded line; nothing else (no traceback, not even one that
a library prints and ignores). Bounded: 60 derandomized examples each, seconds in all, no
per-example deadline (the test machines are shared); ``FUZZ_EXAMPLES=2000`` runs that
many random ones instead, to hunt."""
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ptpm_tf.data.dataset import MAX_MESSAGE, DataError
from ptpm_tf.data.registry import load_dataset

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
SAMPLE = Path(__file__).parent / "data" / "kuairec-sample" / "big_matrix_1000.csv"
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 60)), deadline=None,
                derandomize="FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])


def _small_file() -> bytes:
    """The header and 30 rows of the real KuaiRec sample (BOM included)."""
    return b"".join(SAMPLE.read_bytes().splitlines(keepends=True)[:31])


BASE = _small_file()
TOKENS = [b"", b",", b",,", b"\n", b"\r\n", b"\r", b"\"", b"NaN", b"inf", b"-inf", b"-1",
          b"1e400", b"nan", b"NULL", b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"  ", b"x" * 5000,
          b"9" * 30, b"user_id,video_id,play_duration,video_duration,time,date,timestamp,"
          b"watch_ratio\n", b"\xe4\xb8\xad"]


@st.composite
def corruptions(draw, base: bytes):
    """``base`` with 1-4 random edits: tokens or random bytes inserted or replacing a
    span, spans deleted or duplicated, or the file cut short."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        span = draw(st.integers(0, 40))
        kind = draw(st.sampled_from(["insert", "replace", "delete", "duplicate", "cut"]))
        piece = draw(st.one_of(st.sampled_from(TOKENS), st.binary(min_size=1, max_size=12)))
        if kind == "insert":
            data[at:at] = piece
        elif kind == "replace":
            data[at:at + span] = piece
        elif kind == "delete":
            del data[at:at + span]
        elif kind == "duplicate":
            data[at:at] = data[at:at + span]
        else:
            del data[at:]
    return bytes(data)


def check_outcome(load):
    """Run ``load()``: a dataset whose every dropped row is counted, or a one-line
    DataError naming where; any other exception fails the test."""
    try:
        ds = load()
    except DataError as err:
        text = str(err)
        assert "\n" not in text and len(text) <= MAX_MESSAGE + 40, text
        return None
    report = ds.report
    assert report.rows_kept == len(ds) > 0, report.summary()
    assert all(n > 0 for n in report.dropped.values())
    assert "\n" not in report.summary()
    return ds


@FUZZ
@given(data=corruptions(BASE), strict=st.booleans())
def test_corrupted_kuairec_file(data, strict):
    folder = Path(tempfile.mkdtemp(prefix="fuzz-kuairec-"))
    try:
        (folder / "big_matrix.csv").write_bytes(data)
        ds = check_outcome(lambda: load_dataset("kuairec", data_dir=str(folder),
                                                strict=strict))
        if ds is not None and strict:
            assert not ds.report.dropped
    finally:
        shutil.rmtree(folder, ignore_errors=True)


SPEC = {"name": "fuzz", "path": "data.csv", "sep": ",",
        "label": {"column": "watch_time", "unit": "s"}, "user": "user_id", "item": "item_id",
        "duration": {"column": "duration", "unit": "s"},
        "timestamp": {"column": "timestamp", "unit": "s"},
        "categorical": ["category"], "numeric": ["tenure"]}
CSV = ("user_id,item_id,watch_time,duration,timestamp,category,tenure\n"
       + "".join(f"{i % 5},{i % 7},{1.5 * i},{20 + i},{100 + i},{i % 3},{i / 3:.2f}\n"
                 for i in range(20))).encode()
SPEC_TEXT = json.dumps(SPEC, indent=1).encode()
SPEC_YAML = b"""name: fuzz
path: data.csv
label: {column: watch_time, unit: s}
user: user_id
item: item_id
duration: {column: duration, unit: s}
timestamp: {column: timestamp, unit: s}
categorical: [category]
numeric: [tenure]
"""


@FUZZ
@given(spec=st.one_of(corruptions(SPEC_TEXT), corruptions(SPEC_YAML)),
       csv=st.one_of(st.just(CSV), corruptions(CSV)))
def test_corrupted_spec_file(spec, csv):
    folder = Path(tempfile.mkdtemp(prefix="fuzz-spec-"))
    try:
        (folder / "data.csv").write_bytes(csv)
        (folder / "spec.yaml").write_bytes(spec)
        check_outcome(lambda: load_dataset("csv", spec=str(folder / "spec.yaml")))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("text", [
    b"path: data.csv\nlabel: watch_time\nname: 2020-13-45\n",   # a date YAML cannot build
    b"path: data.csv\nlabel: {column: watch_time, unit: [s]}\n",  # a list where text goes
    b"path: [data.csv]\nlabel: watch_time\n",
    b"path: data.csv\nlabel: watch_time\nsep: 7\n",
    b"- a\n- b\n",
    b"&a [*a]\n",
])
def test_odd_spec_values(tmp_path, text):
    """Values of the wrong YAML type are one-line errors too (cases the fuzzer found)."""
    (tmp_path / "data.csv").write_bytes(CSV)
    (tmp_path / "spec.yaml").write_bytes(text)
    check_outcome(lambda: load_dataset("csv", spec=str(tmp_path / "spec.yaml")))


def test_malformed_row_with_bad_utf8(tmp_path, capsys):
    """Arrow cannot hand such a row to the skip-and-count callback (a case the fuzzer
    found): one DataError, and no "Exception ignored" traceback on stderr."""
    folder = tmp_path / "k"
    folder.mkdir()
    lines = BASE.splitlines(keepends=True)
    lines[5] = b"1,2,\xff,4\n"
    (folder / "big_matrix.csv").write_bytes(b"".join(lines))
    with pytest.raises(DataError, match="not utf-8 text"):
        load_dataset("kuairec", data_dir=str(folder))
    assert "Traceback" not in capsys.readouterr().err
