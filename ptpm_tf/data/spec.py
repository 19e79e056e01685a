"""Dataset spec: load any CSV or Parquet file as canonical rows (``--dataset csv --spec F``).

A spec is a YAML or JSON file (JSON is YAML, so either parser reads both) of this shape;
the simulator writes one, so the shape is stable::

    {"name": "simulator", "path": "simulator.csv", "sep": ",",
     "label": {"column": "watch_time", "unit": "s"},
     "user": "user_id", "item": "item_id",
     "duration": {"column": "duration", "unit": "s"},
     "timestamp": {"column": "timestamp", "unit": "s"},
     "categorical": ["category"], "numeric": ["user_tenure_days"],
     "oracle": {"median": "oracle_median", "mean": "oracle_mean"}}

Keys (any other key, at any level, is an error naming it):

- ``path`` (required): the data file, relative to the spec file's folder; ``--data-dir``
  replaces that folder. ``.parquet``/``.pq`` files are Parquet, anything else CSV, unless
  ``format`` (``csv`` | ``parquet``) says otherwise. ``sep`` (default ",") and
  ``encoding`` (default utf-8; a BOM is skipped) apply to CSV.
- ``label`` (required): the watch-time column, ``{"column", "unit"}`` or just the column
  name (unit s). Units: ``s`` or ``ms``.
- ``duration``, ``timestamp`` (optional): same form. Timestamp units: ``s``, ``ms`` (since
  the epoch) or ``datetime`` (date/time text such as "2020-07-05 00:08:23"; UTC unless it
  has an offset). A row with a missing or unparsable timestamp is dropped and counted.
- ``user``, ``item`` (optional): id columns (int64 if all values are integers, else
  text). Without ``user`` the dataset has no ``user_id`` column, so per-user metrics
  (per-user XAUC) cannot be computed and must be reported as unavailable: a constant
  stand-in user would silently turn per-user XAUC into the global one. Without ``item``
  there is no ``item_id`` column.
- ``categorical``, ``numeric`` (optional): feature columns (a missing categorical value
  becomes -1 or "", a missing numeric value NaN).
- ``oracle`` (optional, simulator): ``{"median": col, "mean": col}``, the true conditional
  median and mean of the watch time, in the label's unit.
- ``name`` (optional): the dataset's name; default the spec file's stem.

A column may have one role only (a label that is also a feature would leak the answer).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
import yaml

from ptpm_tf.data import cache
from ptpm_tf.data.dataset import (DURATION, ITEM, LABEL, ORACLE_MEAN, ORACLE_MEDIAN,
                                  TIMESTAMP, USER, Dataset, DataError, LoadReport, shown)
from ptpm_tf.data.reader import Column, drop_rows, read_csv, read_parquet

VERSION = 1
KEYS = ("name", "path", "format", "sep", "encoding", "label", "user", "item", "duration",
        "timestamp", "categorical", "numeric", "oracle")
COLUMN_KEYS = ("column", "unit")
ORACLE_KEYS = ("median", "mean")
UNITS = {"label": ("s", "ms"), "duration": ("s", "ms"), "timestamp": ("s", "ms", "datetime")}
_SCALE = {"s": 1.0, "ms": 1e-3}


@dataclasses.dataclass(frozen=True)
class ColumnRef:
    """A column and its unit."""

    column: str
    unit: str = "s"


@dataclasses.dataclass
class DatasetSpec:
    """A parsed spec (see the module doc). ``source`` is the spec file, if any."""

    path: str
    label: ColumnRef
    name: str = "csv"
    format: Optional[str] = None
    sep: str = ","
    encoding: str = "utf-8"
    user: Optional[str] = None
    item: Optional[str] = None
    duration: Optional[ColumnRef] = None
    timestamp: Optional[ColumnRef] = None
    categorical: List[str] = dataclasses.field(default_factory=list)
    numeric: List[str] = dataclasses.field(default_factory=list)
    oracle: Optional[Dict[str, str]] = None
    source: Optional[Path] = None

    def to_dict(self) -> dict:
        """The spec as written to a file (defaults and unset keys left out)."""
        d = {"name": self.name, "path": self.path, "sep": self.sep,
             "label": dataclasses.asdict(self.label)}
        for k in ("format", "user", "item"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.encoding != "utf-8":
            d["encoding"] = self.encoding
        for k in ("duration", "timestamp"):
            if getattr(self, k) is not None:
                d[k] = dataclasses.asdict(getattr(self, k))
        d["categorical"], d["numeric"] = list(self.categorical), list(self.numeric)
        if self.oracle:
            d["oracle"] = dict(self.oracle)
        return d

    def data_file(self, data_dir=None) -> Path:
        """The data file: ``path`` under ``data_dir`` if given, else beside the spec."""
        p = Path(self.path)
        if data_dir is not None:
            return Path(data_dir) / (p.name if p.is_absolute() else p)
        if p.is_absolute() or self.source is None:
            return p
        return self.source.parent / p

    def file_format(self, data_file: Path) -> str:
        if self.format:
            return self.format
        return "parquet" if data_file.suffix.lower() in (".parquet", ".pq") else "csv"


def read_spec(path) -> DatasetSpec:
    """Parse and check the spec file at ``path`` (YAML or JSON)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("spec file not found", file=str(path))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except OSError as e:
        raise DataError(f"cannot read the spec file: {e.strerror}", file=str(path)) from None
    except UnicodeDecodeError as e:
        raise DataError(f"spec file is not UTF-8 text (byte {e.start})", file=str(path)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        what = getattr(e, "problem", None) or type(e).__name__
        raise DataError(f"not valid YAML/JSON: {what}", file=str(path),
                        row=mark.line + 1 if mark is not None else None,
                        column=f"character {mark.column + 1}" if mark is not None else None
                        ) from None
    except (ValueError, TypeError, RecursionError) as e:  # a value YAML cannot build
        raise DataError(f"not valid YAML/JSON: {e}", file=str(path)) from None
    return spec_from_dict(raw, source=path)


def write_spec(spec: DatasetSpec, path) -> Path:
    """Write ``spec`` as JSON (``.json``) or YAML (otherwise)."""
    path = Path(path)
    d = spec.to_dict()
    path.write_text(json.dumps(d, indent=2) + "\n" if path.suffix.lower() == ".json"
                    else yaml.safe_dump(d, sort_keys=False))
    return path


def spec_from_dict(raw, source: Optional[Path] = None) -> DatasetSpec:
    """Check a spec given as a mapping; every problem names the key."""
    where = str(source) if source is not None else None

    def bad(msg):
        return DataError(f"spec: {msg}", file=where)

    if not isinstance(raw, dict):
        raise bad("expected a mapping of keys (name, path, label, ...)")
    unknown = [k for k in raw if k not in KEYS]
    if unknown:
        raise bad(f"unknown key {unknown[0]!r}; allowed keys: {', '.join(KEYS)}")
    for k in ("path", "label"):
        if raw.get(k) in (None, ""):
            raise bad(f"missing key {k!r}")

    def text(key, value):
        if not isinstance(value, str) or not value:
            raise bad(f"key {key!r} must be a column name (text), got {value!r}")
        return value

    def ref(key):
        v = raw.get(key)
        if v is None:
            return None
        if isinstance(v, str):
            return ColumnRef(text(key, v))
        if not isinstance(v, dict):
            raise bad(f"key {key!r} must be a column name or {{column, unit}}, got {v!r}")
        extra = [k for k in v if k not in COLUMN_KEYS]
        if extra:
            raise bad(f"unknown key {key + '.' + str(extra[0])!r}; allowed: column, unit")
        unit = v.get("unit", "s")
        if unit not in UNITS[key]:
            raise bad(f"key '{key}.unit' must be one of {', '.join(UNITS[key])}, got {unit!r}")
        return ColumnRef(text(f"{key}.column", v.get("column")), unit)

    def names(key):
        v = raw.get(key) or []
        if not isinstance(v, list):
            raise bad(f"key {key!r} must be a list of column names, got {v!r}")
        return [text(f"{key}[{i}]", c) for i, c in enumerate(v)]

    oracle = raw.get("oracle")
    if oracle is not None:
        if not isinstance(oracle, dict):
            raise bad(f"key 'oracle' must be {{median, mean}}, got {oracle!r}")
        extra = [k for k in oracle if k not in ORACLE_KEYS]
        if extra:
            raise bad(f"unknown key {'oracle.' + str(extra[0])!r}; allowed: median, mean")
        oracle = {k: text(f"oracle.{k}", oracle.get(k)) for k in ORACLE_KEYS}
    fmt = raw.get("format")
    if fmt is not None and fmt not in ("csv", "parquet"):
        raise bad(f"key 'format' must be csv or parquet, got {fmt!r}")
    sep = raw.get("sep", ",")
    if not isinstance(sep, str) or len(sep) != 1:
        raise bad(f"key 'sep' must be one character, got {sep!r}")
    spec = DatasetSpec(
        path=text("path", raw["path"]), label=ref("label"),
        name=str(raw.get("name") or (source.stem if source is not None else "csv")),
        format=fmt, sep=sep, encoding=str(raw.get("encoding", "utf-8")),
        user=text("user", raw["user"]) if raw.get("user") is not None else None,
        item=text("item", raw["item"]) if raw.get("item") is not None else None,
        duration=ref("duration"), timestamp=ref("timestamp"),
        categorical=names("categorical"), numeric=names("numeric"), oracle=oracle,
        source=source)
    _check_roles(spec, bad)
    return spec


def _roles(spec: DatasetSpec) -> List[Tuple[str, str]]:
    """(source column, output column) pairs."""
    pairs = [(spec.label.column, LABEL)]
    pairs += [(spec.user, USER), (spec.item, ITEM)]
    pairs += [(spec.duration.column if spec.duration else None, DURATION),
              (spec.timestamp.column if spec.timestamp else None, TIMESTAMP)]
    if spec.oracle:
        pairs += [(spec.oracle["median"], ORACLE_MEDIAN), (spec.oracle["mean"], ORACLE_MEAN)]
    pairs += [(c, c) for c in [*spec.categorical, *spec.numeric]]
    return [(s, o) for s, o in pairs if s is not None]


CANONICAL = (USER, ITEM, LABEL, DURATION, TIMESTAMP, ORACLE_MEDIAN, ORACLE_MEAN)


def _check_roles(spec: DatasetSpec, bad) -> None:
    for key in ("categorical", "numeric"):
        for c in getattr(spec, key):
            if c in CANONICAL:
                raise bad(f"{key} column {c!r} has a canonical name; give it its role with "
                          "the user/item/label/duration/timestamp/oracle keys instead")
    seen: Dict[str, str] = {}
    outs: Dict[str, str] = {}
    for src, out in _roles(spec):
        if src in seen:
            raise bad(f"column {src!r} has two roles ({seen[src]} and {out}); a column may "
                      "have one role (a label that is also a feature would leak it)")
        if out in outs:
            raise bad(f"feature column {out!r} clashes with the canonical column of the same "
                      f"name (filled from {outs[out]!r}); rename one of them")
        seen[src], outs[out] = out, src


def load(*, data_dir=None, spec=None, rows: Optional[int] = None, seed: int = 0,
         strict: bool = False) -> Dataset:
    """Load the file a spec describes (``spec``: a path or a :class:`DatasetSpec`)."""
    if spec is None:
        raise DataError("--dataset csv needs --spec FILE (a YAML or JSON dataset spec)")
    s = spec if isinstance(spec, DatasetSpec) else read_spec(spec)
    data_file = s.data_file(data_dir)
    if not data_file.is_file():
        raise DataError("data file named by the spec not found"
                        + (f" (spec {s.source})" if s.source else ""), file=str(data_file))
    params = {"spec": s.to_dict(), "rows": rows, "strict": strict}
    return cache.cached_load("spec", VERSION, [data_file], params,
                             lambda: build(s, data_file, rows=rows, strict=strict))


def build(spec: DatasetSpec, data_file: Path, *, rows: Optional[int] = None,
          strict: bool = False) -> Dataset:
    """Read ``data_file`` as ``spec`` says (no cache)."""
    report = LoadReport()
    cols = [Column(spec.label.column, role="watch time")]
    if spec.user:
        cols.append(Column(spec.user, "id", role="user"))
    if spec.item:
        cols.append(Column(spec.item, "id", role="item"))
    if spec.duration:
        cols.append(Column(spec.duration.column, missing="keep"))
    if spec.timestamp:
        kind = "str" if spec.timestamp.unit == "datetime" else "float"
        cols.append(Column(spec.timestamp.column, kind, role="timestamp"))
    if spec.oracle:
        cols += [Column(c, missing="keep") for c in spec.oracle.values()]
    cols += [Column(c, "cat", missing="keep") for c in spec.categorical]
    cols += [Column(c, missing="keep") for c in spec.numeric]
    if spec.file_format(data_file) == "parquet":
        f = read_parquet(data_file, cols, rows=rows, strict=strict, report=report, main=True)
    else:
        f = read_csv(data_file, cols, sep=spec.sep, rows=rows, strict=strict, report=report,
                     encoding=spec.encoding, main=True)
    lab = spec.label.column
    f = drop_rows(f, f[lab].to_numpy() < 0, "negative watch time", file=data_file, column=lab,
                  report=report, strict=strict,
                  describe=lambda r: f"negative watch time {r[lab]:g} {spec.label.unit}")
    if spec.duration:
        dc = spec.duration.column
        f = drop_rows(f, f[dc].to_numpy() < 0, f"negative duration ({dc})", file=data_file,
                      column=dc, report=report, strict=strict,
                      describe=lambda r: f"negative duration {r[dc]:g} {spec.duration.unit}")
    ts = None
    if spec.timestamp:
        tc = spec.timestamp.column
        if spec.timestamp.unit == "datetime":
            parsed = pd.to_datetime(pd.Series(f[tc].array), errors="coerce", utc=True,
                                    format="mixed")
            f = drop_rows(f, parsed.isna().to_numpy(), f"bad timestamp ({tc})",
                          file=data_file, column=tc, report=report, strict=strict,
                          describe=lambda r: f"not a date/time: {shown(r[tc])}")
            parsed = parsed[parsed.notna()].reset_index(drop=True)
            ts = ((parsed - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy()
        else:
            ts = f[tc].to_numpy() * _SCALE[spec.timestamp.unit]
    out = {}
    if spec.user:
        out[USER] = f[spec.user].array
    if spec.item:
        out[ITEM] = f[spec.item].array
    out[LABEL] = f[lab].to_numpy() * _SCALE[spec.label.unit]
    if spec.duration:
        out[DURATION] = f[spec.duration.column].to_numpy() * _SCALE[spec.duration.unit]
        report.note("with duration missing (NaN)", int(np.isnan(out[DURATION]).sum()))
    if ts is not None:
        out[TIMESTAMP] = ts
    if spec.oracle:
        scale = _SCALE[spec.label.unit]
        out[ORACLE_MEDIAN] = f[spec.oracle["median"]].to_numpy() * scale
        out[ORACLE_MEAN] = f[spec.oracle["mean"]].to_numpy() * scale
    for c in [*spec.categorical, *spec.numeric]:
        out[c] = f[c].array
    return Dataset(spec.name, pd.DataFrame(out, copy=False), list(spec.categorical),
                   list(spec.numeric), report)
