"""SPRINT's choices under the latency table's own noise (issue 25, item 1).

Draw K latency tables from a profile's recorded rounds (:mod:`sprint.measure.draws`), prune with SPRINT under each
on the same calibration, and set the removals and the perplexity (fixed windows) against the baselines under the
same draws.  The baselines' removal order does not depend on the table (ShortGPT: block influence on the dense model;
SLEB / BlockPruner: calibration perplexity), only where it stops does: each order is computed once (or read from a
pruning record of the same model, calibration and settings) and cut per draw by the stopping rule.  SPRINT's order
does depend on the table (η = ζ / t), so it is pruned under each draw: all draws at once, sharing the steps on
which they agree (:mod:`sprint.analysis.branching`; exactly the independent runs).

Every distinct pruned model is evaluated once (a baseline's by its removal set, SPRINT's by its removal sequence,
which fixes its tuned weights); the window NLLs are kept, so the methods are compared paired per draw
(:func:`sprint.measure.stats.compare_to_best`).  The result file is rewritten after every draw and a rerun with the
same settings resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import torch

from sprint.measure import draws as drawing
from sprint.analysis.branching import sprint_under_tables
from sprint.analysis.rank import percentile
from sprint.errors import SprintError
from sprint.io import atomic_write_json
from sprint.measure import stats
from sprint.measure.perplexity import perplexity_record
from sprint.measure.table import LatencyTable, load_latency
from sprint.methods import PruneConfig, method
from sprint.methods.driver import build_pruner
from sprint.model.modeling_sprint import set_removed
from sprint.model.sublayers import SublayerView

log = logging.getLogger("sprint")

BASELINES = ("shortgpt", "sleb", "blockpruner")
Removed = list[tuple[int, str]]


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _layerwise(name: str) -> bool:
    entry = method(name)
    return entry.settings.get("unit") == "layer" or name == "shortgpt"


def steps_from_record(record: dict, name: str) -> list[Removed]:
    """A pruning record's removals as steps (a layer method removes a layer's attention and MLP in one step)."""
    removed = [(int(r["layer"]), str(r["kind"])) for r in record["removed"]]
    if not _layerwise(name):
        return [[r] for r in removed]
    if len(removed) % 2 or any(a[0] != b[0] for a, b in zip(removed[::2], removed[1::2])):
        raise SprintError(f"the {name} record's removals do not pair up into whole layers")
    return [removed[i:i + 2] for i in range(0, len(removed), 2)]


def check_record(record: dict, name: str, model: str, cfg: PruneConfig, calibration: torch.Tensor) -> None:
    """Refuse a pruning record whose order was not computed like the one this analysis would compute."""
    params = record.get("params", {})
    want = {"method": name, "seed": cfg.seed, "calibration_n": int(calibration.shape[0]),
            "calibration_seq_len": int(calibration.shape[1])}
    if method(name).options and "ppl_windows" in method(name).options:
        want["ppl_windows"] = cfg.ppl_windows
    got = {"method": record.get("method"), **{k: params.get(k) for k in want if k != "method"}}
    if got != want:
        raise SprintError(f"pruning record of {name} does not match this analysis: recorded {got}, wanted {want}")
    if Path(str(record.get("model", ""))).name != Path(model).name:
        raise SprintError(f"pruning record of {name} is of model {record.get('model')!r}, not {model!r}")


def baseline_order(model, calibration: torch.Tensor, tables: list[LatencyTable], target: float,
                   cfg: PruneConfig) -> list[Removed]:
    """A baseline's removal steps on ``model`` (pruned in place; reset by the caller), until every table's estimate
    meets ``target``."""
    torch.manual_seed(cfg.seed)
    view = SublayerView(model, batch_size=cfg.batch_size)
    pruner = build_pruner(view, calibration, tables[0], cfg, progress=False)
    steps: list[Removed] = []
    admissible = len(pruner.admissible())
    while not drawing.reached(steps, tables, target):
        if sum(len(s) for s in steps) >= admissible:
            raise SprintError(f"{cfg.method} removed every admissible sublayer without reaching {target:g}x under "
                              "every drawn table")
        steps.append([(r.layer, r.kind) for r in pruner.step()])
    close(pruner)
    return steps


def close(pruner) -> None:
    """Release what a pruner keeps outside the model (SPRINT's spill files), where the pruner has a ``close``."""
    getattr(pruner, "close", lambda: None)()


def _ppl_entry(record: dict, corpus: str) -> dict:
    return {"ppl": record[f"{corpus}_ppl"], "window_nll": record[f"{corpus}_window_nll"]}


def _summary(result: dict) -> dict:
    """Per method: removal counts by type and perplexity percentiles over the draws; SPRINT's removal frequency per
    sublayer, its rank per draw and the share of draws in which it beats the best other method."""
    rows = [d for d in result["draws"] if d["index"] != "point"]
    methods = result["methods"]
    out: dict[str, Any] = {"draws": len(rows), "methods": {}}
    if not rows:
        return out
    for name in methods:
        ppl = [d["methods"][name]["ppl"] for d in rows]
        n_attn = [d["methods"][name]["n_attn"] for d in rows]
        n_mlp = [d["methods"][name]["n_mlp"] for d in rows]
        freq: dict[str, int] = {}
        for d in rows:
            for layer, kind in d["methods"][name]["removed"]:
                key = f"{kind} {layer}"
                freq[key] = freq.get(key, 0) + 1
        sets = {json.dumps(sorted(map(tuple, d["methods"][name]["removed"]))) for d in rows}
        out["methods"][name] = {
            "ppl": {q: percentile(ppl, p) for q, p in (("min", 0), ("p10", 10), ("p25", 25), ("median", 50),
                                                       ("p75", 75), ("p90", 90), ("max", 100))},
            "n_attn": {"min": min(n_attn), "median": percentile(n_attn, 50), "max": max(n_attn)},
            "n_mlp": {"min": min(n_mlp), "median": percentile(n_mlp, 50), "max": max(n_mlp)},
            "distinct_removal_sets": len(sets),
            "removal_frequency": dict(sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))),
        }
    if "sprint" in methods and len(methods) > 1:
        ranks = [d["sprint_rank"] for d in rows]
        out["sprint_rank"] = {str(r): ranks.count(r) for r in sorted(set(ranks))}
        out["sprint_beats_best_other"] = sum(d["sprint_vs_best_other"]["diff"] < 0 for d in rows)
        out["sprint_separated_better"] = sum(d["sprint_vs_best_other"]["hi"] < 0 for d in rows)
        out["sprint_separated_worse"] = sum(d["sprint_vs_best_other"]["lo"] > 0 for d in rows)
    return out


