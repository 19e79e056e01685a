"""Train / validation / test splits: by time where there is a timestamp, else seeded random."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ptpm_tf.data.dataset import TIMESTAMP, Dataset, DataError


@dataclasses.dataclass
class Split:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    method: str
    fractions: tuple
    seed: int

    def describe(self) -> dict:
        d = {"method": self.method, "fractions": list(self.fractions), "seed": self.seed,
             "rows": {"train": len(self.train), "validation": len(self.validation),
                      "test": len(self.test)}}
        if self.method == "time":
            d["boundaries"] = {
                "validation_from": float(self.validation[TIMESTAMP].min()),
                "test_from": float(self.test[TIMESTAMP].min())}
        return d

    def save_indices(self, path: Path) -> None:
        """Write the row indices of each part, so a run can be repeated exactly."""
        np.savez_compressed(path, train=self.train.index.to_numpy(),
                            validation=self.validation.index.to_numpy(),
                            test=self.test.index.to_numpy())
        Path(str(path) + ".json").write_text(json.dumps(self.describe(), indent=2))


def split_dataset(ds: Dataset, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                  seed: int = 0, method: str = "auto") -> Split:
    """Split rows into train/validation/test.

    ``method='auto'`` splits by ``timestamp`` (oldest rows train, newest test) when the
    column exists, else by a seeded random permutation. Ties in time keep file order.
    """
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(f <= 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise DataError(f"split fractions must be three positive numbers summing to 1, got {fr}")
    n = len(ds.frame)
    if n < 3:
        raise DataError(f"dataset {ds.name!r} has {n} rows; at least 3 are needed to split")
    if method == "auto":
        method = "time" if TIMESTAMP in ds.frame.columns else "random"
    if method == "time":
        order = np.argsort(ds.frame[TIMESTAMP].to_numpy(), kind="stable")
    elif method == "random":
        order = np.random.default_rng(seed).permutation(n)
    else:
        raise DataError(f"unknown split method {method!r} (auto, time, random)")
    n_train = max(1, int(round(fr[0] * n)))
    n_val = max(1, int(round(fr[1] * n)))
    n_train = min(n_train, n - 2)
    n_val = min(n_val, n - n_train - 1)
    idx = ds.frame.index.to_numpy()[order]
    parts = np.split(idx, [n_train, n_train + n_val])
    train, val, test = (ds.frame.loc[p] for p in parts)
    return Split(train, val, test, method, fr, seed)
