#!/usr/bin/env python3
"""Write a KuaiRec-format folder with a big_matrix.csv of N rows (default 12,500,000).

    python scripts/make_kuairec_scale.py --rows 12500000 --out /tmp/kuairec-scale

The file (about 1 GB at 12.5M rows) is for load measurements only; do not commit it.
To measure cold/warm load time and peak RSS use `python -m ptpm_tf.benchmarks.scale`.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ptpm_tf.benchmarks.scale import DEFAULT_ROWS, make_kuairec_scale  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    ap.add_argument("--out", default="/tmp/kuairec-scale")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(make_kuairec_scale(a.out, rows=a.rows, seed=a.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
