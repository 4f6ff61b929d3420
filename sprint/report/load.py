"""Reading a results folder (the layout of :class:`sprint.layout.ResultsTree`): one model's latency table, metrics
files, pruning records, measured speedups and llama.cpp serving speedups into a :class:`ModelResults`, and the
Snakemake benchmark files.
A malformed file raises SprintError naming it; a missing one is listed in ``ModelResults.missing``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sprint.errors import SprintError
from sprint.layout import ResultsTree, point_label
from sprint.measure import stats
from sprint.report.names import method_name, sort_rows, target_of

TREE = ResultsTree("")  # paths inside a results folder
KEYS = ["method", "point", "seed"]  # point: x1.2 (a target speedup) or a one-shot setting, 2of4 / u50 / s25 / c20
PRUNE_COLS = [*KEYS, "est_pruning", "pruning_time_s", "num_tunings", "peak_rss_mb", "num_layers", "removed",
              "calibration", "calibration_n", "calibration_seq_len", "hparams", "ppl_windows", "flip_ratios",
              "tie_break"]
# ``{col}_se``: standard error of ``col``; ``{col}_lo`` / ``{col}_hi``: its 95 % CI (single evaluation)
METRIC_COLS = [*KEYS, "estimated_speedup", "measured_speedup", "measured_speedup_lo", "measured_speedup_hi",
               "speedup_spread", "mean_accuracy", "mean_accuracy_se", "wikitext2_ppl", "wikitext2_ppl_lo",
               "wikitext2_ppl_hi", "ppl_tokens", "ppl_seq_len", "eval_limit", "kernels", "heldout_ppl", "heldout_ppl_lo",
               "heldout_ppl_hi", "heldout_corpus"]
TEXT_COLS = {"method", "point", "removed", "calibration", "hparams", "eval_limit", "kernels", "heldout_corpus",
             "flip_ratios", "tie_break"}
SPEEDUP_FIELDS = ("measured_speedup", "measured_speedup_ci", "latency_s", "dense_latency_s", "speedup")
# the llama.cpp serving speedup (the export stage's headline: llamacpp.json) with its 95% CI; only where one was read
LLAMACPP_COLS = ["llamacpp_speedup", "llamacpp_speedup_lo", "llamacpp_speedup_hi"]


@dataclass
class ModelResults:
    """Everything read for one model of a results folder (``{results}/{name}/``)."""

    name: str
    latency: dict[str, Any] | None
    dense: pd.DataFrame  # 0 or 1 row, metric columns
    runs: pd.DataFrame  # one row per (method, point, seed): pruning.json outer-joined with metrics, + target
    tasks: dict[str, str]  # task -> metric name
    missing: list[str]
    samples: dict[tuple[str, str, int], dict[str, stats.Sample]]  # (method, point, seed) -> "acc" / "ppl" -> items
    # (method, point, seed) -> binary task -> each answer's share of the model's answers (in %), where recorded
    answers: dict[tuple[str, str, int], dict[str, dict[str, float]]] = field(default_factory=dict)
    # per task: chance, majority (binary tasks), the dense score with its 95% CI, informative (see chance_levels)
    chance: pd.DataFrame = field(default_factory=pd.DataFrame)
    informative: list[str] | None = None  # the informative tasks; None: unknown (no dense model or no chance levels)
    dense_from: str = ""  # the model whose dense evaluation decided them ("" : this one)
    # the llama.cpp serving speedups' headline (:func:`load_llamacpp`: engine, outtype, threads, phase, prompt and
    # generation lengths, estimator, file) when a llamacpp.json was read: then runs and dense carry LLAMACPP_COLS
    llamacpp: dict[str, Any] | None = None


def _load_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; anything else raises SprintError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SprintError(f"{path}: cannot read JSON ({e})") from e
    if not isinstance(data, dict):
        raise SprintError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _num(value: Any) -> float:
    """JSON number -> float, null -> NaN; anything else raises TypeError."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _pair(value: Any) -> tuple[float, float]:
    """A JSON ``[lo, hi]`` -> two floats; absent -> two NaNs."""
    lo, hi = value if value is not None else (None, None)
    return _num(lo), _num(hi)


