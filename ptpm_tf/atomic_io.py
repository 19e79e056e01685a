"""Files that readers never see half-written, and JSON that strict parsers accept.

Every file or directory the package publishes (run directories, prepared data, exports,
backups, benchmark records) goes through here:

- :func:`write_atomic` / :func:`write_json`: a temporary file beside the target, fsync,
  then ``rename(2)``; a reader sees the old file or the new one;
- :func:`staging_dir` / :func:`install_dir`: the same for a whole directory;
- :func:`fsync_tree` / :func:`fsync_dir`: flush a finished directory before it is renamed
  into place, so the rename publishes data that is on disk;
- :func:`dumps`: a non-finite number (an undefined metric, e.g. XAUC of a split whose
  labels are all equal) is written as ``null``, never as the bare ``NaN`` / ``Infinity``
  that Python's ``json`` emits by default.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (dicts, lists, tuples and
    NumPy scalars and arrays are walked; NumPy values become Python ones)."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return finite(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, **kwargs) -> str:
    """``json.dumps`` of :func:`finite` ``(value)``; raises rather than write ``NaN``."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)


def write_atomic(path: Path, data) -> None:
    """Write ``data`` (str or bytes) to ``path`` so that readers see the old file or the new
    one, never a partial one (a temporary file beside it, fsync, then rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, value: Any, **kwargs) -> None:
    """:func:`write_atomic` of :func:`dumps` ``(value, **kwargs)``, creating the parent
    directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, dumps(value, **kwargs))


def staging_dir(target: Path) -> Path:
    """A fresh empty directory beside ``target`` (same file system, so it can be renamed
    onto ``target`` by :func:`install_dir`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))


def install_dir(staging: Path, target: Path) -> None:
    """Make the complete directory ``staging`` appear as ``target``.

    A reader sees the previous ``target``, or (for the instant between two renames) none,
    or the new one: never a half-written directory. The previous ``target`` is moved aside
    and deleted after the new one is in place.
    """
    staging, target = Path(staging), Path(target)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rename(target, old / target.name)
    os.rename(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root``."""
    for dirpath, _, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (a no-op where the file system cannot)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
