"""Bad input: every case names the file, the row (1-based line) and the column; dropped rows
are counted by reason with the first example; strict=True raises on the first one."""
from pathlib import Path

import pytest

from ptpm_tf.data.dataset import DataError
from ptpm_tf.data.registry import load_dataset

HEADER = "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio"
GOOD = "0,{v},13838,10867,2020-07-05 00:08:23.438,20200705,159387890{v}.438,1.27"


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("PTPM_TF_CACHE_DIR", str(tmp_path / "cache"))


def write_matrix(folder: Path, body_lines, header=HEADER) -> Path:
    """A KuaiRec big_matrix.csv with a BOM: header, then ``body_lines`` (line 2 on)."""
    path = folder / "big_matrix.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join([header, *body_lines, ""]).encode())
    return path


def good(v):
    return GOOD.format(v=v)


def load(folder, strict=False):
    return load_dataset("kuairec", data_dir=str(folder), strict=strict)


def only_reason(ds):
    assert len(ds.report.dropped) == 1, ds.report.dropped
    reason, n = next(iter(ds.report.dropped.items()))
    return reason, n, ds.report.examples[reason]


def check_place(text, file="big_matrix.csv", row=None, column=None):
    assert file in text, text
    if row is not None:
        assert f"row {row}" in text, text
    if column is not None:
        assert f"column {column}" in text, text


# ------------------------------------------------------------- whole-file problems

def test_missing_folder_and_file(tmp_path):
    with pytest.raises(DataError) as e:
        load(tmp_path / "nowhere")
    assert "nowhere" in str(e.value) and "not found" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as e:
        load(tmp_path / "empty")
    assert "big_matrix.csv" in str(e.value) and "empty" in str(e.value)  # patterns + folder


def test_empty_file(tmp_path):
    (tmp_path / "big_matrix.csv").write_bytes(b"")
    with pytest.raises(DataError) as e:
        load(tmp_path)
    check_place(str(e.value), row=1)
    assert "file is empty" in str(e.value)
    (tmp_path / "big_matrix.csv").write_bytes(b"\xef\xbb\xbf")  # only a BOM
    with pytest.raises(DataError, match="file is empty"):
        load(tmp_path)


def test_header_only(tmp_path):
    write_matrix(tmp_path, [])
    with pytest.raises(DataError) as e:
        load(tmp_path)
    check_place(str(e.value), row=2)
    assert "no data rows" in str(e.value)


def test_missing_column(tmp_path):
    write_matrix(tmp_path, ["0,1,13838,10867,x,20200705,1.0"],
                 header="user_id,video_id,play_duration,video_duration,time,date,ts")
    with pytest.raises(DataError) as e:
        load(tmp_path)
    check_place(str(e.value), row=1, column="timestamp")
    assert "missing column 'timestamp'" in str(e.value) and "header has" in str(e.value)


# ------------------------------------------------------------- row problems

# Bad rows among good ones: (rows, reason, dropped, kept, row and column of the first
# bad row, text its example quotes, text the --strict error adds).
ROW_CASES = [
    pytest.param([good(1), good(2).replace("13838", "abc"), good(3)],
                 "non-numeric watch time (play_duration)", 1, 2, 3, "play_duration", "'abc'",
                 None, id="non-numeric-value"),
    pytest.param([good(1), good(2), good(3).replace("13838", "NaN")],
                 "missing watch time (play_duration)", 1, 2, 4, "play_duration", None,
                 None, id="nan-watch-time"),
    pytest.param([good(1).replace("13838", ""), good(2), good(3).replace("13838", "")],
                 "missing watch time (play_duration)", 2, 1, 2, "play_duration", None,
                 None, id="missing-watch-time-first-of-two"),
    pytest.param([good(1), good(2).replace("13838", "inf")],
                 "non-numeric watch time (play_duration)", 1, 1, 3, "play_duration", None,
                 None, id="infinite-value"),
    pytest.param([good(1), good(2), good(3), good(4).replace("13838", "-5")],
                 "negative watch time (play_duration)", 1, 3, 5, "play_duration", "-5 ms",
                 None, id="negative-watch-time"),
    pytest.param([good(1), "u7" + good(2)[1:]],
                 "non-integer user_id", 1, 1, 3, "user_id", None, None,
                 id="non-integer-id"),
    pytest.param([good(1), "0,2,13838,10867,,,,"],
                 "missing timestamp", 1, 1, 3, "timestamp", None, None,
                 id="missing-timestamp"),
    pytest.param([good(1), good(2), HEADER, good(3)],
                 "repeated header line", 1, 3, 4, None, None, "repeated header",
                 id="repeated-header-line"),
    # files concatenated with `cat` repeat the header with its BOM
    pytest.param([good(1), "\ufeff" + HEADER, good(3)],
                 "repeated header line", 1, 2, 3, None, None, "repeated header",
                 id="repeated-header-with-bom"),
]


