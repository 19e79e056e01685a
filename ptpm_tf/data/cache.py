"""Columnar cache of loaded datasets: parse a CSV once, then read Parquet.

An entry is the finished canonical :class:`Dataset` of one loader call: ``NAME.parquet``
(the frame, written in row groups) plus ``NAME.json`` (feature lists, LoadReport, and the
fingerprint it was built from). ``NAME`` is ``<loader>-<hash>`` where the hash covers the
absolute paths of all source files and the call's parameters (``rows``, spec, ...), so one
folder can hold entries for many sources.

The entry is used only if its fingerprint still matches: the cache layout version, the
loader's version, and each source's size and mtime (ns). Otherwise it is rebuilt and
overwritten. The JSON is written last, so a killed write leaves no valid-looking entry.

Where: ``$PTPM_TF_CACHE_DIR`` if set; else ``.ptpmcache/`` beside the main source file if
that folder is writable (a folder with no write bits counts as read-only even for root,
e.g. the read-only shared data); else ``$XDG_CACHE_HOME/ptpm-tf`` (``~/.cache/ptpm-tf``).
``PTPM_TF_NO_CACHE=1`` turns the cache off.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from ptpm_tf.data.dataset import Dataset, LoadReport

CACHE_ENV = "PTPM_TF_CACHE_DIR"
NO_CACHE_ENV = "PTPM_TF_NO_CACHE"
LAYOUT_VERSION = 1
_ROW_GROUP = 1 << 20


def _writable(folder: Path) -> bool:
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) and \
        os.access(folder, os.W_OK)


def cache_dirs(main_source: Path) -> List[Path]:
    """Candidate cache folders for a source, best first."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return [Path(env)]
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ptpm-tf"
    folder = main_source.parent
    return ([folder / ".ptpmcache"] if _writable(folder) else []) + [user]


def fingerprint(sources: Sequence[Path], loader: str, version: int) -> Dict:
    """What an entry must match to be valid: versions plus each source's size and mtime."""
    files = []
    for p in sources:
        st = Path(p).stat()
        files.append({"path": str(Path(p).resolve()), "size": st.st_size,
                      "mtime_ns": st.st_mtime_ns})
    return {"layout": LAYOUT_VERSION, "loader": loader, "version": version, "sources": files}


def entry_name(loader: str, sources: Sequence[Path], params: Dict) -> str:
    key = json.dumps({"sources": [str(Path(p).resolve()) for p in sources],
                      "params": params}, sort_keys=True, default=str)
    return f"{loader}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def cached_load(loader: str, version: int, sources: Sequence[Path], params: Dict,
                build: Callable[[], Dataset]) -> Dataset:
    """The dataset from a valid cache entry, else ``build()`` it and store it.

    ``sources`` are all files the dataset is made from (main file first); ``params`` all
    arguments that change the result.
    """
    from ptpm_tf.data.reader import chunking

    if chunking() or os.environ.get(NO_CACHE_ENV, "") not in ("", "0"):
        return build()
    sources = [Path(p) for p in sources]
    name = entry_name(loader, sources, params)
    fp = fingerprint(sources, loader, version)
    dirs = cache_dirs(sources[0])
    for d in dirs:
        ds = read_entry(d / name, fp)
        if ds is not None:
            return ds
    ds = build()
    for d in dirs:
        try:
            write_entry(d / name, ds, fp, params)
            break
        except OSError as e:
            print(f"ptpm-tf: cannot write the data cache in {d}: {e}", file=sys.stderr)
    return ds


def read_entry(base: Path, fp: Dict) -> Optional[Dataset]:
    """The Dataset stored at ``base`` (.json + .parquet) if its fingerprint is ``fp``."""
    meta_path, data_path = base.with_suffix(".json"), base.with_suffix(".parquet")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("fingerprint") != fp or not data_path.is_file():
        return None
    try:
        table = pq.read_table(data_path)
    except (OSError, pa.ArrowInvalid):
        return None
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    del table
    d = meta["dataset"]
    return Dataset(name=d["name"], frame=frame, categorical=d["categorical"],
                   numeric=d["numeric"], report=LoadReport(**d["report"]))


def write_entry(base: Path, ds: Dataset, fp: Dict, params: Dict) -> None:
    """Store ``ds`` at ``base``: Parquet in row groups (bounded memory), then the JSON."""
    base.parent.mkdir(parents=True, exist_ok=True)
    data_path, meta_path = base.with_suffix(".parquet"), base.with_suffix(".json")
    meta_path.unlink(missing_ok=True)
    tmp = data_path.with_name(data_path.name + f".tmp{os.getpid()}")
    frame = ds.frame
    try:
        writer = None
        for start in range(0, max(len(frame), 1), _ROW_GROUP):
            part = pa.Table.from_pandas(frame.iloc[start:start + _ROW_GROUP],
                                        preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp, part.schema)
            writer.write_table(part)
        writer.close()
        os.replace(tmp, data_path)
    finally:
        tmp.unlink(missing_ok=True)
    meta = {"fingerprint": fp, "params": params,
            "dataset": {"name": ds.name, "categorical": list(ds.categorical),
                        "numeric": list(ds.numeric),
                        "report": dataclasses.asdict(ds.report)}}
    tmp_meta = meta_path.with_name(meta_path.name + f".tmp{os.getpid()}")
    tmp_meta.write_text(json.dumps(meta, indent=1, default=str))
    os.replace(tmp_meta, meta_path)
