"""Name -> loader, the one place every command gets its dataset (and its split)."""
from __future__ import annotations

import numbers
from typing import Callable, Dict, Optional, Tuple

from ptpm_tf.data.dataset import Dataset, DataError
from ptpm_tf.data.splits import Split, split_dataset

DATASETS = ("simulator", "kuairec", "kuairand", "wechat21", "cikm16", "csv")


def load_dataset(name: str, *, data_dir: Optional[str] = None, spec: Optional[str] = None,
                 rows: Optional[int] = None, seed: int = 0, strict: bool = False) -> Dataset:
    """Load dataset ``name`` as canonical rows (see :mod:`ptpm_tf.data.dataset`).

    ``data_dir``: the dataset's folder, or its main file (default ``data/<name>``); for
    ``csv`` it replaces the folder of the spec's ``path``. ``spec``: the dataset spec file
    (``csv`` only). ``rows`` caps the number of rows (the file loaders keep the first rows
    read; the simulator generates exactly that many). ``seed`` is used only where rows are
    sampled (the simulator). ``strict`` makes the first bad row an error instead of a
    counted drop. File datasets are cached as Parquet after the first parse
    (:mod:`ptpm_tf.data.cache`).
    """
    loaders: Dict[str, Callable[..., Dataset]] = _loaders()
    if name not in loaders:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, numbers.Integral)
                             or rows < 1):
        raise DataError(f"rows must be a positive integer, got {rows!r}")
    ds = loaders[name](data_dir=data_dir, spec=spec, rows=rows, seed=seed, strict=strict)
    if len(ds) == 0:
        raise DataError(f"dataset {name!r}: no rows left after dropping bad ones "
                        f"({ds.report.summary()})")
    return ds


def _loaders() -> Dict[str, Callable[..., Dataset]]:
    def sim(*, data_dir, spec, rows, seed, strict):
        from ptpm_tf.data import simulator  # imported on use: the file loaders do not need it

        return simulator.simulate(rows=simulator.DEFAULT_ROWS if rows is None else rows,
                                  seed=seed)

    from ptpm_tf.data import cikm16, kuairand, kuairec, spec as spec_file, wechat21

    return {"simulator": sim, "kuairec": kuairec.load, "kuairand": kuairand.load,
            "wechat21": wechat21.load, "cikm16": cikm16.load, "csv": spec_file.load}


def load(data, seed: int = 0) -> Dataset:
    """The dataset a :class:`ptpm_tf.config.DataConfig` names (``strict`` honoured), with
    the viewing-history features when ``history_features`` is set."""
    ds = load_dataset(data.dataset, data_dir=data.data_dir, spec=data.spec, rows=data.rows,
                      seed=seed, strict=data.strict)
    if data.history_features:
        from ptpm_tf.data.history import add_history_features
        ds = add_history_features(ds)
    return ds


def load_and_split(data, seed: int = 0) -> Tuple[Dataset, Split]:
    """:func:`load`, then the split ``data.split`` with ``seed`` (by time when the data
    has a timestamp): the one way every command gets its data."""
    dataset = load(data, seed)
    return dataset, split_dataset(dataset, data.split, seed=seed)