def _compare(draw: dict, corpus_windows: int) -> None:
    names = list(draw["methods"])
    samples = {n: {"w": (range(corpus_windows), draw["methods"][n]["window_nll"])} for n in names}
    verdicts = stats.compare_to_best(samples, stats.perplexity, higher_is_better=False)
    order = sorted(names, key=lambda n: draw["methods"][n]["ppl"])
    for n in names:
        draw["methods"][n]["rank"] = order.index(n) + 1
        draw["methods"][n]["mark"] = verdicts[n].mark
    if "sprint" in names and len(names) > 1:
        draw["sprint_rank"] = order.index("sprint") + 1
        best_other = min((n for n in names if n != "sprint"), key=lambda n: draw["methods"][n]["ppl"])
        d = stats.paired_bootstrap(samples["sprint"], samples[best_other], stats.perplexity)
        draw["sprint_vs_best_other"] = {"method": best_other, "diff": d.estimate, "lo": d.lo, "hi": d.hi}


def run_latency_draws(
    model_path: str, calibration: torch.Tensor, calibration_path: str, table_path: str, output: str | Path, *,
    target: float = 1.2, k: int = 20, seed: int = 0, methods: tuple[str, ...] = ("sprint", *BASELINES),
    records: dict[str, str] | None = None, include_point: bool = True, mirror: Path | None = None,
    ppl_seq_len: int = 256, ppl_windows: int = 32, eval_batch_size: int = 8, prune_settings: dict | None = None,
    load: Callable[[], tuple[Any, Any]] | None = None,
) -> dict:
    """Run the analysis and write ``output`` (JSON); returns its content.

    ``records``: method -> a pruning.json whose removal order is taken instead of computing it (checked against the
    model, calibration and settings; its order must reach the target under every draw).  ``load()`` returns a fresh
    (model, tokenizer) of ``model_path`` (default: :func:`sprint.model.loading.load_model` on the CPU in fp32).
    ``prune_settings``: PruneConfig fields for every method (e.g. ``ppl_windows`` for SLEB / BlockPruner).
    """
    if load is None:
        from sprint.model.loading import load_model

        def load():
            return load_model(model_path, device="cpu", dtype="float32")

    output = Path(output)
    table = load_latency(table_path)
    tables = drawing.bootstrap_tables(table, k, seed)
    labelled = ([("point", table)] if include_point else []) + [(i, t) for i, t in enumerate(tables)]
    settings = dict(prune_settings or {})
    header = {
        "analysis": "latency-draws", "model": model_path, "target": target, "k": k, "seed": seed,
        "methods": list(methods), "include_point": include_point,
        "table": {"path": str(table_path), "sha256": _sha256(table_path), "dense_s": table.dense_s,
                  "t_attn_s": table.t_attn_s, "t_mlp_s": table.t_mlp_s, "rounds": len(table.extra["times_s"]["dense"]),
                  "n_removed": table.extra.get("n_removed"), "ci95": table.extra.get("ci95")},
        "calibration": {"path": str(calibration_path), "n": int(calibration.shape[0]),
                        "seq_len": int(calibration.shape[1]), "sha256": _sha256(calibration_path)},
        "evaluation": {"corpus": "wikitext2", "seq_len": ppl_seq_len, "windows": ppl_windows},
        "prune_settings": settings,
    }
    result: dict[str, Any] = {**header, "orders": {}, "perplexity": {}, "draws": []}
    if output.is_file():  # resume
        old = json.loads(output.read_text(encoding="utf-8"))
        if {key: old.get(key) for key in header} == header:
            result.update({key: old[key] for key in ("orders", "perplexity", "draws") if key in old})
            log.info("resuming %s: %d draws done", output, len(result["draws"]))
        else:
            log.info("%s holds another analysis's settings: starting over", output)
    model, tokenizer = load()
    cfg_of = {name: PruneConfig(method=name, target_speedup=[target], **settings) for name in methods}
    windows_scored: list[int] = []

    def evaluate(net) -> dict:
        rec = perplexity_record(net, tokenizer, mirror, ppl_seq_len, ppl_windows, eval_batch_size)
        windows_scored.append(len(rec["wikitext2_window_nll"]))
        return _ppl_entry(rec, "wikitext2")

    # the baselines' orders, once
    for name in methods:
        if name == "sprint" or name in result["orders"]:
            continue
        t0 = time.perf_counter()
        if records and name in records:
            record = json.loads(Path(records[name]).read_text(encoding="utf-8"))
            check_record(record, name, model_path, cfg_of[name], calibration)
            steps = steps_from_record(record, name)
            if not drawing.reached(steps, [t for _, t in labelled], target):
                raise SprintError(f"the {name} record {records[name]} stops before {target:g}x under some drawn "
                                  "table: compute its order instead (leave it out of --orders-from)")
            source = {"record": records[name], "sha256": _sha256(records[name])}
        else:
            steps = baseline_order(model, calibration, [t for _, t in labelled], target, cfg_of[name])
            set_removed(model, [])
            source = {"computed": True}
        result["orders"][name] = {**source, "steps": steps, "seconds": time.perf_counter() - t0}
        log.info("%s order: %d steps (%s)", name, len(steps), "record" if "record" in source else "computed")
        atomic_write_json(output, result)

    done = {d["index"] for d in result["draws"]}
    runs = result.setdefault("sprint_runs", {})  # str(draw index) -> SPRINT's removals under that draw
    pending = {index: tab for index, tab in labelled if index not in done and str(index) not in runs}
    if "sprint" in methods and pending:
        t0 = time.perf_counter()

        def finished(index, removals, net) -> None:
            removed = [(r.layer, r.kind) for r in removals]
            key = "sprint:" + json.dumps(removed)
            if key not in result["perplexity"]:
                result["perplexity"][key] = evaluate(net)
            runs[str(index)] = {"removed": [list(r) for r in removed], "steps": [r.to_dict() for r in removals],
                                "key": key}
            atomic_write_json(output, result)
            log.info("SPRINT under draw %s: %s (%.0f s so far)", index, removed, time.perf_counter() - t0)

        net, _ = load()
        computed = sprint_under_tables(net, calibration, pending, target, cfg_of["sprint"], finished)
        del net
        result["sprint_steps"] = result.get("sprint_steps", 0) + computed
        result["sprint_seconds"] = result.get("sprint_seconds", 0.0) + time.perf_counter() - t0
        atomic_write_json(output, result)

    for index, tab in labelled:
        if index in done:
            continue
        t0 = time.perf_counter()
        row: dict[str, Any] = {"index": index, "dense_s": tab.dense_s, "t_attn_s": tab.t_attn_s,
                               "t_mlp_s": tab.t_mlp_s, "mlp_share": tab.t_mlp_s / tab.dense_s,
                               "attn_share": tab.t_attn_s / tab.dense_s, "mlp_over_attn": tab.t_mlp_s / tab.t_attn_s,
                               "rounds": tab.extra.get("draw", {}).get("rounds"), "methods": {}}
        for name in methods:
            if name == "sprint":
                run = runs[str(index)]
                removed = [tuple(r) for r in run["removed"]]
                detail, key = run["steps"], run["key"]
            else:
                steps = result["orders"][name]["steps"]
                n = drawing.cut(steps, tab, target)
                removed = [tuple(r) for step in steps[:n] for r in step]
                detail = None
                key = "set:" + json.dumps(sorted(removed))
                if key not in result["perplexity"]:
                    set_removed(model, removed)
                    result["perplexity"][key] = evaluate(model)
                    set_removed(model, [])
            n_attn, n_mlp = drawing.counts(removed)
            row["methods"][name] = {"removed": [list(r) for r in removed], "n_attn": n_attn, "n_mlp": n_mlp,
                                    "estimated_speedup": tab.speedup(n_attn, n_mlp), "key": key,
                                    "ppl": result["perplexity"][key]["ppl"],
                                    "window_nll": result["perplexity"][key]["window_nll"]}
            if detail is not None:
                row["methods"][name]["steps"] = detail
        _compare(row, len(next(iter(row["methods"].values()))["window_nll"]))
        for entry in row["methods"].values():
            del entry["window_nll"]  # kept once, under "perplexity"
        row["seconds"] = time.perf_counter() - t0
        result["draws"].append(row)
        result["summary"] = _summary(result)
        atomic_write_json(output, result)
        log.info("draw %s: t_mlp/t_attn %.2f; %s", index, row["mlp_over_attn"], ", ".join(
            f"{n} {e['n_attn']}a+{e['n_mlp']}m ppl {e['ppl']:.1f}" for n, e in row["methods"].items()))
    result["summary"] = _summary(result)
    atomic_write_json(output, result)
    return result
