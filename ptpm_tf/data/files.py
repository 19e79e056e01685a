"""Finding a dataset's files in its folder by documented glob patterns.

Each loader lists, per file role, patterns tried in order (e.g. ``big_matrix.csv`` then
``big_matrix*.csv``): the first pattern with a match wins, so the official file name is
preferred over a sample's. ``--data-dir`` may also name the main file itself; side files
are then looked for beside it.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ptpm_tf.data.dataset import DataError

#: folder used when no --data-dir is given: ``data/<dataset name>`` under the working dir
DEFAULT_ROOT = Path("data")


def dataset_location(name: str, data_dir, spec=None) -> Tuple[Path, Optional[Path]]:
    """(folder, main file or None) for ``--data-dir`` (a folder or the main file itself).
    The named formats have fixed columns: a ``spec`` (only for ``--dataset csv``) is an
    error."""
    if spec is not None:
        raise DataError("--spec is only used with --dataset csv")
    path = Path(data_dir) if data_dir is not None else DEFAULT_ROOT / name
    if path.is_file():
        return path.parent, path
    if not path.is_dir():
        hint = "" if data_dir is not None else " (no --data-dir given, so the default)"
        raise DataError(f"data folder for {name!r} not found{hint}; pass --data-dir",
                        file=str(path))
    return path, None


def find_files(folder: Path, patterns: Sequence[str], what: str, *, required: bool = True,
               many: bool = False) -> List[Path]:
    """Files in ``folder`` matching the first pattern that matches anything (sorted).

    ``many=False`` returns at most one file (the first match). With ``required`` a miss
    raises :class:`DataError` naming the folder and the patterns.
    """
    for pattern in patterns:
        hits = sorted(p for p in folder.glob(pattern) if p.is_file())
        if hits:
            return hits if many else hits[:1]
    if required:
        raise DataError(f"no {what} file: nothing matches {', '.join(patterns)}",
                        file=str(folder))
    return []


def find_file(folder: Path, patterns: Sequence[str], what: str,
              required: bool = True) -> Optional[Path]:
    """The one file for a role (see :func:`find_files`), or None if optional and absent."""
    hits = find_files(folder, patterns, what, required=required)
    return hits[0] if hits else None