def _task_cols(task: str) -> list[str]:
    return [f"task:{task}", f"task:{task}_se", f"n:{task}", f"total:{task}", f"chance:{task}", f"majority:{task}"]


def _run_key(d: dict[str, Any]) -> tuple[str, str, int]:
    """(method, point, seed) of a metrics or speedup record (the dense model's seed: 0)."""
    return str(d["method"]), str(d["point"]), int(d["prune_seed"] or 0)


def load_speedups(path: Path) -> dict[tuple[str, str, int], dict[str, Any]]:
    """``speedup.json`` of ``sprint speedup`` -> (method, point, seed) -> its measured-speedup fields."""
    try:
        return {_run_key(e): {k: e[k] for k in SPEEDUP_FIELDS if k in e}
                for e in _load_json(path)["models"].values()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SprintError(f"{path}: malformed speedup file ({type(e).__name__}: {e})") from e


def load_llamacpp(path: Path) -> tuple[dict[tuple[str, str, int], dict[str, float]], dict[str, Any]]:
    """``llamacpp.json`` of ``sprint export`` (the export stage) -> (method, point, seed) -> the headline llama.cpp
    speedup with its 95% CI (:data:`LLAMACPP_COLS`), and what the headline is.  The dense model's is its second
    GGUF copy's (the protocol's control, 1 up to noise), as its measured speedup is; absent when not timed."""
    d = _load_json(path)
    try:
        head, protocol = d["headline"], d["protocol"]
        phase, timed = f"{head['phase']}_speedup", f"t{int(head['threads'])}"
        out = {}
        for e in d["models"].values():
            if e["method"] == "dense":
                control = ((e.get("llamacpp_control") or {}).get(head["outtype"]) or {}).get(timed)
                if control is None:
                    continue
                value, ci = control[phase]["value"], control[phase]["ci95"]
            else:
                value, ci = e["llamacpp_speedup"], e["llamacpp_speedup_ci"]
            out[_run_key(e)] = dict(zip(LLAMACPP_COLS, (_num(value), *_pair(ci))))
        info = {"engine": str(d["engine"]), "outtype": str(head["outtype"]), "threads": int(head["threads"]),
                "phase": str(head["phase"]), "prompt_len": int(protocol["prompt_len"]),
                "gen_len": int(protocol["gen_len"]), "estimator": str(protocol["estimator"]), "file": str(path)}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SprintError(f"{path}: malformed llama.cpp speedup file ({type(e).__name__}: {e})") from e
    return out, info


def _metrics_row(path: Path, tasks: dict[str, str], speedups: dict,
                 ) -> tuple[dict[str, Any], dict[str, stats.Sample]]:
    """One metrics JSON -> flat row (accuracies in %) and its per-item data for paired tests.  A metrics file
    without a measured speedup (timed together: latency.speedups) takes its run's from ``speedups``
    (:func:`load_speedups`), if there.

    The per-item data is ``{"acc": {task: (doc_ids, correct)}}`` and
    ``{"ppl": {"wikitext2 (L-token windows)": (window indices, window NLLs)}}``.  Records each task's metric name
    in ``tasks``.
    """
    d = _load_json(path)
    answers: dict[str, dict[str, float]] = {}
    second: dict[str, tuple[list[int], list[float]]] = {}  # binary tasks: per document, 1 if the second answer
    try:
        params = d["eval_params"]
        if d.get("measured_speedup") is None:
            d = {**d, **speedups.get(_run_key(d), {})}
        speedup_lo, speedup_hi = _pair(d.get("measured_speedup_ci"))
        ppl_lo, ppl_hi = _pair(d["wikitext2_ppl_ci"])
        row = {**dict(zip(KEYS, _run_key(d))), "estimated_speedup": _num(d["estimated_speedup"]),
               "measured_speedup": _num(d.get("measured_speedup")), "measured_speedup_lo": speedup_lo,
               "measured_speedup_hi": speedup_hi, "speedup_spread": 100 * _num((d.get("speedup") or {}).get("spread")),
               "mean_accuracy": 100 * _num(d["mean_accuracy"]),
               "mean_accuracy_se": 100 * _num(d["mean_accuracy_stderr"]),
               "wikitext2_ppl": _num(d["wikitext2_ppl"]), "wikitext2_ppl_lo": ppl_lo, "wikitext2_ppl_hi": ppl_hi,
               "ppl_tokens": _num(d["wikitext2_tokens"]), "ppl_seq_len": _num(params["ppl_seq_len"]),
               "eval_limit": str(params["limit"] or "all"),
               "kernels": str(((d.get("speedup") or {}).get("kernels") or {}).get("kernels", "dense"))}
        for task, t in d["tasks"].items():
            row.update(zip(_task_cols(task), (100 * _num(t["value"]), 100 * _num(t["stderr"]), _num(t["n"]),
                                              _num(t["total"]), 100 * _num(t.get("chance")),
                                              100 * _num(t.get("majority_rate")))))
            if isinstance(t.get("answer_shares"), dict):
                answers[task] = {str(k): 100 * _num(v) for k, v in t["answer_shares"].items()}
                if isinstance(t.get("predicted"), list) and len(t["predicted"]) == len(t["doc_ids"]):
                    second[task] = (t["doc_ids"], [float(p == 1) for p in t["predicted"]])
            tasks.setdefault(task, str(t["metric"]))
        nll = d["wikitext2_window_nll"]
        sample = {"acc": {task: (t["doc_ids"], t["correct"]) for task, t in d["tasks"].items()},
                  "ppl": {f"wikitext2 ({params['ppl_seq_len']}-token windows)": (range(len(nll)), nll)},
                  "answers": answers, "second": second}
        row.update(_heldout(d, params, sample))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SprintError(f"{path}: malformed metrics ({type(e).__name__}: {e})") from e
    return row, sample


def _heldout(d: dict[str, Any], params: dict[str, Any], sample: dict[str, Any]) -> dict[str, Any]:
    """The held-out perplexity columns of one metrics record (``evaluate.heldout_ppl``: corpora never calibrated
    on), and its per-window data as ``sample["heldout"]`` for the paired tests.  Several corpora are pooled window by
    window (one perplexity over all their windows; the CI then recomputed from them); none gives NaN columns."""
    corpora = [str(c) for c in params.get("heldout_ppl") or []]
    if not corpora:
        return {"heldout_ppl": math.nan, "heldout_ppl_lo": math.nan, "heldout_ppl_hi": math.nan, "heldout_corpus": ""}
    sample["heldout"] = {f"{c} ({params['ppl_seq_len']}-token windows)": (range(len(d[f"{c}_window_nll"])),
                                                                        d[f"{c}_window_nll"]) for c in corpora}
    if len(corpora) == 1:
        value, (lo, hi) = _num(d[f"{corpora[0]}_ppl"]), _pair(d[f"{corpora[0]}_ppl_ci"])
    else:
        pooled = sample["heldout"]
        value = float(stats.perplexity([np.asarray(nll, dtype=float) for _, nll in pooled.values()]))
        lo, hi = stats.bootstrap_ci(pooled, stats.perplexity)
    return {"heldout_ppl": value, "heldout_ppl_lo": lo, "heldout_ppl_hi": hi, "heldout_corpus": " + ".join(corpora)}


def _pruning_row(path: Path) -> dict[str, Any]:
    """One pruning.json -> flat row with the removal list as ``[(layer, kind), ...]`` in removal order."""
    d = _load_json(path)
    try:
        p, n = d["params"], int(d["num_layers"])
        removed = [(int(r["layer"]), str(r["kind"])) for r in d["removed"]]
        bad = [r for r in removed if r[1] not in ("attn", "mlp") or not 0 <= r[0] < n]
        if bad:
            raise ValueError(f"removed sublayers {bad} not in attn/mlp of layers 0..{n - 1}")
        return {"method": str(d["method"]), "point": str(d["point"]), "seed": int(p["seed"]),
                "est_pruning": _num(d["estimated_speedup"]), "pruning_time_s": _num(d["wall_time_s"]),
                "num_tunings": _num(d["num_tunings"]), "peak_rss_mb": _num(d["peak_rss_mb"]),
                "num_layers": n, "removed": removed,
                "calibration": f"{p['calibration_n']}×{p['calibration_seq_len']}",
                "calibration_n": _num(p["calibration_n"]), "calibration_seq_len": _num(p["calibration_seq_len"]),
                "hparams": ", ".join(f"{k}={p[k]}" for k in ("alpha", "beta", "tune_ratio") if k in p),
                "ppl_windows": _num(p.get("ppl_windows")),  # SLEB and BlockPruner only
                # SPRINT: per removal, the t_mlp/t_attn at which its pick would change type (None: one type compared)
                "flip_ratios": [None if r.get("flip_ratio") is None else float(r["flip_ratio"]) for r in d["removed"]],
                "tie_break": str(p.get("tie_break", "none"))}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SprintError(f"{path}: malformed pruning record ({type(e).__name__}: {e})") from e


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Numeric columns as float (NaN for null), seed as int."""
    df = df.astype({c: float for c in df.columns if c not in TEXT_COLS})
    return df.astype({"seed": int})


def metrics_files(results: Path, model: str) -> list[Path]:
    """Every metrics file of ``model`` in ``results``: the dense model's (if there), then the pruned models'."""
    dense = results / TREE.metrics(model, "dense")
    return ([dense] if dense.is_file() else []) + sorted(results.glob(TREE.metrics(model, "*", "*", "*")))


def model_names(results: Path) -> list[str]:
    """The models of a results folder: the folders with a latency table, a metrics file or a pruned model."""
    return [d.name for d in sorted(results.iterdir()) if d.is_dir() and (
        (results / TREE.latency(d.name)).is_file() or metrics_files(results, d.name)
        or any(results.glob(TREE.pruning_record(d.name, "*", "*", "*"))))]


def model_of(results: Path, metrics_file: Path) -> str:
    """The model a metrics file of ``results`` is of (its first folder inside ``results``)."""
    try:
        return metrics_file.resolve().relative_to(results.resolve()).parts[0]
    except ValueError:
        raise SprintError(f"{metrics_file}: not a metrics file under {results}/<model>/metrics/") from None


def load_results(results: Path, model: str, metrics: list[Path] | None = None,
                 dense_from: ModelResults | None = None, llamacpp: bool | None = None) -> ModelResults:
    """Read the latency table, metrics files and pruning records of ``model`` in ``results``; note what is missing.
    Chance levels and informative tasks: :func:`with_informative` (``dense_from``: the model whose dense evaluation
    decides them when ``model`` has none).

    With ``metrics`` (what the pipeline's DAG made for this model), only those metrics files and the pruning
    records of their runs are read: leftovers of an earlier configuration in the folder stay out of the report.
    ``llamacpp``: whether to read the model's ``llamacpp.json`` (:func:`load_llamacpp`; True: it must exist);
    None: when it exists and ``metrics`` is None (the pipeline says which it made)."""
    def shown(path: str) -> str:  # a file as the list of missing ones names it: inside the model's folder
        return f"`{Path(path).relative_to(model)}`"

    missing: list[str] = []
    latency_path, speedup_path = results / TREE.latency(model), results / TREE.speedup(model)
    latency = _load_json(latency_path) if latency_path.is_file() else None
    if latency is None:
        missing.append(f"{shown(TREE.latency(model))} (no latency profile)")
    tasks: dict[str, str] = {}
    speedups = load_speedups(speedup_path) if speedup_path.is_file() else {}
    dense_path = results / TREE.metrics(model, "dense")
    paths = metrics_files(results, model) if metrics is None else metrics
    dense = [_metrics_row(p, tasks, speedups) for p in paths if p.resolve() == dense_path.resolve()]
    if not dense:
        missing.append(f"{shown(TREE.metrics(model, 'dense'))} (no dense baseline)")
    pruned = [_metrics_row(p, tasks, speedups) for p in sorted(paths) if p.resolve() != dense_path.resolve()]
    samples = {(r["method"], r["point"], r["seed"]): sample for r, sample in dense + pruned}
    answers = {key: sample.pop("answers") for key, sample in samples.items()}
    dense, pruned = [r for r, _ in dense], [r for r, _ in pruned]
    pruning = [_pruning_row(p) for p in sorted(results.glob(TREE.pruning_record(model, "*", "*", "*")))]
    if metrics is not None:
        runs_made = {(r["method"], r["point"], r["seed"]) for r in pruned}
        pruning = [r for r in pruning if (r["method"], r["point"], r["seed"]) in runs_made]
    if not pruning:
        missing.append(f"{shown(TREE.pruning_record(model, '*', '*', '*'))} (no pruned model)")
    cols = METRIC_COLS + [c for t in tasks for c in _task_cols(t)]
    runs = pd.merge(pd.DataFrame(pruning, columns=PRUNE_COLS), pd.DataFrame(pruned, columns=cols),
                    on=KEYS, how="outer", indicator=True)
    for side, what in (("left_only", "metrics"), ("right_only", "pruning.json")):
        for r in runs[runs["_merge"] == side].itertuples():
            missing.append(f"{what} of {method_name(r.method)} {point_label(r.point)} seed {r.seed}")
    runs["estimated_speedup"] = runs["estimated_speedup"].fillna(runs["est_pruning"])
    dense = pd.DataFrame(dense, columns=cols)
    for df in (runs, dense):
        df.insert(2, "target", df["point"].map(target_of).astype(float))
    served, info = {}, None
    llamacpp_path = results / TREE.llamacpp(model)
    if llamacpp or (llamacpp is None and metrics is None and llamacpp_path.is_file()):
        if not llamacpp_path.is_file():
            raise SprintError(f"{llamacpp_path}: llama.cpp speedup file not found")
        served, info = load_llamacpp(llamacpp_path)
        for df in (runs, dense):
            keys = list(zip(df["method"], df["point"], df["seed"].astype(int)))
            for col in LLAMACPP_COLS:
                df[col] = [served.get(k, {}).get(col, math.nan) for k in keys]
    runs = _typed(runs.drop(columns=["_merge", "est_pruning"]))
    out = ModelResults(model, latency, _typed(dense), sort_rows(runs), tasks, missing, samples, answers,
                       llamacpp=info)
    return with_informative(out, dense_from)


DENSE = ("dense", "x1", 0)  # the dense model's key in ModelResults.samples
INFORMATIVE_COL = "informative_accuracy"  # mean accuracy over the informative tasks (%), in runs and dense


def chance_levels(dense: pd.DataFrame, sample: dict[str, stats.Sample] | None, tasks: list[str],
                  n_boot: int = 2000) -> pd.DataFrame:
    """Per task: ``chance`` (the accuracy of a uniform guess, %), ``majority`` (binary tasks: the accuracy of always
    giving the most common gold answer, %; NaN otherwise), the dense score with its 95% CI (``dense``, ``dense_lo``,
    ``dense_hi``: percentile bootstrap over the task's documents) and ``informative``: the CI's lower end lies above
    both chance and majority (NaN where the chance level is unknown: a metrics file without it)."""
    rows = []
    for task in tasks:
        row = dense.iloc[0] if not dense.empty else {}
        chance, majority = (float(row.get(f"{k}:{task}", math.nan)) for k in ("chance", "majority"))
        value = float(row.get(f"task:{task}", math.nan))
        lo = hi = math.nan
        if sample is not None and task in sample.get("acc", {}):
            lo, hi = (100 * v for v in stats.bootstrap_ci({task: sample["acc"][task]}, stats.mean_accuracy, n_boot))
        bar = max(chance, 0 if math.isnan(majority) else majority)
        informative = math.nan if math.isnan(chance) or math.isnan(lo) else float(lo > bar)
        rows.append({"task": task, "chance": chance, "majority": majority, "dense": value, "dense_lo": lo,
                     "dense_hi": hi, "informative": informative})
    return pd.DataFrame(rows, columns=["task", "chance", "majority", "dense", "dense_lo", "dense_hi", "informative"])


def with_informative(m: ModelResults, dense_from: ModelResults | None = None) -> ModelResults:
    """``m`` with its chance table, its informative tasks and, where they are known, the informative-task accuracy:
    column :data:`INFORMATIVE_COL` and per-item data ``"acc_inf"`` (the ``acc`` strata of those tasks).

    The dense evaluation is ``m``'s own, or, for a model without one (a setting that changes only pruning or
    latency), ``dense_from``'s: the same weights on the same documents."""
    source = m if DENSE in m.samples or dense_from is None else dense_from
    m.dense_from = "" if source is m else source.name
    m.chance = chance_levels(source.dense, source.samples.get(DENSE), list(m.tasks))
    known = m.chance.dropna(subset=["informative"])
    m.informative = None if known.empty or len(known) < len(m.chance) else \
        known[known["informative"] == 1.0]["task"].tolist()
    chosen = m.informative
    for df in (m.runs, m.dense):
        cols = [f"task:{t}" for t in chosen or [] if f"task:{t}" in df]
        df[INFORMATIVE_COL] = df[cols].mean(axis=1) if chosen and len(cols) == len(chosen) else math.nan
    if chosen:
        for sample in m.samples.values():
            if all(t in sample["acc"] for t in chosen):
                sample["acc_inf"] = {t: sample["acc"][t] for t in chosen}
    return m


def load_benchmarks(results: Path, models: list[str]) -> pd.DataFrame:
    """The Snakemake benchmark TSVs of a results folder -> per (rule, model): jobs, summed wall/CPU seconds, max RSS
    (MB).

    The first path component below the benchmarks folder is the rule; the model is the first later one naming a
    model. Repeated measurements of one job (several rows) are averaged.
    """
    folder = results / TREE.benchmarks()
    rows = []
    for path in sorted(folder.rglob("*.tsv")):
        try:
            df = pd.read_csv(path, sep="\t")
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise SprintError(f"{path}: cannot read benchmark TSV ({e})") from e
        if not {"s", "max_rss"} <= set(df.columns):
            raise SprintError(f"{path}: not a Snakemake benchmark file (needs columns s and max_rss)")
        num = df.reindex(columns=["s", "max_rss", "cpu_time"]).apply(pd.to_numeric, errors="coerce")
        parts = path.relative_to(folder).with_suffix("").parts
        rows.append({"rule": parts[0], "model": next((p for p in parts[1:] if p in models), "–"),
                     "wall_s": num["s"].mean(), "cpu_s": num["cpu_time"].mean(), "max_rss_mb": num["max_rss"].max()})
    if not rows:
        return pd.DataFrame()
    return (pd.DataFrame(rows).groupby(["rule", "model"])
            .agg(jobs=("wall_s", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"),
                 max_rss_mb=("max_rss_mb", "max"))
            .reset_index())


def chance_metrics(results: Path, metrics: list[Path] | None = None) -> dict[str, float]:
    """The report stage's chance-aware numbers for MLflow, per model of ``results``: each task's chance level,
    majority rate (binary tasks) and whether it is informative (1 / 0), and the informative-task mean accuracy of the
    dense model and of every pruned one (``{model}/informative_accuracy/{method}/{point}/seed{seed}``); accuracies
    as fractions, as the evaluate stage logs them."""
    chosen: dict[str, list[Path]] = {}
    for path in metrics or []:
        chosen.setdefault(model_of(results, path), []).append(path)
    out: dict[str, float] = {}
    for model in (sorted(chosen) if metrics is not None else model_names(results)):
        m = load_results(results, model, chosen.get(model))
        for r in m.chance.itertuples():
            for key, value in (("chance", r.chance / 100), ("majority", r.majority / 100),
                               ("informative", r.informative)):
                if value == value:  # not NaN
                    out[f"{model}/{key}/{r.task}"] = float(value)
        for df in (m.dense, m.runs):
            for r in df.itertuples():
                if r.informative_accuracy == r.informative_accuracy:
                    out[f"{model}/informative_accuracy/{r.method}/{r.point}/seed{r.seed}"] = float(
                        r.informative_accuracy) / 100
    return out


def served_models(results: Path, llamacpp: list[Path] | None) -> set[str] | None:
    """The models of ``results`` whose llamacpp.json to read, from the files listed (each must be
    ``{results}/{model}/llamacpp.json`` and exist); None for no list (each model's where it exists)."""
    if llamacpp is None:
        return None
    served = set()
    for path in map(Path, llamacpp):
        parts = path.resolve().parts[len(results.resolve().parts):]
        if not path.resolve().is_relative_to(results.resolve()) or not parts or TREE.llamacpp(parts[0]) != "/".join(
                parts):
            raise SprintError(f"{path}: not a llama.cpp speedup file of {results} ({TREE.llamacpp('<model>')})")
        if not path.is_file():
            raise SprintError(f"{path}: llama.cpp speedup file not found")
        served.add(parts[0])
    return served


def llamacpp_metrics(results: Path, metrics: list[Path] | None = None, llamacpp: list[Path] | None = None
                     ) -> tuple[dict[str, float], list[tuple[dict[str, str], dict[str, float]]]]:
    """The llama.cpp speedups the report shows, for MLflow (the files read as by the report: ``metrics`` and
    ``llamacpp`` as in :func:`sprint.report.markdown.write_report`): the report run's metrics
    (``{model}/llamacpp_speedup/{method}/{point}/seed{seed}`` with ``_lo`` / ``_hi``) and, per model, the evaluate
    run's tags (model, method, point and, pruned, seed) with the same value as ``llamacpp_speedup`` (``_lo``,
    ``_hi``), to log beside the measured speedup that run holds."""
    chosen: dict[str, list[Path]] = {}
    for path in metrics or []:
        chosen.setdefault(model_of(results, path), []).append(path)
    served = served_models(results, llamacpp)
    report: dict[str, float] = {}
    runs: list[tuple[dict[str, str], dict[str, float]]] = []
    for model in (sorted(chosen) if metrics is not None else model_names(results)):
        if (served is not None and model not in served) or (served is None and (
                metrics is not None or not (results / TREE.llamacpp(model)).is_file())):
            continue
        m = load_results(results, model, chosen.get(model), llamacpp=True)
        for df in (m.dense, m.runs):
            for r in df.dropna(subset=[LLAMACPP_COLS[0]]).itertuples():
                values = {}
                for suffix, col in zip(("", "_lo", "_hi"), LLAMACPP_COLS):
                    value = float(getattr(r, col))
                    if value == value:  # not NaN
                        report[f"{model}/llamacpp_speedup/{r.method}/{r.point}/seed{r.seed}{suffix}"] = value
                        values[f"llamacpp_speedup{suffix}"] = value
                tags = {"sprint.model": model, "sprint.method": r.method, "sprint.point": r.point}
                if r.method != "dense":
                    tags["sprint.seed"] = str(r.seed)
                runs.append((tags, values))
    return report, runs
