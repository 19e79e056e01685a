"""Checked, vectorised reading of chosen columns from a CSV or Parquet file.

Every loader reads its files through :func:`read_csv` / :func:`read_parquet`, so bad input
is handled the same way everywhere:

- a missing or empty file, a file with only a header, or a missing column raise
  :class:`DataError` (nothing sensible can be loaded);
- a bad row (wrong field count, a repeated header line, an empty row, a non-numeric or
  non-finite value, a missing value where one is required) is dropped and counted in the
  :class:`LoadReport` under its reason, with the first example; with ``strict=True`` the
  bad row on the earliest line raises instead (all checks of the read run first).

Messages name the file, the row and the column. For a CSV the row is the 1-based physical
line of the file (the header is line 1), exact as long as no quoted value spans lines; for
Parquet it is the 1-based row of the file.

CSVs are parsed by ``pyarrow.csv`` in streaming blocks, every column read as text first and
converted with Arrow compute kernels afterwards, so bad values can be located without a
Python loop over rows. Single-threaded parsing keeps the line numbers of malformed rows
(Arrow only knows them then); ``rows`` stops the stream early.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.parquet as pq

from ptpm_tf.data.dataset import DataError, LoadReport, one_line, shown

#: name of the column that carries each row's line (CSV) or row (Parquet) in the source file
LINE = "_line"
#: text read as a missing value in any column
MISSING_TOKENS = ("", "NA", "N/A", "NaN", "nan", "NAN", "null", "NULL", "None", "none")
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_BLOCK = 16 << 20
KINDS = ("float", "int", "id", "cat", "str")


@dataclasses.dataclass(frozen=True)

class Column:
    """One column to read.

    ``kind``: ``float`` (finite number), ``int`` (integer, e.g. the ids of a known format;
    nullable ``Int64`` if missing values are kept),
    ``id`` (int64 if every value is an integer, else text: ids of a user's own file),
    ``cat`` (a categorical feature: int64 if every value is an integer, else text; a
    missing value becomes -1 or ""), ``str`` (text as it is).
    ``missing``: ``drop`` (a missing value drops the row) or ``keep`` (NaN / -1 / "").
    ``aliases``: other header spellings; headers match ignoring case and underscores.
    ``optional``: the file may lack the column (then the frame lacks it too).
    ``role``: how reasons and messages name it, e.g. "watch time".
    """

    name: str
    kind: str = "float"
    missing: str = "drop"
    aliases: Tuple[str, ...] = ()
    optional: bool = False
    role: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown column kind {self.kind!r}")
        if self.missing not in ("drop", "keep"):
            raise ValueError(f"unknown missing policy {self.missing!r}")

    @property
    def label(self) -> str:
        return f"{self.role} ({self.name})" if self.role and self.role != self.name \
            else self.name


def where(file, line: Optional[int], column: Optional[str], message: str) -> str:
    """The text of a DataError for this place (used as a LoadReport example too)."""
    return str(DataError(message, file=str(file), row=line, column=column))


def reject(mask: np.ndarray, lines: np.ndarray, reason: str, *, file, column: Optional[str],
           report: LoadReport, strict: bool, describe: Callable[[int], str],
           firsts: Optional[list] = None) -> int:
    """Count the rows in ``mask`` as dropped for ``reason`` (first example kept).

    ``describe(i)`` says what is wrong with row ``i``. With ``strict`` the first such row
    raises :class:`DataError`. With a ``firsts`` list the first row's error is appended to
    it instead, so that a caller can raise the earliest of several problems.
    Returns the number of rows in ``mask``.
    """
    n = int(np.count_nonzero(mask))
    if n == 0:
        return 0
    i = int(np.argmax(mask))
    line = int(lines[i]) if lines is not None else None
    error = DataError(describe(i), file=str(file), row=line, column=column)
    if strict:
        raise error
    if firsts is not None:
        firsts.append(error)
    report.drop(reason, n, str(error))
    return n


def drop_rows(frame: pd.DataFrame, mask, reason: str, *, file, column: Optional[str],
              report: LoadReport, strict: bool,
              describe: Callable[[pd.Series], str]) -> pd.DataFrame:
    """Drop ``frame`` rows where ``mask`` holds, counting them (see :func:`reject`).

    ``frame`` must carry :data:`LINE`; ``describe`` gets the first bad row.
    """
    mask = np.asarray(mask, dtype=bool)
    n = reject(mask, frame[LINE].to_numpy(), reason, file=file, column=column, report=report,
               strict=strict, describe=lambda i: describe(frame.iloc[i]))
    return frame.loc[~mask].reset_index(drop=True) if n else frame


# ---------------------------------------------------------------------------- header

def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "").replace(" ", "")


def resolve_columns(header: Sequence[str], columns: Sequence[Column], file,
                    row: Optional[int]) -> Dict[Column, str]:
    """Map each wanted column to its name in ``header`` (raise on a missing one)."""
    exact = {h: h for h in header}
    loose: Dict[str, str] = {}
    for h in header:
        loose.setdefault(_norm(h), h)
    found: Dict[Column, str] = {}
    for c in columns:
        names = (c.name, *c.aliases)
        hit = next((exact[n] for n in names if n in exact), None)
        if hit is None:
            hit = next((loose[_norm(n)] for n in names if _norm(n) in loose), None)
        if hit is not None:
            found[c] = hit
        elif not c.optional:
            listed = ", ".join(one_line(h, 40) for h in header[:40]) + (
                ", ..." if len(header) > 40 else "")
            raise DataError(f"missing column {c.name!r}"
                            + (f" (or {', '.join(map(repr, c.aliases))})" if c.aliases else "")
                            + f"; the header has: {listed}", file=str(file), row=row,
                            column=c.name)
    return found


def csv_header(path, sep: str = ",", encoding: str = "utf-8") -> List[str]:
    """The header fields of a CSV (a UTF-8 BOM is skipped); raise if there is none."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("file not found", file=path)
    first = _first_line(path)
    enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    text = first.decode(enc, errors="replace").rstrip("\r\n")
    if not text.strip():
        what = "file is empty" if not first or first.strip() in (b"", b"\xef\xbb\xbf") \
            else "first line is blank"
        raise DataError(f"{what}; expected a header line", file=path, row=1)
    try:
        return [h.strip() for h in next(csv.reader(io.StringIO(text), delimiter=sep))]
    except csv.Error as e:
        raise DataError(f"cannot parse the header line: {e}", file=path, row=1) from None


#: magic numbers of compressed or binary files that are not text tables
_BINARY_MAGIC = {b"\x1f\x8b": "gzip-compressed", b"BZh": "bzip2-compressed",
                 b"\xfd7zXZ": "xz-compressed", b"PK\x03\x04": "a zip archive",
                 b"(\xb5/\xfd": "zstd-compressed", b"PAR1": "a Parquet file"}


def _first_line(path: str) -> bytes:
    """The first line of a text table (up to 1 MB); raise on an unreadable, compressed or
    binary file, and on CR-only line endings, which the CSV parser does not split."""
    try:
        with open(path, "rb") as f:
            first = f.readline(1 << 20)
    except OSError as e:
        raise DataError(f"cannot read the file: {e.strerror}", file=path) from None
    for magic, what in _BINARY_MAGIC.items():
        if first.startswith(magic):
            raise DataError(f"file is {what}, not a CSV text file; decompress or convert it "
                            f"first", file=path, row=1)
    if b"\0" in first:
        raise DataError("file holds NUL bytes: a binary file, not a CSV text file",
                        file=path, row=1)
    body = first.rstrip(b"\r\n")
    if b"\r" in body:
        raise DataError("lines end in a bare CR (old Mac line endings); convert them to LF "
                        "or CRLF first", file=path, row=1)
    return first


# ---------------------------------------------------------------------------- CSV

def read_csv(path, columns: Sequence[Column], *, sep: str = ",", rows: Optional[int] = None,
             strict: bool = False, report: Optional[LoadReport] = None,
             encoding: str = "utf-8", main: bool = False) -> pd.DataFrame:
    """Read ``columns`` of the CSV at ``path`` into a checked frame (plus :data:`LINE`).

    ``rows`` caps the data lines read. Counts go to ``report`` (``rows_read`` and drops).
    ``main`` marks a dataset's main table: inside :func:`chunked_reads` such a read returns
    the next chunk of the file instead of all of it (side tables are read once and kept).
    """
    report = report if report is not None else LoadReport()
    key = ("csv", os.fspath(path), tuple(columns), sep, encoding, rows)
    if _ACTIVE is not None:
        return _ACTIVE.read(key, main, report, strict,
                            lambda: _CsvStream(path, columns, sep, encoding, rows,
                                               block=_ACTIVE.block_bytes if main else _BLOCK))
    return _CsvStream(path, columns, sep, encoding, rows).next(None, report, strict)


def take_batches(reader, read_next, limit: Optional[int]):
    """(record batches, rows) of up to ``limit`` rows (all that is left, or up to
    ``reader.cap``, when None) from ``read_next``, a callable raising ``StopIteration`` at
    the end. ``reader`` keeps the state: ``pending`` (one batch read ahead, to know whether
    anything is left), ``records`` (rows handed out before), ``cap`` and ``exhausted``."""
    taken, n = [], 0
    try:
        while limit is None or n < limit:
            batch = reader.pending if reader.pending is not None else read_next()
            reader.pending = None
            if reader.cap is not None and reader.records + n + batch.num_rows >= reader.cap:
                taken.append(batch.slice(0, reader.cap - reader.records - n))
                reader.exhausted = True
                return taken, reader.cap - reader.records
            taken.append(batch)
            n += batch.num_rows
        reader.pending = read_next()  # look ahead: is anything left?
    except StopIteration:
        reader.exhausted = True
    return taken, n

class _CsvStream:
    """A CSV read block by block; each :meth:`next` returns the following rows checked,
    with their physical line numbers (the lines skipped as malformed so far are known,
    since the parser has passed them)."""

    def __init__(self, path, columns: Sequence[Column], sep: str, encoding: str,
                 rows: Optional[int], block: int = _BLOCK):
        self.path = os.fspath(path)
        self.header = csv_header(self.path, sep, encoding)
        self.found = resolve_columns(self.header, columns, self.path, row=1)
        self.skipped: List[Tuple[int, int, int]] = []  # (line, expected fields, found fields)
        self.cap = rows
        self.records = 0       # records returned so far
        self.counted = 0       # skipped rows counted so far
        self.exhausted = False
        self.encoding = encoding
        self.handler_errors: List[BaseException] = []

        def on_invalid(row) -> str:
            self.skipped.append((row.number if row.number is not None else -1,
                                 row.expected_columns, row.actual_columns))
            return "skip"

        utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig")
        read_opts = pv.ReadOptions(use_threads=False, block_size=block,
                                   encoding="utf8" if utf8 else encoding)
        parse_opts = pv.ParseOptions(delimiter=sep, invalid_row_handler=on_invalid,
                                     ignore_empty_lines=False)
        names = list(dict.fromkeys(self.found.values()))
        conv_opts = pv.ConvertOptions(include_columns=names,
                                      column_types={n: pa.string() for n in names},
                                      strings_can_be_null=False,
                                      quoted_strings_can_be_null=False)
        try:
            with _handler_errors_caught(self.handler_errors):
                self.stream = pv.open_csv(self.path, read_options=read_opts,
                                          parse_options=parse_opts, convert_options=conv_opts)
        except pa.ArrowInvalid as e:
            raise self._parse_error(e) from None
        self.pending = None

    def _parse_error(self, e: Exception) -> DataError:
        if any(isinstance(x, UnicodeDecodeError) for x in self.handler_errors):
            return DataError(f"a malformed row holds bytes that are not {self.encoding} text, "
                             f"so it cannot be skipped and counted: {e}", file=self.path)
        return DataError(f"cannot parse the CSV: {e}", file=self.path)

    def _batches(self, limit: Optional[int]):
        """Record batches up to ``limit`` rows (the rest of the file, or the cap, when
        None); sets ``exhausted`` when nothing is left."""
        try:
            with _handler_errors_caught(self.handler_errors):
                return self._take(limit)
        except pa.ArrowInvalid as e:
            raise self._parse_error(e) from None

    def _take(self, limit: Optional[int]):
        return take_batches(self, self.stream.read_next_batch, limit)

    def next(self, limit: Optional[int], report: LoadReport, strict: bool) -> pd.DataFrame:
        """The next ``limit`` rows or more (whole blocks), checked; all rows when None."""
        first = self.records == 0
        batches, n = self._batches(limit)
        table = pa.Table.from_batches(batches, schema=self.stream.schema)
        bad_all = np.sort(np.array([s[0] for s in self.skipped], dtype=np.int64))
        lines = _record_lines(n, bad_all, start=self.records)
        # the malformed rows of this read: those before its last record (all if it ends the file)
        cut = len(bad_all) if self.exhausted or n == 0 else \
            int(np.searchsorted(bad_all, lines[-1]))
        skipped = sorted(self.skipped, key=lambda s: s[0])[self.counted:cut]
        if self.cap is not None and self.exhausted and n:
            skipped = [s for s in skipped if s[0] < lines[-1]]
        self.counted, self.records = cut, self.records + n
        report.rows_read += n + len(skipped)
        firsts: List[DataError] = []
        if skipped:
            line, expected, got = skipped[0]
            # the column: the first one missing from the row, or the first field too many
            col = self.header[got] if got < expected else \
                f"field {expected + 1} (beyond the {expected} header columns)"
            error = DataError(f"malformed row: expected {expected} fields, found {got}",
                              file=self.path, row=int(line), column=col)
            firsts.append(error)
            report.drop("malformed row (wrong field count)", len(skipped), str(error))
        if n == 0 and first:
            if strict and firsts:
                raise firsts[0]
            raise DataError("no data rows after the header", file=self.path,
                            row=2 + len(skipped))
        return _convert({c: table.column(h) for c, h in self.found.items()}, lines,
                        self.path, report=report, strict=strict, header_names=self.found,
                        firsts=firsts)


@contextlib.contextmanager
def _handler_errors_caught(caught: List[BaseException]):
    """Collect what the parser's invalid-row callback raised instead of printing it:
    Arrow decodes a malformed row's text before the callback runs and reports a failure
    through ``sys.unraisablehook`` (a traceback on stderr), then fails the parse."""
    previous = sys.unraisablehook
    sys.unraisablehook = lambda info: caught.append(info.exc_value)
    try:
        yield
    finally:
        sys.unraisablehook = previous


def _record_lines(n: int, skipped_lines: np.ndarray, start: int = 0) -> np.ndarray:
    """Physical line of parsed records ``start .. start + n - 1``, given the lines the
    parser skipped before them."""
    g = np.arange(start, start + n, dtype=np.int64)
    if len(skipped_lines) == 0:
        return g + 2
    s = np.sort(skipped_lines)
    before = np.searchsorted(s - np.arange(len(s)) - 2, g, side="right")
    return g + 2 + before


# ---------------------------------------------------------------------------- Parquet

def read_parquet(path, columns: Sequence[Column], *, rows: Optional[int] = None,
                 strict: bool = False, report: Optional[LoadReport] = None,
                 main: bool = False) -> pd.DataFrame:
    """Read ``columns`` of a Parquet file into a checked frame (rows numbered from 1).
    ``main``: as for :func:`read_csv`."""
    report = report if report is not None else LoadReport()
    key = ("parquet", os.fspath(path), tuple(columns), rows)
    if _ACTIVE is not None:
        return _ACTIVE.read(key, main, report, strict,
                            lambda: _ParquetStream(path, columns, rows,
                                                   batch=min(1 << 18, _ACTIVE.chunk_rows)))
    return _ParquetStream(path, columns, rows).next(None, report, strict)


class _ParquetStream:
    """A Parquet file read batch by batch (see :class:`_CsvStream`)."""

    def __init__(self, path, columns: Sequence[Column], rows: Optional[int],
                 batch: int = 1 << 18):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise DataError("file not found", file=self.path)
        if os.path.getsize(self.path) == 0:
            raise DataError("file is empty", file=self.path, row=1)
        try:
            pf = pq.ParquetFile(self.path)
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(f"not a readable Parquet file: {e}", file=self.path) from None
        self.found = resolve_columns(pf.schema_arrow.names, columns, self.path, row=None)
        names = list(dict.fromkeys(self.found.values()))
        self.batches = pf.iter_batches(columns=names, batch_size=batch)
        self.schema = pf.schema_arrow
        self.cap, self.records, self.exhausted, self.pending = rows, 0, False, None

    def next(self, limit: Optional[int], report: LoadReport, strict: bool) -> pd.DataFrame:
        first = self.records == 0
        taken, n = take_batches(self, lambda: next(self.batches), limit)
        if n == 0 and first:
            raise DataError("no data rows", file=self.path, row=1)
        names = list(dict.fromkeys(self.found.values()))
        table = (pa.Table.from_batches(taken) if taken else
                 pa.Table.from_batches([], schema=pa.schema([self.schema.field(c) for c in names])))
        lines = np.arange(self.records + 1, self.records + n + 1, dtype=np.int64)
        self.records += n
        report.rows_read += n
        return _convert({c: table.column(h) for c, h in self.found.items()}, lines, self.path,
                        report=report, strict=strict, header_names=None, firsts=[])


#: the chunked read in progress (:func:`chunked_reads`), if any
_ACTIVE: Optional["ChunkedReads"] = None


class ChunkedReads:
    """State of :func:`chunked_reads`: one open stream per main file, side tables kept."""

    def __init__(self, chunk_rows: int):
        self.chunk_rows = int(chunk_rows)
        #: CSV parser block: about 64 bytes a row, at most the usual 16 MiB
        self.block_bytes = int(min(_BLOCK, max(4096, self.chunk_rows * 64)))
        self.streams: Dict[tuple, object] = {}
        self.side: Dict[tuple, pd.DataFrame] = {}

    @property
    def done(self) -> bool:
        """Every main file has been read to its end (or its row cap). Call after a load: a
        loader that marks no read as ``main`` (CIKM16, whose dwell times need whole
        sessions) has read everything at once."""
        return all(s.exhausted for s in self.streams.values())

    def read(self, key, main: bool, report: LoadReport, strict: bool, open_stream):
        """A side table (read once), or the next chunk of a main file's stream. A main
        file's stream is keyed without its row cap, which is fixed when it opens (a loader
        passing a shrinking cap, as KuaiRand's over several logs, caps each log)."""
        if main:
            key = key[:-1]
        if not main:
            if key not in self.side:  # a side table: read (and counted) once
                self.side[key] = open_stream().next(None, report, strict)
            return self.side[key].copy()
        if key not in self.streams:
            self.streams[key] = open_stream()
        return self.streams[key].next(self.chunk_rows, report, strict)


@contextlib.contextmanager
def chunked_reads(chunk_rows: int):
    """While active, every loader returns its dataset one chunk of about ``chunk_rows``
    main-table rows per call (whole parser blocks of about 64 bytes a row), so a table larger than memory is
    converted piece by piece by the loaders' own code: the bad-row rules, line numbers
    and ``strict`` are those of a whole-file read. Call the loader until ``done``.
    The data cache is bypassed (:func:`ptpm_tf.data.cache.cached_load`)."""
    global _ACTIVE
    if _ACTIVE is not None:
        raise RuntimeError("chunked_reads is not re-entrant")
    _ACTIVE = ChunkedReads(chunk_rows)
    try:
        yield _ACTIVE
    finally:
        _ACTIVE = None


def chunking() -> bool:
    """Whether a :func:`chunked_reads` is in progress."""
    return _ACTIVE is not None


# ---------------------------------------------------------------------------- conversion

def _convert(cols: Dict[Column, pa.ChunkedArray], lines: np.ndarray, path, *,
             report: LoadReport, strict: bool,
             header_names: Optional[Dict[Column, str]], firsts: List[DataError]) -> pd.DataFrame:
    """Check and convert the columns; drop bad rows. With ``strict``, raise the problem on
    the earliest line (all checks run first, so the first in the file wins)."""
    n = len(lines)
    alive = np.ones(n, dtype=bool)

    def drop(mask, reason, column, describe):
        mask = mask & alive
        if reject(mask, lines, reason, file=path, column=column, report=report, strict=False,
                  describe=describe, firsts=firsts):
            alive[mask] = False

    text = {c: a for c, a in cols.items() if _is_text(a)}
    if header_names and text:
        # a header line repeated inside the file (e.g. files concatenated with `cat`)
        rep = np.ones(n, dtype=bool)
        for c, a in text.items():
            name = header_names[c]
            same = pc.is_in(a, value_set=pa.array([name, "\ufeff" + name]))  # a BOM too
            rep &= _np_bool(same)
        drop(rep, "repeated header line", None,
             lambda i: "repeated header line inside the file")
        blank = np.ones(n, dtype=bool)
        for a in text.values():
            blank &= _np_bool(pc.equal(pc.utf8_length(a), 0))
        drop(blank, "empty row", None, lambda i: "empty row (no values)")

    out: Dict[str, object] = {}
    for c, a in cols.items():
        values, missing, invalid, why = _parse(c, a, alive)
        if invalid is not None:
            drop(invalid, f"{why} {c.label}", c.name,
                 lambda i, a=a, why=why: f"{why}: {_raw(a, i)}")
        if c.missing == "drop":
            drop(missing, f"missing {c.label}", c.name,
                 lambda i, a=a: f"missing value ({_raw(a, i)})")
        out[c.name] = values
    if strict and firsts:
        raise min(firsts, key=lambda e: e.row if e.row is not None else 0)
    out[LINE] = lines
    if not alive.all():
        keep = np.flatnonzero(alive)
        out = {k: (v[keep] if isinstance(v, np.ndarray) else v.take(keep))
               for k, v in out.items()}
    return pd.DataFrame(out, copy=False)  # one block per column: no consolidation copy


def _np_bool(a) -> np.ndarray:
    return np.asarray(pc.fill_null(a, False).to_numpy(zero_copy_only=False), dtype=bool)


def _raw(a: pa.ChunkedArray, i: int) -> str:
    """Row ``i``'s value as quoted in a message (cut: a value may be megabytes)."""
    return shown(a[i].as_py())


def _is_text(a) -> bool:
    return pa.types.is_string(a.type) or pa.types.is_large_string(a.type)


def _missing_mask(a: pa.ChunkedArray) -> np.ndarray:
    """Null, NaN or one of :data:`MISSING_TOKENS` (exactly; " NA" is not missing but bad)."""
    if _is_text(a):
        return _np_bool(pc.or_(pc.is_null(a), pc.is_in(a, value_set=pa.array(MISSING_TOKENS))))
    if pa.types.is_floating(a.type):
        return _np_bool(pc.is_null(a, nan_is_null=True))
    return _np_bool(pc.is_null(a))


def _without(a: pa.ChunkedArray, missing: np.ndarray):
    """``a`` with the missing entries nulled (no copy when nothing is missing)."""
    if not missing.any():
        return a
    return pc.if_else(pa.array(missing), pa.scalar(None, a.type), a)


def _floats(a: pa.ChunkedArray, missing: np.ndarray):
    """float64 values (NaN where missing or bad) and the mask of bad (non-numeric) values."""
    if pa.types.is_floating(a.type) or pa.types.is_integer(a.type) or pa.types.is_boolean(a.type):
        v = pc.cast(a, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
        v[missing] = np.nan
        return v, ~missing & ~np.isfinite(v)
    if not _is_text(a):
        return np.full(len(a), np.nan), ~missing
    nulled = _without(a, missing)
    try:
        v = pc.cast(nulled, pa.float64())
        bad = None
    except pa.ArrowInvalid:  # some value is not a plain number: find which (vectorised)
        trimmed = pc.utf8_trim_whitespace(nulled)
        ok = pc.fill_null(pc.match_substring_regex(trimmed, _NUMBER), False)
        bad = ~_np_bool(ok) & ~missing
        v = pc.cast(pc.if_else(ok, trimmed, pa.scalar(None, a.type)), pa.float64())
    v = np.array(v.to_numpy(zero_copy_only=False), dtype=np.float64)
    finite = np.isfinite(v)
    if not finite.all():
        nonfinite = ~finite & ~missing
        bad = nonfinite if bad is None else (bad | nonfinite)
        v[~finite] = np.nan
    return v, (bad if bad is not None else np.zeros(len(v), dtype=bool))


def _ints(a: pa.ChunkedArray, missing: np.ndarray):
    """int64 values (0 where missing or bad) and the mask of bad (non-integer) values."""
    if pa.types.is_integer(a.type):
        return pc.fill_null(pc.cast(a, pa.int64()), 0).to_numpy(), np.zeros(len(a), bool)
    if _is_text(a):
        try:
            v = pc.cast(_without(a, missing), pa.int64())
            v = v.to_numpy() if v.null_count == 0 else pc.fill_null(v, 0).to_numpy()
            return np.asarray(v, dtype=np.int64), np.zeros(len(a), bool)
        except pa.ArrowInvalid:
            pass
    f, bad = _floats(a, missing)
    ok = ~missing & ~bad
    frac = np.zeros(len(f), dtype=bool)
    frac[ok] = (f[ok] != np.floor(f[ok])) | (np.abs(f[ok]) > 2.0 ** 53)
    v = np.zeros(len(f), dtype=np.int64)
    good = ok & ~frac
    v[good] = f[good].astype(np.int64)
    return v, bad | frac


def _parse(c: Column, a: pa.ChunkedArray, alive: np.ndarray):
    """(values, missing mask, invalid mask or None, why) for one column.

    ``alive`` marks the rows not dropped yet: only they decide whether an ``id`` or
    ``cat`` column is all integers.
    """
    missing = _missing_mask(a)
    if c.kind == "float":
        v, bad = _floats(a, missing)
        return v, missing, bad, "non-numeric"
    if c.kind == "int":
        v, bad = _ints(a, missing)
        if c.missing == "keep":  # nullable, so that a missing id stays visible
            return pd.arrays.IntegerArray(v, missing.copy()), missing, bad, "non-integer"
        return v, missing, bad, "non-integer"
    if c.kind in ("id", "cat"):
        v, bad = _ints(a, missing)
        if not (bad & alive).any():
            if c.kind == "cat":
                v = np.where(missing, -1, v)
            return v, missing, None, ""
        # not all integers: keep the text (trimmed); missing -> ""
    s = a if _is_text(a) else pc.cast(a, pa.string())
    s = pc.if_else(pa.array(missing), "", pc.utf8_trim_whitespace(s))
    return s.to_pandas().array, missing, None, ""
