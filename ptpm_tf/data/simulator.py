"""The built-in simulator: the default dataset, with a known conditional distribution per row.

Generative process (all of it seeded, vectorised NumPy):

1. **Categories** (``N_CATEGORIES`` = 20) have a popularity, a log-median duration, an
   engagement effect and a replay effect (music-like categories get replayed, others not).
2. **Items** belong to a category; each has a latent taste vector (its category's centroid
   plus its own noise), a hidden quality, a duration in seconds (3 s plus a log-normal
   around the category's median: median ~20 s, long tail to several minutes), an upload
   age and an exposure weight. Observable: ``category``, ``duration``,
   ``item_popularity`` (a noisy correlate of quality) and ``upload_age_days`` (age at
   the time of the view).
3. **Users** have a latent taste vector, a hidden **viewer type** -- quick skipper,
   completer, re-watcher or sampler (watches a part and moves on) -- and a personal
   patience. Observable: ``user_activity`` (0-3, equal to the viewer type's index with
   probability 0.6, otherwise random) and ``user_tenure_days`` (a noisy correlate of
   patience).
4. **Rows**: a user and an item drawn by their exposure weights (every user and item at
   least twice when there are enough rows), a ``timestamp`` uniform over 30 days. The
   engagement ``s`` of the row is the user-item **affinity** (dot product of the taste
   vectors) plus item quality, the category effect, the user's patience and freshness.
5. **Watch time** ``w`` (float seconds) is a four-component mixture whose weights are a
   softmax of the viewer type, ``s``, the log-duration and the category:

   - quick skip: uniform on ``[0, skip_max]``, ``skip_max = min(2.5 s, duration / 2)``;
   - partial watch: ``duration * X``, ``X ~ Kumaraswamy(a, b)`` on (0, 1), with
     ``F(x) = 1 - (1 - x^a)^b``; the shape moves toward 1 with engagement;
   - completion: a point mass at exactly ``duration``;
   - replay: ``duration * (1 + E)``, ``E ~ Exponential(mean replay_mean)``.

**The oracle.** Every component has a closed-form CDF and mean, so the exact conditional
distribution of ``w`` given everything the simulator knows is available per row
(:class:`Mixture`). ``oracle_mean`` is its mean (closed form) and ``oracle_median`` its
median ``inf{w : F(w) >= 1/2}``: exactly ``duration`` when the completion spike straddles
1/2, closed form in the replay tail, vectorised bisection below the duration. Given the
hidden state, no model beats ``oracle_median`` on expected MAE nor ``oracle_mean`` on
expected squared error; their MAE and XAUC are the reference limit printed next to every
model. (XAUC has no exactly optimal point prediction: ranking by the conditional median
can score slightly higher than ranking by the mean.)
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import pandas as pd

from ptpm_tf.data.dataset import (DURATION, ITEM, LABEL, ORACLE_MEAN, ORACLE_MEDIAN,
                                  TIMESTAMP, USER, Dataset, LoadReport)

DEFAULT_ROWS = 100_000
N_CATEGORIES = 20
LATENT_DIM = 8
SKIP_SECONDS = 2.5
DAYS = 30
START = 1_704_067_200.0  # 2024-01-01T00:00:00Z
CSV_NAME = "simulator.csv"
SPEC_NAME = "simulator.spec.json"

CATEGORICAL = [USER, ITEM, "category", "user_activity"]
NUMERIC = [DURATION, "user_tenure_days", "item_popularity", "upload_age_days"]

VIEWER_TYPES = ("skipper", "completer", "rewatcher", "sampler")
VIEWER_SHARE = np.array([0.25, 0.30, 0.15, 0.30])
# Per viewer type: logits of skip, completion and replay (partial watch is 0), the
# partial-watch depth (shifts the Kumaraswamy shape toward 1) and the mean replay length
# in durations.
VIEWER_EFFECTS = np.array([
    # skip  complete replay  depth  replay_mean
    [0.0, -2.1, -3.1, -0.8, 0.25],   # skipper
    [-2.4, -0.4, -1.9, 0.9, 0.35],   # completer
    [-1.8, -1.1, -0.1, 0.3, 1.20],   # rewatcher
    [-1.2, -2.5, -2.7, -0.2, 0.30],  # sampler
])

def _lgamma(x: np.ndarray) -> np.ndarray:
    """log Gamma(x) for x > 0: Stirling's series at x + 8, shifted back by the recurrence
    Gamma(x + 1) = x Gamma(x) (absolute error < 1e-12)."""
    x = np.asarray(x, dtype=np.float64)
    z = x + 8.0
    prod = x.copy()
    for k in range(1, 8):
        prod *= x + k
    r = 1.0 / (z * z)
    series = (1 / 12 - r * (1 / 360 - r * (1 / 1260 - r * (1 / 1680 - r / 1188)))) / z
    return (z - 0.5) * np.log(z) - z + 0.5 * np.log(2 * np.pi) + series - np.log(prod)


@dataclasses.dataclass(frozen=True)
class Mixture:
    """Per-row parameters of the watch-time mixture (equal-length float64 arrays).

    Component weights ``p_skip + p_partial + p_complete + p_replay == 1``; the skip is
    uniform on ``[0, skip_max]`` with ``skip_max <= duration``.
    """

    duration: np.ndarray
    skip_max: np.ndarray
    p_skip: np.ndarray
    p_partial: np.ndarray
    p_complete: np.ndarray
    p_replay: np.ndarray
    kum_a: np.ndarray
    kum_b: np.ndarray
    replay_mean: np.ndarray

    def __len__(self) -> int:
        return len(self.duration)

    def take(self, idx) -> "Mixture":
        """The mixtures of rows ``idx`` (repeat an index to resample one row many times)."""
        return Mixture(**{f.name: getattr(self, f.name)[idx]
                          for f in dataclasses.fields(self)})

    def sample(self, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        """One draw per row: (watch time in seconds, component).

        Components: 0 quick skip, 1 partial watch, 2 completion, 3 replay.
        """
        n = len(self)
        u_comp, u_val = rng.random(n), rng.random(n)
        edge = self.p_skip.copy()
        comp = (u_comp >= edge).astype(np.int64)
        for p in (self.p_partial, self.p_complete):
            edge += p
            comp += u_comp >= edge
        x = np.power(-np.expm1(np.log1p(-u_val) / self.kum_b), 1.0 / self.kum_a)
        w = np.select(
            [comp == 0, comp == 1, comp == 2],
            [u_val * self.skip_max, self.duration * x, self.duration],
            self.duration * (1.0 - self.replay_mean * np.log1p(-u_val)))
        return w, comp

    def cdf(self, w: np.ndarray) -> np.ndarray:
        """P(watch time <= w), row by row."""
        w = np.asarray(w, dtype=np.float64)
        past = np.maximum(w / self.duration - 1.0, 0.0)
        return self._cdf_below(np.clip(w / self.duration, 0.0, 1.0)) + np.where(
            w >= self.duration,
            self.p_complete - self.p_replay * np.expm1(-past / self.replay_mean), 0.0)

    def mean(self) -> np.ndarray:
        """Exact conditional mean (closed form; Kumaraswamy mean = b B(1 + 1/a, b))."""
        a, b = self.kum_a, self.kum_b
        kum_mean = np.exp(np.log(b) + _lgamma(1.0 + 1.0 / a) + _lgamma(b)
                          - _lgamma(1.0 + 1.0 / a + b))
        return (self.p_skip * self.skip_max / 2
                + self.duration * (self.p_partial * kum_mean + self.p_complete
                                   + self.p_replay * (1.0 + self.replay_mean)))

    def median(self, iterations: int = 48, chunk: int = 1 << 18) -> np.ndarray:
        """Exact conditional median ``inf{w : F(w) >= 1/2}``, row by row.

        ``F(duration-) = p_skip + p_partial`` and ``F(duration) = F(duration-) + p_complete``:
        if 1/2 lies in that jump the median is the duration itself; above it, the
        exponential replay tail inverts in closed form; below it, ``F`` is continuous on
        ``[0, duration)`` and is inverted by ``iterations`` steps of vectorised bisection on
        ``w / duration`` (relative error 2^-iterations), ``chunk`` rows at a time.
        """
        d = self.duration
        below = self.p_skip + self.p_partial
        med = d.copy()
        tail = below + self.p_complete < 0.5
        if tail.any():
            q = (0.5 - below[tail] - self.p_complete[tail]) / self.p_replay[tail]
            med[tail] = d[tail] * (1.0 - self.replay_mean[tail] * np.log1p(-q))
        head = np.flatnonzero(below >= 0.5)
        for start in range(0, head.size, chunk):
            rows = head[start:start + chunk]
            sub = self.take(rows)
            lo, hi = np.zeros(rows.size), np.ones(rows.size)
            for _ in range(iterations):
                mid = 0.5 * (lo + hi)
                ok = sub._cdf_below(mid) >= 0.5
                hi = np.where(ok, mid, hi)
                lo = np.where(ok, lo, mid)
            med[rows] = sub.duration * hi
        return med

    def _cdf_below(self, x: np.ndarray) -> np.ndarray:
        """P(watch time <= x * duration) for x in [0, 1]: the skip and partial components."""
        with np.errstate(divide="ignore"):  # log1p(-1) = -inf at x = 1 gives kum = 1
            kum = -np.expm1(self.kum_b * np.log1p(-np.power(x, self.kum_a)))
        return (self.p_skip * np.minimum(x * self.duration / self.skip_max, 1.0)
                + self.p_partial * kum)


@dataclasses.dataclass
class Simulation:
    """A simulated dataset plus its hidden truth, row by row."""

    dataset: Dataset
    mixture: Mixture
    viewer_type: np.ndarray  # index into VIEWER_TYPES
    component: np.ndarray  # the drawn component: 0 skip, 1 partial, 2 completion, 3 replay


def default_sizes(rows: int) -> Tuple[int, int]:
    """(users, items) for ``rows`` rows: ~rows/60 and ~rows/40 with minimums 50 and 80,
    capped at rows/2 so that every user and item appears at least twice."""
    cap = max(1, rows // 2)
    return min(max(50, rows // 60), cap), min(max(80, rows // 40), cap)


def simulate(rows: int = DEFAULT_ROWS, seed: int = 0, n_users: Optional[int] = None,
             n_items: Optional[int] = None) -> Dataset:
    """Simulate ``rows`` views as a canonical :class:`Dataset` with oracle columns."""
    return simulate_with_truth(rows, seed, n_users, n_items).dataset


def simulate_with_truth(rows: int = DEFAULT_ROWS, seed: int = 0,
                        n_users: Optional[int] = None,
                        n_items: Optional[int] = None) -> Simulation:
    """Like :func:`simulate`, plus the hidden truth: mixture, viewer type, component."""
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    du, di = default_sizes(rows)
    n_users, n_items = n_users or du, n_items or di
    rng_cat, rng_item, rng_user, rng_row, rng_watch = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5))

    # Categories.
    cat_share = rng_cat.dirichlet(np.full(N_CATEGORIES, 2.0))
    cat_log_duration = np.log(17.0) + rng_cat.normal(0.0, 0.45, N_CATEGORIES)
    cat_engage = rng_cat.normal(0.0, 0.5, N_CATEGORIES)
    cat_replay = rng_cat.normal(0.0, 0.6, N_CATEGORIES)
    cat_centroid = rng_cat.normal(0.0, 1.0, (N_CATEGORIES, LATENT_DIM))

    # Items.
    category = rng_item.choice(N_CATEGORIES, n_items, p=cat_share)
    item_vec = np.sqrt(0.5) * (cat_centroid[category]
                               + rng_item.normal(0.0, 1.0, (n_items, LATENT_DIM)))
    quality = rng_item.normal(0.0, 1.0, n_items)
    duration = 3.0 + np.exp(cat_log_duration[category] + rng_item.normal(0.0, 0.75, n_items))
    log_popularity = 0.8 * quality + rng_item.normal(0.0, 0.6, n_items)
    item_popularity = np.exp(5.0 + log_popularity)
    age0 = rng_item.exponential(45.0, n_items)
    item_weight = np.exp(0.5 * log_popularity)

    # Users.
    vtype = rng_user.choice(len(VIEWER_TYPES), n_users, p=VIEWER_SHARE)
    user_vec = rng_user.normal(0.0, 1.0 / np.sqrt(LATENT_DIM), (n_users, LATENT_DIM))
    patience = rng_user.normal(0.0, 0.4, n_users)
    honest = rng_user.random(n_users) < 0.6
    user_activity = np.where(honest, vtype, rng_user.integers(0, len(VIEWER_TYPES), n_users))
    user_tenure = np.exp(5.0 + 1.2 * patience + rng_user.normal(0.0, 0.6, n_users))
    user_weight = rng_user.lognormal(0.0, 0.6, n_users)

    # Rows.
    u = _draw_ids(rng_row, rows, user_weight)
    i = _draw_ids(rng_row, rows, item_weight)
    t = np.sort(rng_row.uniform(0.0, DAYS * 86400.0, rows))
    age = age0[i] + t / 86400.0
    affinity = _rowwise_dot(user_vec, u, item_vec, i)
    c, d, vt = category[i], duration[i], vtype[u]
    eff = VIEWER_EFFECTS[vt]
    s = (0.8 * affinity + 0.5 * quality[i] + cat_engage[c] + patience[u]
         + 0.4 * np.exp(-age / 20.0) - 0.2)
    ld = np.log(d / 20.0)
    logits = np.stack([eff[:, 0] - 0.9 * s + 0.25 * ld,
                       np.zeros(rows),
                       eff[:, 1] + 0.8 * s - 0.7 * ld,
                       eff[:, 2] + 0.9 * s - 0.9 * ld + cat_replay[c]])
    p = np.exp(logits - logits.max(axis=0))
    p /= p.sum(axis=0)
    depth = eff[:, 3] + 0.6 * s - 0.3 * ld
    mix = Mixture(duration=d, skip_max=np.minimum(SKIP_SECONDS, d / 2),
                  p_skip=p[0], p_partial=p[1], p_complete=p[2], p_replay=p[3],
                  kum_a=1.3 * np.exp(0.35 * depth), kum_b=1.4 * np.exp(-0.5 * depth),
                  replay_mean=eff[:, 4] * np.exp(0.25 * s + 0.3 * cat_replay[c]))
    watch, component = mix.sample(rng_watch)

    frame = pd.DataFrame({
        TIMESTAMP: START + t,
        USER: u.astype(np.int64),
        ITEM: i.astype(np.int64),
        "category": c.astype(np.int64),
        DURATION: d,
        "user_activity": user_activity[u].astype(np.int64),
        "user_tenure_days": user_tenure[u],
        "item_popularity": item_popularity[i],
        "upload_age_days": age,
        LABEL: watch,
        ORACLE_MEDIAN: mix.median(),
        ORACLE_MEAN: mix.mean(),
    })
    ds = Dataset("simulator", frame, categorical=list(CATEGORICAL), numeric=list(NUMERIC),
                 report=LoadReport(rows_read=len(frame)))  # generated rows: none dropped
    return Simulation(ds, mix, vt, component)


def _draw_ids(rng: np.random.Generator, rows: int, weight: np.ndarray) -> np.ndarray:
    """Ids for ``rows`` rows by ``weight``, each id at least twice if rows allow, shuffled."""
    n = len(weight)
    reps = min(2, rows // n)
    counts = reps + rng.multinomial(rows - reps * n, weight / weight.sum())
    return rng.permutation(np.repeat(np.arange(n), counts))


def _rowwise_dot(a: np.ndarray, ia: np.ndarray, b: np.ndarray, ib: np.ndarray,
                 chunk: int = 1 << 20) -> np.ndarray:
    """``sum(a[ia] * b[ib], axis=1)`` in chunks, so 12.5M rows stay small in memory."""
    out = np.empty(len(ia))
    for lo in range(0, len(ia), chunk):
        out[lo:lo + chunk] = np.einsum("ij,ij->i", a[ia[lo:lo + chunk]], b[ib[lo:lo + chunk]])
    return out


def write_simulation(ds: Dataset, out_dir: Union[str, Path]) -> Tuple[Path, Path]:
    """Write ``simulator.csv`` (all columns) and ``simulator.spec.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, spec_path = out / CSV_NAME, out / SPEC_NAME
    ds.frame.to_csv(csv_path, index=False)
    spec = {
        "name": ds.name,
        "path": CSV_NAME,
        "label": {"column": LABEL, "unit": "s"},
        "user": USER,
        "item": ITEM,
        "duration": {"column": DURATION, "unit": "s"},
        "timestamp": {"column": TIMESTAMP, "unit": "s"},
        "categorical": [c for c in ds.categorical if c not in (USER, ITEM)],
        "numeric": [c for c in ds.numeric if c != DURATION],
        "oracle": {"median": ORACLE_MEDIAN, "mean": ORACLE_MEAN},
    }
    spec_path.write_text(json.dumps(spec, indent=2) + "\n")
    return csv_path, spec_path
