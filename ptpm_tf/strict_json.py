"""JSON that strict parsers accept: a non-finite number (an undefined metric, e.g. XAUC of
a test split whose labels are all equal) is written as ``null``, never as the bare
``NaN`` / ``Infinity`` that Python's ``json`` emits by default."""
from __future__ import annotations

import json
import math
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
