"""``ptpm-tf benchmark``: every model over a dataset for several seeds, the paper's tables
and figures (docs/design.md section 8; paper Tables 2-3, Figs. 6-8).

**Runs.** A run is one (dataset, variant, seed, depth) training through
:func:`ptpm_tf.training.train` -- the one training loop; a variant is a model name plus head
overrides (``ptpm-no-tsl`` is ``ptpm`` with ``tsl=False``). Seed ``s`` draws the data
(simulator) and the split, so all models of one seed see the same rows and are paired by
seed in the significance test. CREAD runs once per value of its ``a`` grid; the ``a`` with
the best **validation** MAE is selected per seed (the test split never takes part).

**Results folder** (``--out``, default ``results/benchmark``)::

    runs/<dataset>/<tag>__d<depth>__s<seed>.json   one per finished run (resume unit)
    results.json     every number: runs, per-model means, stds, p-values, CREAD's a
    tables.md        Table 2 (MAE, XAUC per dataset and model, best in bold, * where PTPM's
                     gain over the runner-up is significant, p < 0.05, paired t over seeds),
                     Table 3 (PTPM, w/o TSL, w/o UCL, TPM), the oracle row, costs
    fig6_cost_<dataset>.png, fig6_curves_<dataset>.png, fig7_ucl_<dataset>.png,
    fig8_depth_<dataset>.png

A run's JSON is written atomically when the run finishes; an interrupted benchmark started
again with the same ``--out`` skips the finished runs and trains the rest. Tables and
figures are rebuilt from every run JSON in the folder, so benchmarks of several datasets
into one folder give one multi-dataset Table 2.

**Costs** (Fig. 6 left): trainable parameters of the whole model (tower + head) and of the
head alone; FLOPs per sample counted by ``tf.compat.v1.profiler`` (float_operation) on the
graph of tower + head + decoding for a batch of one, from already-encoded features (the
id lookups and embedding gathers do no floating-point work and are not counted).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ptpm_tf import atomic_io
from ptpm_tf import metrics as M
from ptpm_tf.benchmarks.stats import paired_t_test
from ptpm_tf.config import DataConfig, TrainingConfig
from ptpm_tf.settings import same_as, setting, validate
from ptpm_tf.benchmarks.variants import (ABLATIONS, BASELINES_TO_BEAT, CURVE_VARIANTS,
                                         DEFAULT_MODELS, FOCUS, LABELS, SETTINGS_ORDER,
                                         SWEEP_VARIANTS, TABLE2_ORDER, TABLE2_ROWS,
                                         TABLE3_ORDER, TREE_ROWS, VARIANTS)


@dataclasses.dataclass
class BenchmarkConfig:
    """What ``ptpm-tf benchmark`` runs (its flags are generated from these fields; the data
    and training settings are the training run's, ``ptpm_tf.config``)."""

    dataset: str = same_as(DataConfig, "dataset")
    data_dir: Optional[str] = same_as(DataConfig, "data_dir")
    spec: Optional[str] = same_as(DataConfig, "spec")
    rows: Optional[int] = same_as(DataConfig, "rows")
    strict: bool = same_as(DataConfig, "strict")
    history_features: bool = same_as(DataConfig, "history_features")
    models: tuple = setting(DEFAULT_MODELS, "comma-separated models and variants (default: "
                                            "the eight of Table 2)")
    seeds: int = setting(3, "seeds 0..K-1 (data draw, split, init)", low=1)
    depth: int = setting(6, "global tree depth of the main tables", low=1)
    depths: tuple = setting((2, 3, 4, 5, 6, 7, 8), "global depths of the Fig. 8 sweep (PTPM "
                                                   "and w/o TSL); 'none' skips it")
    depth_seeds: int = setting(1, "seeds of the depth sweep", low=1)
    epochs: int = same_as(TrainingConfig, "epochs", default=8)
    batch_size: int = same_as(TrainingConfig, "batch_size")
    learning_rate: float = same_as(TrainingConfig, "learning_rate")
    patience: int = same_as(TrainingConfig, "patience")
    ablations: bool = setting(True, "Table 3's PTPM w/o TSL and w/o UCL runs")
    curve_points_per_epoch: int = setting(4, "validation points per epoch of the Fig. 6 "
                                             "training curves", low=0, flag="--curve-points")
    curve_rows: int = setting(20_000, "validation rows the Fig. 6 curves are scored on", low=1)
    selection_values: Optional[tuple] = setting(
        None, "values of a model's setting chosen on validation (CREAD's a; default: the "
              "head's own grid, 0,2,5)", flag="--cread-grid")
    tower: Dict[str, Any] = dataclasses.field(default_factory=dict)
    out: str = setting("results/benchmark", "results folder; an interrupted benchmark "
                                             "resumes from it")

    def data_config(self) -> DataConfig:
        """The :class:`ptpm_tf.config.DataConfig` every run of the benchmark reads."""
        return DataConfig(dataset=self.dataset, data_dir=self.data_dir, spec=self.spec,
                          rows=self.rows, strict=self.strict,
                          history_features=self.history_features)

    def __post_init__(self):
        validate(self)
        unknown = [m for m in self.models if m not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; choose from {', '.join(VARIANTS)}")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run of the benchmark."""

    dataset: str
    variant: str  # table name (cread for every a of the grid)
    seed: int
    depth: int
    head: Tuple[Tuple[str, Any], ...] = ()

    @property
    def model(self) -> str:
        return VARIANTS[self.variant][0]

    @property
    def overrides(self) -> Dict[str, Any]:
        return {**VARIANTS[self.variant][1], **dict(self.head)}

    @property
    def tag(self) -> str:
        extra = "".join(f"-{k}{v:g}" if isinstance(v, float) else f"-{k}{v}"
                        for k, v in self.head)
        return f"{self.variant}{extra}"

    @property
    def path(self) -> str:
        return f"runs/{self.dataset}/{self.tag}__d{self.depth}__s{self.seed}.json"


def plan(config: BenchmarkConfig) -> List[RunSpec]:
    """Every run the benchmark needs, grouped by seed (one data load per seed)."""
    from ptpm_tf.selection import selection_grid
    variants = list(dict.fromkeys(config.models))
    if config.ablations and FOCUS in variants:
        variants += [v for v in ABLATIONS if v not in variants]
    specs: List[RunSpec] = []
    for seed in range(config.seeds):
        for v in variants:
            grid = selection_grid(VARIANTS[v][0])
            if grid:
                (key, values), = grid.items()
                values = config.selection_values or values
                specs += [RunSpec(config.dataset, v, seed, config.depth, ((key, float(x)),))
                          for x in values]
            else:
                specs.append(RunSpec(config.dataset, v, seed, config.depth))
    if FOCUS in config.models:
        for seed in range(min(config.depth_seeds, config.seeds) if config.depths else 0):
            for d in config.depths:
                if d != config.depth:
                    specs += [RunSpec(config.dataset, v, seed, int(d)) for v in SWEEP_VARIANTS]
    return sorted(specs, key=lambda s: s.seed)  # stable: keeps the order within a seed


# ------------------------------------------------------------------------------ running


def _curve_callback(frame, every: int, max_rows: int, seed: int):
    """A Keras callback recording validation MAE / XAUC every ``every`` steps (Fig. 6 right)."""
    import tensorflow as tf

    from ptpm_tf.data.dataset import LABEL

    class Curve(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            sample = frame if len(frame) <= max_rows else frame.sample(max_rows, random_state=seed)
            self.sample, self.y = sample, sample[LABEL].to_numpy(np.float64)
            self.points: List[Dict[str, float]] = []
            self.step = 0

        def on_train_begin(self, logs=None):
            arrays = self.model.encoder.raw_arrays(self.sample)
            self.ds = tf.data.Dataset.from_tensor_slices(arrays).batch(8192)
            model = self.model
            self.predict = tf.function(lambda f: model(f)["watch_time"])
            self._record()

        def _record(self):
            p = np.concatenate([self.predict(b).numpy() for b in self.ds]).astype(np.float64)
            self.points.append({"step": self.step, "mae": M.mae(self.y, p),
                                "xauc": M.xauc(self.y, p)})

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            if self.step % every == 0:
                self._record()

    return Curve()


def model_cost(model) -> Dict[str, Any]:
    """Trainable parameters (total and head) and profiler FLOPs per sample (see module doc)."""
    import tensorflow as tf

    from ptpm_tf.data.dataset import DURATION
    count = lambda vs: int(sum(int(np.prod(v.shape)) for v in vs))
    out: Dict[str, Any] = {"params": count(model.trainable_variables),
                           "head_params": count(model.head.trainable_variables)}
    enc = model.encoder
    ids_spec = {n: tf.TensorSpec([1], tf.int64) for n in enc.categorical}
    dense_spec = tf.TensorSpec([1, 2 * len(enc.numeric)], tf.float32)

    @tf.function
    def forward(ids, dense, duration):
        raw = model.head(model.tower((ids, dense if len(enc.numeric) else None)))
        return model.head.decode(raw, {DURATION: duration})

    try:
        graph = forward.get_concrete_function(ids_spec, dense_spec,
                                              tf.TensorSpec([1], tf.float32)).graph
        opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        opts["output"] = "none"
        prof = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(),
                                             cmd="op", options=opts)
        out["flops"] = int(prof.total_float_ops)
    except Exception as err:  # the cost figure must not sink a finished run
        out["flops"] = None
        out["flops_error"] = f"{type(err).__name__}: {err}"
    return out


class _DataCache:
    """Dataset and split of the current seed (loaded once per seed)."""

    def __init__(self, config: BenchmarkConfig):
        self.config, self.key, self.value = config, None, None

    def get(self, seed: int):
        if self.key != seed:
            from ptpm_tf.data.registry import load_and_split
            self.key, self.value = seed, load_and_split(self.config.data_config(), seed)
        return self.value


def execute(spec: RunSpec, config: BenchmarkConfig, cache: _DataCache) -> Dict[str, Any]:
    """Train one run and return its record (not yet written)."""
    import warnings

    from ptpm_tf.evaluate import evaluate_frame
    from ptpm_tf.config import ExperimentConfig, TowerConfig, TrainingConfig
    from ptpm_tf.heads import head_fields
    from ptpm_tf.training import train
    dataset, split = cache.get(spec.seed)
    head = dict(spec.overrides)
    if "depth" in head_fields(spec.model):  # the depth of the tables and of the sweep
        head["depth"] = spec.depth
    tc = ExperimentConfig(
        model=spec.model, preset="paper", seed=spec.seed, data=config.data_config(),
        tower=TowerConfig(**config.tower),
        training=TrainingConfig(epochs=config.epochs, batch_size=config.batch_size,
                                learning_rate=config.learning_rate, patience=config.patience),
        head=head)
    callbacks = []
    if spec.variant in CURVE_VARIANTS and spec.depth == config.depth \
            and config.curve_points_per_epoch > 0:
        steps = math.ceil(len(split.train) / config.batch_size)
        every = max(1, steps // config.curve_points_per_epoch)
        callbacks.append(_curve_callback(split.validation, every, config.curve_rows, spec.seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = train(tc, None, dataset=dataset, split=split, verbose=0, callbacks=callbacks)
    val = evaluate_frame(run.model, split.validation, dataset, model_name=spec.model,
                         diagnostics=False)
    record = {
        "dataset": spec.dataset, "variant": spec.variant, "tag": spec.tag, "model": spec.model,
        "seed": spec.seed, "depth": spec.depth, "head": spec.overrides,
        "test": run.metrics,
        "validation": {k: val[k] for k in ("mae", "rmse", "xauc", "user_xauc",
                                           "avg_tree_depth", "decode", "mae_mean",
                                           "mae_median", "xauc_mean", "xauc_median")
                       if k in val},
        "history": run.history, "seconds": round(run.seconds, 2),
        "split": split.describe(), "cost": model_cost(run.model),
    }
    if callbacks:
        record["curve"] = callbacks[0].points
        record["curve_steps_per_epoch"] = math.ceil(len(split.train) / config.batch_size)
    return record


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


#: how the benchmark's JSON files are written (compact, NumPy values as Python ones)
JSON_FORMAT = {"indent": 1, "default": _json_default}


#: settings that change what a finished run means: resuming with others would mix results
RUN_DEFINING = ("data_dir", "spec", "rows", "history_features", "depth", "epochs",
                "batch_size", "learning_rate", "patience", "tower")


def _check_resumable(out: Path, config: BenchmarkConfig) -> None:
    """Refuse to resume a results folder written with other run-defining settings (models,
    seeds and depths may change: they only add runs)."""
    path = out / "benchmark_config.json"
    if not path.exists():
        return
    old = json.loads(path.read_text())
    new = json.loads(json.dumps(dataclasses.asdict(config), default=_json_default))
    old.setdefault("history_features", False)  # folders from before the setting existed
    diff = [f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in RUN_DEFINING
            if old.get(k) != new.get(k)]
    if old.get("dataset") == config.dataset and diff:
        raise ValueError(f"{out} holds runs made with other settings ({'; '.join(diff)}); "
                         "use another --out or the same settings")


def run_benchmark(config: BenchmarkConfig, progress: bool = True,
                  log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Run (or resume) every planned run, then write results.json, tables.md and figures."""
    import tensorflow as tf
    from tqdm import tqdm
    tf.get_logger().setLevel("ERROR")  # retracing notices would break the progress bar
    out = Path(config.out)
    specs = plan(config)
    todo = [s for s in specs if not (out / s.path).exists()]
    if len(todo) < len(specs):
        log(f"resuming: {len(specs) - len(todo)} of {len(specs)} runs already in {out}")
    _check_resumable(out, config)
    atomic_io.write_json(out / "benchmark_config.json", dataclasses.asdict(config), **JSON_FORMAT)
    cache = _DataCache(config)
    start = time.perf_counter()
    bar = tqdm(total=len(specs), initial=len(specs) - len(todo), unit="run",
               disable=not progress, dynamic_ncols=True)
    for spec in todo:
        bar.set_description(f"{spec.tag} d{spec.depth} s{spec.seed}")
        record = execute(spec, config, cache)
        atomic_io.write_json(out / spec.path, record, **JSON_FORMAT)
        bar.update(1)
        bar.set_postfix(mae=f"{record['test']['mae']:.3f}", xauc=f"{record['test']['xauc']:.4f}")
    bar.close()
    results = summarize(out, config)
    results["wall_seconds_this_invocation"] = round(time.perf_counter() - start, 1)
    atomic_io.write_json(out / "results.json", results, **JSON_FORMAT)
    (out / "tables.md").write_text(render_tables(results))
    from ptpm_tf.benchmarks.figures import write_figures
    results["figures"] = write_figures(results, out)
    atomic_io.write_json(out / "results.json", results, **JSON_FORMAT)
    return results


# ---------------------------------------------------------------------------- summaries


def load_records(out: Path) -> List[Dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(Path(out).glob("runs/*/*.json"))]


def _select_on_validation(records: List[Dict[str, Any]]) -> Tuple[List[Dict[str, Any]], Dict]:
    """Replace the runs of a model's selection grid (CREAD's ``a``) by the one that
    :func:`ptpm_tf.selection.selection_score` ranks first on the validation split, per
    (dataset, variant, seed, depth); return the kept records and the selection log."""
    from ptpm_tf.selection import selection_grid, selection_score
    keep, groups, selection = [], {}, {}
    for r in records:
        if selection_grid(r["model"]):
            groups.setdefault((r["dataset"], r["variant"], r["seed"], r["depth"]), []).append(r)
        else:
            keep.append(r)
    for (ds, variant, seed, depth), rs in sorted(groups.items()):
        (key, _), = selection_grid(rs[0]["model"]).items()
        best = min(rs, key=lambda r: selection_score(r["validation"]["mae"],
                                                     r["validation"]["xauc"]))
        keep.append(best)
        selection.setdefault(ds, []).append({
            "variant": variant, "seed": seed, "depth": depth, "setting": key,
            "chosen": best["head"].get(key),
            "candidates": [{key: r["head"].get(key), "val_mae": r["validation"]["mae"],
                            "val_xauc": r["validation"]["xauc"]} for r in rs]})
    return keep, selection


def _mean_std(xs: Sequence[float]) -> Dict[str, float]:
    a = np.asarray(xs, np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "n": int(len(a))}


def summarize(out: Path, config: Optional[BenchmarkConfig] = None) -> Dict[str, Any]:
    """Aggregate every run JSON in ``out`` into the results dictionary."""
    records, selection = _select_on_validation(load_records(out))
    main_depth = config.depth if config is not None else 6
    datasets = sorted({r["dataset"] for r in records})
    res: Dict[str, Any] = {"datasets": {}, "selection": selection,
                           "config": dataclasses.asdict(config) if config else None}
    for ds in datasets:
        rs = [r for r in records if r["dataset"] == ds]
        main = [r for r in rs if r["depth"] == main_depth]
        models: Dict[str, Any] = {}
        for v in dict.fromkeys(r["variant"] for r in main):
            runs = sorted((r for r in main if r["variant"] == v), key=lambda r: r["seed"])
            entry = {"seeds": [r["seed"] for r in runs]}
            for key in ("mae", "xauc", "user_xauc", "rmse", "avg_tree_depth", "mean_node_auc",
                        "train_seconds", "epochs_run"):
                vals = [r["test"][key] for r in runs if r["test"].get(key) is not None]
                if len(vals) == len(runs):
                    entry[key] = _mean_std(vals)
                    entry[key]["per_seed"] = vals
            for key in ("mae", "xauc"):
                vals = [r["validation"][key] for r in runs if "validation" in r]
                if len(vals) == len(runs):
                    entry["val_" + key] = _mean_std(vals)
            ratios = [r["test"]["leaf_prior_posterior_ratio"] for r in runs
                      if "leaf_prior_posterior_ratio" in r["test"]]
            if ratios:
                entry["leaf_prior_posterior_ratio"] = np.nanmean(np.asarray(ratios, float), 0).tolist()
            aucs = [r["test"]["node_auc"] for r in runs if "node_auc" in r["test"]]
            if aucs:
                entry["node_auc"] = np.nanmean(np.asarray(aucs, float), 0).tolist()
            entry["cost"] = runs[0]["cost"]
            curves = [r["curve"] for r in runs if r.get("curve")]
            if curves:
                entry["curve"] = {"per_seed": curves,
                                  "steps_per_epoch": runs[0].get("curve_steps_per_epoch")}
            models[v] = entry
            other = _other_decoder_entry(entry, runs)
            if other is not None:
                models[f"{v}-{other[0]}"] = other[1]
        oracle = None
        with_oracle = [r for r in main if "oracle_mae" in r["test"]]
        if with_oracle:
            per_seed = {}
            for r in with_oracle:
                per_seed[r["seed"]] = (r["test"]["oracle_mae"], r["test"]["oracle_xauc"])
            seeds = sorted(per_seed)
            oracle = {"mae": _mean_std([per_seed[s][0] for s in seeds]),
                      "xauc": _mean_std([per_seed[s][1] for s in seeds]), "seeds": seeds}
        depth_rows: Dict[str, Dict[int, Any]] = {}
        # the sweep compares depths on the same seeds (those run at the other depths)
        sweep_seeds = {r["seed"] for r in rs if r["variant"] in SWEEP_VARIANTS
                       and r["depth"] != main_depth}
        for r in rs:
            if r["variant"] in SWEEP_VARIANTS and (not sweep_seeds or r["seed"] in sweep_seeds):
                depth_rows.setdefault(r["variant"], {}).setdefault(r["depth"], []).append(r)
        depth = {v: {int(d): {"mae": _mean_std([r["test"]["mae"] for r in rr]),
                              "xauc": _mean_std([r["test"]["xauc"] for r in rr]),
                              "avg_tree_depth": _mean_std([r["test"].get("avg_tree_depth", d)
                                                           for r in rr]),
                              "seeds": sorted(r["seed"] for r in rr)}
                         for d, rr in sorted(ds_.items())}
                 for v, ds_ in depth_rows.items()}
        res["datasets"][ds] = {
            "models": models, "oracle": oracle, "depth_sweep": depth,
            "significance": {"table2": _significance(models, TABLE2_ORDER),
                             "table3": _significance(models, TABLE3_ORDER),
                             "tree_vs_baselines": _tree_against_baselines(models, oracle)},
            "n_test": main[0]["test"]["n_test"] if main else None,
        }
    return res


def _other_decoder_entry(entry: Dict[str, Any], runs: List[Dict[str, Any]]):
    """For tree runs (their metrics hold every decoder, issue 7): ``(decoder, entry)`` of
    the decoder the runs did not serve, from the same runs; else None. Only the variants
    of Table 2's rows (TPM, PTPM) get one."""
    if not runs:
        return None
    served = {r["test"].get("decode") for r in runs}
    if len(served) != 1 or None in served:
        return None
    other = "median" if served == {"mean"} else "mean"
    if f"{runs[0]['variant']}-{other}" not in TABLE2_ROWS:
        return None
    if not all(f"mae_{other}" in r["test"] for r in runs):
        return None
    # metrics only: the costs, curves and tree diagnostics are the served row's
    out = {"seeds": entry["seeds"], "decoder": other}
    for key in ("mae", "xauc", "user_xauc", "rmse"):
        vals = [r["test"].get(f"{key}_{other}") for r in runs]
        if all(v is not None for v in vals):
            out[key] = {**_mean_std(vals), "per_seed": vals}
    for key in ("mae", "xauc"):
        vals = [r.get("validation", {}).get(f"{key}_{other}") for r in runs]
        if all(v is not None for v in vals):
            out["val_" + key] = _mean_std(vals)
    return other, out


def _tree_against_baselines(models: Dict[str, Any], oracle: Optional[Dict[str, Any]]
                            ) -> Dict[str, Any]:
    """The tree row with the best **validation** MAE (decoders included) against each
    duration-aware baseline: paired t-tests over seeds on test MAE and XAUC, and the share
    of the baseline's MAE gap to the oracle that the tree row closes."""
    rows = [v for v in TREE_ROWS if v in models and "val_mae" in models[v]
            and "mae" in models[v]]
    if not rows:
        return {}
    chosen = min(rows, key=lambda v: models[v]["val_mae"]["mean"])
    out: Dict[str, Any] = {"chosen_on_validation": chosen, "against": {}}
    for b in BASELINES_TO_BEAT:
        if b not in models:
            continue
        res = {}
        for metric, sign in (("mae", -1.0), ("xauc", 1.0)):
            t_seeds = dict(zip(models[chosen]["seeds"], models[chosen][metric]["per_seed"]))
            b_seeds = dict(zip(models[b]["seeds"], models[b][metric]["per_seed"]))
            common = sorted(set(t_seeds) & set(b_seeds))
            test = paired_t_test([sign * t_seeds[s] for s in common],
                                 [sign * b_seeds[s] for s in common])
            res[metric] = {"gain": test.mean_diff, "t": test.t, "p_two_sided": test.p_two_sided,
                           "n_seeds": test.n,
                           "significant_win": bool(test.mean_diff > 0 and test.p_two_sided < 0.05)}
        if oracle is not None:
            gap = models[b]["mae"]["mean"] - oracle["mae"]["mean"]
            res["mae_gap_closed"] = ((models[b]["mae"]["mean"] - models[chosen]["mae"]["mean"])
                                     / gap if gap > 0 else None)
        out["against"][b] = res
    return out


def _significance(models: Dict[str, Any], order: Sequence[str]) -> Dict[str, Any]:
    """``FOCUS`` (PTPM) against the runner-up (best other model by mean) per metric:
    paired t-test over the seeds both have."""
    out = {}
    if FOCUS not in models:
        return out
    for metric, sign in (("mae", -1.0), ("xauc", 1.0)):
        others = [v for v in order if v in models and v != FOCUS and metric in models[v]]
        if not others or metric not in models[FOCUS]:
            continue
        runner = max(others, key=lambda v: sign * models[v][metric]["mean"])
        p_seeds = dict(zip(models[FOCUS]["seeds"], models[FOCUS][metric]["per_seed"]))
        r_seeds = dict(zip(models[runner]["seeds"], models[runner][metric]["per_seed"]))
        common = sorted(set(p_seeds) & set(r_seeds))
        test = paired_t_test([sign * p_seeds[s] for s in common],
                             [sign * r_seeds[s] for s in common])
        ptpm_best = sign * models[FOCUS][metric]["mean"] >= sign * models[runner][metric]["mean"]
        out[metric] = {"runner_up": runner, "n_seeds": test.n, "gain": test.mean_diff,
                       "t": test.t, "p_two_sided": test.p_two_sided,
                       "p_one_sided": test.p_one_sided, "ptpm_best": bool(ptpm_best),
                       "significant": bool(ptpm_best and test.p_two_sided < 0.05)}
    return out


# ------------------------------------------------------------------------------- tables


def _cell(stat: Optional[Dict[str, float]], digits: int, bold: bool, mark: str = "") -> str:
    if stat is None:
        return "-"
    text = f"{stat['mean']:.{digits}f}"
    if stat.get("n", 1) > 1:
        text += f" ± {stat['std']:.{digits}f}"
    if bold:
        text = f"**{text}**"
    return text + mark


def _table(results: Dict[str, Any], order: Sequence[str], title: str, star: bool) -> List[str]:
    datasets = [d for d in results["datasets"]
                if any(v in results["datasets"][d]["models"] for v in order)]
    if not datasets:
        return []
    head = "| Approach | " + " | ".join(f"{d} MAE ↓ | {d} XAUC ↑" for d in datasets) + " |"
    lines = [f"### {title}", "", head, "|---|" + "---|---|" * len(datasets)]
    rows = [v for v in order if any(v in results["datasets"][d]["models"] for d in datasets)]
    best = {}
    for d in datasets:
        ms = results["datasets"][d]["models"]
        for metric, sign in (("mae", -1), ("xauc", 1)):
            cand = [v for v in rows if v in ms and metric in ms[v]]
            best[d, metric] = max(cand, key=lambda v: sign * ms[v][metric]["mean"]) if cand else None
    for v in rows:
        cells = []
        for d in datasets:
            ms = results["datasets"][d]["models"]
            sig = results["datasets"][d]["significance"]["table2" if star else "table3"]
            for metric, digits in (("mae", 3), ("xauc", 4)):
                stat = ms.get(v, {}).get(metric)
                mark = "*" if (star and v == FOCUS and sig.get(metric, {}).get("significant")) else ""
                cells.append(_cell(stat, digits, best[d, metric] == v, mark))
        lines.append(f"| {LABELS.get(v, v)} | " + " | ".join(cells) + " |")
    if any(results["datasets"][d]["oracle"] for d in datasets):
        cells = []
        for d in datasets:
            o = results["datasets"][d]["oracle"]
            cells += [_cell(o["mae"], 3, False) if o else "-", _cell(o["xauc"], 4, False) if o else "-"]
        lines.append("| *oracle (simulator truth)* | " + " | ".join(cells) + " |")
    return lines + [""]


def _settings_table(results: Dict[str, Any]) -> List[str]:
    """The PTPM settings tried, when any beyond Table 3 ran: validation (the column to
    choose by) next to test, with the average learned depth."""
    lines: List[str] = []
    for d, r in results["datasets"].items():
        ms = r["models"]
        rows = [v for v in SETTINGS_ORDER if v in ms]
        if not any(v not in TABLE3_ORDER for v in rows):
            continue
        lines += [f"### PTPM settings tried on {d} (choose by the validation columns)", "",
                  "| setting | head overrides | val MAE | val XAUC | test MAE | test XAUC | avg depth |",
                  "|---|---|---|---|---|---|---|"]
        for v in rows:
            e = ms[v]
            f = lambda k, n: f"{e[k]['mean']:.{n}f}" if k in e else "-"
            overrides = ", ".join(f"{k}={x}" for k, x in VARIANTS[v][1].items()) or "-"
            lines.append(f"| {LABELS.get(v, v)} | {overrides} | {f('val_mae', 3)} | "
                         f"{f('val_xauc', 4)} | {f('mae', 3)} | {f('xauc', 4)} | "
                         f"{f('avg_tree_depth', 2)} |")
        lines.append("")
    return lines


def _tree_selection_lines(results: Dict[str, Any]) -> List[str]:
    """The tree rows by validation (the column the default is chosen by) next to test,
    and the row chosen on validation against DML and D2Q."""
    lines: List[str] = []
    for d, r in results["datasets"].items():
        ms = r["models"]
        rows = [v for v in TREE_ROWS if v in ms and "val_mae" in ms[v]]
        if not rows:
            continue
        lines += [f"### Tree models on {d}: validation (to choose by) and test", "",
                  "| row | val MAE | val XAUC | test MAE | test XAUC |", "|---|---|---|---|---|"]
        for v in rows:
            e = ms[v]
            f = lambda k, n: f"{e[k]['mean']:.{n}f}" if k in e else "-"
            lines.append(f"| {LABELS.get(v, v)} | {f('val_mae', 3)} | {f('val_xauc', 4)} | "
                         f"{f('mae', 3)} | {f('xauc', 4)} |")
        lines.append("")
        sel = r["significance"].get("tree_vs_baselines") or {}
        for b, res in sel.get("against", {}).items():
            chosen = LABELS.get(sel["chosen_on_validation"], sel["chosen_on_validation"])
            parts = [f"{m.upper()} gain {res[m]['gain']:+.4f} (t = {res[m]['t']:.2f}, "
                     f"p = {res[m]['p_two_sided']:.3g}, n = {res[m]['n_seeds']})"
                     for m in ("mae", "xauc")]
            gap = res.get("mae_gap_closed")
            if gap is not None:
                parts.append(f"closes {100 * gap:.0f} % of {LABELS.get(b, b)}'s MAE gap to the "
                             f"oracle")
            lines += [f"{chosen} (chosen on validation) against {LABELS.get(b, b)} on {d}: "
                      + "; ".join(parts) + ".", ""]
    return lines


def render_tables(results: Dict[str, Any]) -> str:
    """tables.md: Table 2, Table 3, significance details, CREAD's a, costs."""
    lines = ["# Benchmark results", ""]
    cfg = results.get("config") or {}
    if cfg:
        lines += [f"Seeds: {cfg.get('seeds')}; rows: {cfg.get('rows') or 'dataset default'}; "
                  f"max epochs: {cfg.get('epochs')} (early stopping on validation MAE, "
                  f"patience {cfg.get('patience')}); global tree depth {cfg.get('depth')}. "
                  "Mean ± standard deviation over seeds, test split; best in bold "
                  "(oracle excluded); * = PTPM best and its gain over the runner-up "
                  "significant at p < 0.05 (two-sided paired t-test over seeds).", ""]
    lines += _table(results, TABLE2_ROWS, "Table 2: PTPM against the baselines", True)
    lines += _table(results, TABLE3_ORDER, "Table 3: PTPM with different components", False)
    lines += _settings_table(results)
    lines += _tree_selection_lines(results)
    for d, r in results["datasets"].items():
        sig = r["significance"]["table2"]
        if sig:
            lines += [f"Significance on {d} (PTPM vs runner-up): " + "; ".join(
                f"{m.upper()}: runner-up {LABELS.get(s['runner_up'], s['runner_up'])}, "
                f"gain {s['gain']:+.4f}, t = {s['t']:.2f}, p = {s['p_two_sided']:.3g}, "
                f"n = {s['n_seeds']}" + ("" if s["ptpm_best"] else " (PTPM not best)")
                for m, s in sig.items()), ""]
    for d, sel in results.get("selection", {}).items():
        main = [s for s in sel if s["depth"] == (cfg.get("depth") or 6)]
        for variant in dict.fromkeys(s["variant"] for s in main):
            chosen = ", ".join(f"seed {s['seed']}: {s['setting']} = {s['chosen']:g}"
                               for s in main if s["variant"] == variant)
            lines += [f"{LABELS.get(variant, variant)}'s setting chosen on the validation "
                      f"split ({d}): {chosen}.", ""]
    for d, r in results["datasets"].items():
        ms = r["models"]
        order = [v for v in (*TABLE2_ORDER, "ptpm-no-tsl", "ptpm-no-ucl") if v in ms]
        lines += [f"### Costs on {d}", "",
                  "| model | params | head params | FLOPs/sample | train s (mean) | epochs |",
                  "|---|---|---|---|---|---|"]
        for v in order:
            c = ms[v]["cost"]
            flops = f"{c['flops']:,}" if c.get("flops") else "-"
            secs = ms[v].get("train_seconds", {}).get("mean")
            ep = ms[v].get("epochs_run", {}).get("mean")
            lines.append(f"| {LABELS.get(v, v)} | {c['params']:,} | {c['head_params']:,} | "
                         f"{flops} | {secs:.0f} | {ep:.1f} |" if secs is not None else
                         f"| {LABELS.get(v, v)} | {c['params']:,} | {c['head_params']:,} | {flops} | - | - |")
        lines.append("")
        sweep = r.get("depth_sweep") or {}
        if sweep:
            lines += [f"### Global tree depth on {d} (Fig. 8)", "",
                      "| depth | PTPM MAE | PTPM XAUC | PTPM avg learned depth | w/o TSL MAE | w/o TSL XAUC |",
                      "|---|---|---|---|---|---|"]
            depths = sorted({int(k) for v in sweep.values() for k in v})
            for dd in depths:
                p, q = (sweep.get(v, {}).get(dd) for v in SWEEP_VARIANTS)
                f = lambda s, k, n: f"{s[k]['mean']:.{n}f}" if s else "-"
                lines.append(f"| {dd} | {f(p, 'mae', 3)} | {f(p, 'xauc', 4)} | "
                             f"{f(p, 'avg_tree_depth', 2)} | {f(q, 'mae', 3)} | {f(q, 'xauc', 4)} |")
            lines.append("")
    return "\n".join(lines) + "\n"