@pytest.mark.parametrize("rows, reason, dropped, kept, row, column, quoted, strict_text",
                         ROW_CASES)
def test_bad_row_is_dropped_and_counted(tmp_path, rows, reason, dropped, kept, row, column,
                                        quoted, strict_text):
    """The row is dropped and counted under its reason; the first example names its
    place; with --strict the earliest bad row is an error that names it."""
    write_matrix(tmp_path, rows)
    ds = load(tmp_path)
    got_reason, n, ex = only_reason(ds)
    assert (got_reason, n, len(ds)) == (reason, dropped, kept)
    check_place(ex, row=row, column=column)
    if quoted is not None:
        assert quoted in ex, ex
    with pytest.raises(DataError) as e:
        load(tmp_path, strict=True)
    check_place(str(e.value), row=row, column=column)
    if strict_text is not None:
        assert strict_text in str(e.value), str(e.value)


def test_malformed_rows(tmp_path):
    write_matrix(tmp_path, [good(1), "0,2,13838", good(3), good(4) + ",extra"])
    ds = load(tmp_path)
    reason, n, ex = only_reason(ds)
    assert (reason, n, len(ds)) == ("malformed row (wrong field count)", 2, 2)
    # line 3 has 3 fields: the first missing column is video_duration
    check_place(ex, row=3, column="video_duration")
    assert "expected 8 fields, found 3" in ex
    with pytest.raises(DataError) as e:
        load(tmp_path, strict=True)
    check_place(str(e.value), row=3, column="video_duration")
    # a row with too many fields names the extra field
    write_matrix(tmp_path, [good(1), good(4) + ",extra"])
    reason, n, ex = only_reason(load(tmp_path))
    check_place(ex, row=3, column="field 9")


def test_line_numbers_after_skipped_lines(tmp_path):
    """Rows after malformed lines and an empty line still get their true line number."""
    write_matrix(tmp_path, [good(1), "1,2", "", "1,2,3", good(5).replace("13838", "-1")])
    ds = load(tmp_path)
    assert ds.report.dropped == {"malformed row (wrong field count)": 2, "empty row": 1,
                                 "negative watch time (play_duration)": 1}
    check_place(ds.report.examples["empty row"], row=4)
    check_place(ds.report.examples["negative watch time (play_duration)"], row=6,
                column="play_duration")
    assert ds.report.rows_read == 5 and ds.report.rows_kept == 1 == len(ds)


def test_feature_table_missing_column(tmp_path):
    write_matrix(tmp_path, [good(1), good(2)])
    (tmp_path / "user_features.csv").write_text("user_id,user_active_degree\n0,high\n")
    with pytest.raises(DataError) as e:  # a present table must have the known columns
        load(tmp_path)
    check_place(str(e.value), file="user_features.csv", row=1, column="is_lowactive_period")


def test_bad_rows_in_a_feature_table_are_noted(tmp_path):
    """Feature-table rows are not interactions: a bad one is a note (strict: an error)."""
    write_matrix(tmp_path, [good(1), good(2)])
    (tmp_path / "item_categories.csv").write_text(
        'video_id,feat\n1,"[3, 4]"\nx,[5]\n2,[6],oops\n')
    ds = load(tmp_path)
    assert not ds.report.dropped and ds.frame["category"].tolist() == [3, -1]
    notes = " | ".join(ds.report.notes)
    assert "item_categories.csv, row 3, column video_id" in notes
    assert "item_categories.csv, row 4" in notes
    with pytest.raises(DataError) as e:
        load(tmp_path, strict=True)
    check_place(str(e.value), file="item_categories.csv", row=3, column="video_id")


def test_summary_counts_every_drop(tmp_path):
    write_matrix(tmp_path, [good(1), HEADER, "0,2", good(3).replace("13838", "x")])
    ds = load(tmp_path)
    assert ds.report.rows_read == 4 and ds.report.rows_kept == 1
    text = ds.report.summary()
    for what in ("repeated header line", "malformed row", "non-numeric"):
        assert what in text
