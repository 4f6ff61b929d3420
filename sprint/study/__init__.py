"""A study: many pipeline cells run one after another for hours, each committed as it finishes, so that it survives
the end of a session and a move to a fresh machine.

A study file (YAML) names a pipeline configuration, an output folder in the repository and the cells, in the order
they run::

    config: workflow/config/cpu-study.yaml    # a complete pipeline configuration (snakemake --configfile)
    output: docs/results/smollm2-cpu          # committed: latency tables, metrics, pruning records, stage times
    cells:                                    # each line: model x methods x seeds x points
      - {model: smollm2-135m, methods: [dense]}
      - {model: smollm2-135m, methods: [sprint, shortgpt], seeds: [0], points: [x1.2]}
      - {model: smollm2-135m, methods: [sprint, strongest-baseline], seeds: [1, 2], points: [x1.2]}

A cell is one metrics file of the pipeline (``results/{model}/metrics/{method}/seed{seed}/{point}.json``), and
``snakemake --configfile CONFIG <that file>`` makes it with whatever it needs (model, calibration, pruning).
``strongest-baseline`` is the sublayer baseline with the best mean accuracy (then perplexity) at that point and
seed 0 among the cells already done of the main comparison (the first configured model).

Latency tables are measured once: every model whose ``latency_table`` lies under the output folder and does not
exist yet is profiled first (with a configuration of that model alone, minus that key), and the table is committed; from then on the
pipeline copies it (``sprint profile --table``), so that a fresh machine prunes with the same table: a new profile
on a noisy VM can change what SPRINT removes first.

After each cell its small files are copied under ``output/results/{model}/`` (the layout ``sprint report`` reads)
and committed with ``git commit -- output``, which leaves any other staged or modified file alone.  A cell whose
metrics file is already there is skipped: rerunning the study resumes it, on any machine with the repository.

    python -m sprint.study plan workflow/study/smollm2-cpu.yaml    # the cells, done or to do
    python -m sprint.study run workflow/study/smollm2-cpu.yaml     # run what is left (resumes), committing
    python -m sprint.study page workflow/study/smollm2-cpu.yaml    # docs/results/smollm2-cpu.md from the cells done
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sprint.errors import SprintError
from sprint.methods import REGISTRY

log = logging.getLogger("sprint")
STRONGEST = "strongest-baseline"
BASELINES = ("shortgpt", "sleb", "blockpruner")


@dataclass(frozen=True)
class Cell:
    model: str
    method: str
    seed: int = 0
    point: str = "x1"

    @property
    def metrics(self) -> str:
        """The pipeline's metrics file of this cell (relative to the repository)."""
        if self.method == "dense":
            return f"results/{self.model}/metrics/dense.json"
        return f"results/{self.model}/metrics/{self.method}/seed{self.seed}/{self.point}.json"

    @property
    def pruned(self) -> str | None:
        return None if self.method == "dense" else f"results/{self.model}/pruned/{self.method}/seed{self.seed}/{self.point}"

    @property
    def prune_job(self) -> str | None:
        """The folder the pipeline's pruning job for this cell writes (a sublayer method's holds every target)."""
        if self.method == "dense" or self.method not in REGISTRY:
            return None
        return self.pruned if REGISTRY[self.method].kind != "sublayer" else str(Path(self.pruned).parent)

    def __str__(self) -> str:
        return self.model + ("/dense" if self.method == "dense" else f"/{self.method}/seed{self.seed}/{self.point}")


@dataclass
class Study:
    path: Path
    root: Path  # the repository: the pipeline runs here, and output lies in it
    config_path: Path
    config: dict[str, Any]
    output: Path
    lines: list[dict[str, Any]]

    def done(self, cell: Cell) -> bool:
        return (self.output / cell.metrics).is_file()

    def tables(self) -> dict[str, Path]:
        """model -> its latency_table, for the tables this study measures itself (under the output folder; a table
        that several models share is measured on the first)."""
        out: dict[str, Path] = {}
        for name, entry in self.config["base"]["models"].items():
            table = entry.get("latency_table") if isinstance(entry, dict) else None
            path = (self.root / table).resolve() if table else None
            if path and path.is_relative_to(self.output.resolve()) and path not in out.values():
                out[name] = path
        return out

    def cells(self, resolve: bool = True) -> list[Cell]:
        """Every cell in order; ``strongest-baseline`` resolved from the cells done (left as is when it cannot be
        yet, or with ``resolve=False``)."""
        out: list[Cell] = []
        for line in self.lines:
            for method in line["methods"]:
                if method == "dense":
                    out.append(Cell(line["model"], "dense"))
                    continue
                for seed in line.get("seeds", [0]):
                    for point in line["points"]:
                        name = self.strongest(point) if method == STRONGEST and resolve else None
                        out.append(Cell(line["model"], name or method, int(seed), str(point)))
        return list(dict.fromkeys(out))

    def strongest(self, point: str) -> str | None:
        """The baseline with the best mean accuracy (then the lower perplexity) at ``point``, seed 0, among the
        cells done of the main comparison (the first configured model, whichever model the cell is of: a
        controlled change meets the rival of the default setting); None while none is."""
        main = next(iter(self.config["base"]["models"]))
        scores = {}
        for method in BASELINES:
            path = self.output / Cell(main, method, 0, point).metrics
            if path.is_file():
                d = json.loads(path.read_text(encoding="utf-8"))
                scores[method] = (d.get("mean_accuracy") or 0.0, -(d.get("wikitext2_ppl") or float("inf")))
        return max(scores, key=scores.get) if scores else None


def load_study(path: str | os.PathLike, root: str | os.PathLike = ".") -> Study:
    """Read and check a study file (every key named in its errors); its paths are relative to ``root``, the
    repository (the pipeline runs there)."""
    path, root = Path(path), Path(root).resolve()
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise SprintError(f"study file {path}: cannot read it ({err})") from None
    if not isinstance(spec, dict) or set(spec) != {"config", "output", "cells"}:
        raise SprintError(f"study file {path}: expected exactly the keys config, output and cells")
    config_path = root / spec["config"]
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise SprintError(f"study file {path}: config {spec['config']}: cannot read it ({err})") from None
    models = config["base"]["models"]
    known = {*REGISTRY, "dense", STRONGEST}
    for i, line in enumerate(spec["cells"]):
        where = f"study file {path}: cells[{i}]"
        if not isinstance(line, dict) or not {"model", "methods"} <= set(line) <= {"model", "methods", "seeds", "points"}:
            raise SprintError(f"{where}: expected model, methods and (for pruned models) seeds and points")
        if line["model"] not in models:
            raise SprintError(f"{where}: model {line['model']!r} is not in base.models of {spec['config']}")
        bad = [m for m in line["methods"] if m not in known]
        if bad:
            raise SprintError(f"{where}: unknown method(s) {', '.join(bad)}: expected dense, {STRONGEST} or a method "
                              "of the registry")
        if any(m != "dense" for m in line["methods"]) and not line.get("points"):
            raise SprintError(f"{where}: pruned models need points (x1.2, 2of4, ...)")
    return Study(path, root, config_path, config, (root / spec["output"]).resolve(), spec["cells"])


# ----------------------------------------------------------------------------------------------- running


def _snakemake(root: Path, config: Path, targets: list[str]) -> None:
    cmd = [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/default", "--configfile", str(config),
           "--", *targets]
    log.info("study: %s", " ".join(cmd[2:]))
    proc = subprocess.run(cmd, cwd=root, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SprintError(f"study: snakemake failed ({proc.returncode}) for {' '.join(targets)}: see the log above")


def _copy(root: Path, relative: str, dest_root: Path) -> Path | None:
    src = root / relative
    if not src.is_file():
        return None
    dest = dest_root / relative
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest)
    return dest


def _commit(study: Study, message: str) -> None:
    """Commit the study's output folder only (other staged or modified files stay as they are); retried while
    another git command holds the index."""
    out = str(study.output.relative_to(study.root))
    for attempt in range(5):
        add = subprocess.run(["git", "add", "--", out], cwd=study.root, capture_output=True, text=True)
        commit = add.returncode == 0 and subprocess.run(
            ["git", "commit", "-q", "-m", message, "--", out], cwd=study.root, capture_output=True, text=True)
        if add.returncode == 0 and commit.returncode == 0:
            return
        err = add.stderr if add.returncode else commit.stderr + commit.stdout
        if "index.lock" not in err:
            if "nothing to commit" in err or "no changes added" in err:
                return
            raise SprintError(f"study: git commit of {out} failed: {err.strip()}")
        time.sleep(2 + 3 * attempt)
    raise SprintError(f"study: git commit of {out} failed: the index stayed locked")


def measure_tables(study: Study) -> None:
    """Profile every model whose latency_table (under the output folder) does not exist yet; commit each table."""
    for model, table in study.tables().items():
        if table.is_file():
            continue
        config = copy.deepcopy(study.config)  # this model alone (the others' tables may not exist yet), profiled
        entry = config["base"]["models"][model]
        del entry["latency_table"]
        config["base"]["models"] = {model: entry}
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            yaml.safe_dump(config, f, sort_keys=False)
        try:
            _snakemake(study.root, Path(f.name), [f"results/{model}/latency.json"])
        finally:
            os.unlink(f.name)
        table.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(study.root / f"results/{model}/latency.json", table)
        _copy(study.root, f"results/benchmarks/profile/{model}.tsv", study.output)  # the measuring job's time
        _commit(study, f"study {study.path.stem}: latency table of {model}, measured once and kept")


def collect(study: Study, cell: Cell) -> None:
    """Copy a finished cell's small files (metrics, pruning record, latency table, pruning and evaluation times) into
    the output."""
    files = [f"results/{cell.model}/latency.json"]  # (the profile's time is the measuring job's, kept by measure_tables)
    if cell.method == "dense":
        files.append(f"results/benchmarks/evaluate/{cell.model}/dense.tsv")
    else:
        kind = REGISTRY[cell.method].kind
        files += [f"{cell.pruned}/pruning.json",
                  f"results/benchmarks/evaluate/{cell.model}/{cell.method}/seed{cell.seed}/{cell.point}.tsv",
                  f"results/benchmarks/prune/{cell.model}/{cell.method}/seed{cell.seed}"
                  + (".tsv" if kind == "sublayer" else f"/{cell.point}.tsv")]
    for relative in files:
        _copy(study.root, relative, study.output)
    if _copy(study.root, cell.metrics, study.output) is None:  # last: its presence marks the cell done
        raise SprintError(f"study: {cell} finished without {cell.metrics}")


def release(study: Study, cell: Cell) -> None:
    """Delete the checkpoints of ``cell``'s pruning job once every cell that reads them is done: they are the study's
    bulk (about 0.5 GB per SmolLM2 checkpoint, several per job), and its committed files are what it keeps."""
    job = cell.prune_job
    if job and all(study.done(c) for c in study.cells() if c.prune_job == job):
        shutil.rmtree(study.root / job, ignore_errors=True)


def run(study: Study, max_cells: int | None = None) -> list[Cell]:
    """Measure the missing latency tables, then run the cells not done yet, in order, committing each; returns the
    cells run."""
    measure_tables(study)
    ran: list[Cell] = []
    while todo := [c for c in study.cells() if not study.done(c)]:  # again after each cell: it may resolve one
        cell = todo[0]
        if cell.method == STRONGEST:
            raise SprintError(f"study: {cell}: no baseline has been evaluated at {cell.point} (seed 0) yet, so the "
                              "strongest cannot be chosen: list those cells first")
        if max_cells is not None and len(ran) >= max_cells:
            break
        t0 = time.perf_counter()
        _snakemake(study.root, study.config_path, [cell.metrics])
        collect(study, cell)
        _commit(study, f"study {study.path.stem}: {cell} ({time.perf_counter() - t0:.0f} s)")
        release(study, cell)
        ran.append(cell)
    return ran


def plan(study: Study) -> list[str]:
    lines = []
    for model, table in study.tables().items():
        lines.append(f"{'done' if table.is_file() else 'to do'}  latency table of {model} -> "
                     f"{table.relative_to(study.root)}")
    for cell in study.cells():
        lines.append(f"{'done' if study.done(cell) else 'to do'}  {cell}")
    return lines


# ----------------------------------------------------------------------------------------------- the page


def _variant(study: Study, name: str) -> str:
    """What a model entry changes against the first one (its own calibration / latency settings)."""
    entry = study.config["base"]["models"][name]
    entry = entry if isinstance(entry, dict) else {}
    parts = [f"calibration {', '.join(f'{k}={v}' for k, v in entry['calibration'].items())}"
             if "calibration" in entry else "",
             f"latency {entry['latency'].get('prompt_len', '?')}+{entry['latency'].get('gen_len', '?')} tokens"
             if "latency" in entry else ""]
    return "; ".join(p for p in parts if p) or "the default setting"


def _verdicts(m, tests) -> list[tuple[str, str, str, str, str, str]]:
    """Per point and measure, the best method by the mean over seeds and SPRINT's paired marks: (point, measure,
    how many seeds, a short verdict for the summary, the full sentence, the best method's name)."""
    from sprint.methods import point_label
    from sprint.report import aggregate, method_name

    out = []
    agg = aggregate(m.runs, ["mean_accuracy", "wikitext2_ppl"])
    for point in dict.fromkeys(agg["point"]):
        rows = agg[agg["point"] == point]
        if "sprint" not in set(rows["method"]) or len(rows) < 2:
            continue
        for measure, col, higher, unit in (("accuracy", "mean_accuracy", True, "%"), ("perplexity", "wikitext2_ppl",
                                                                                        False, "")):
            values = rows.set_index("method")[f"{col}_mean"]
            best = values.idxmax() if higher else values.idxmin()
            key = "acc" if measure == "accuracy" else "ppl"
            marks = tests[(tests["method"] == "sprint") & (tests["point"] == point)][f"{key}_mark"].dropna().tolist()
            others = tests[(tests["method"] != "sprint") & (tests["point"] == point)]
            counts = ", ".join(f"{mark} in {marks.count(mark)}" for mark in ("best", "≈", "worse") if mark in marks)
            worse = marks.count("worse")
            if best == "sprint":
                beaten = (others[f"{key}_mark"] == "worse").all() and not others.empty
                verdict = ("SPRINT is best and every other method is worse in the paired test" if beaten else
                           "SPRINT is best, but not every other method is separable from it")
                short = "best, every other method worse (paired)" if beaten else "best by the mean, not separable " \
                        "from every other method"
            elif worse and worse == len(marks):
                verdict = f"{method_name(best)} is best; SPRINT is worse than it in the paired test"
                short = f"worse than {method_name(best)} (paired{', every seed' if worse > 1 else ''})"
            elif worse:
                verdict = (f"{method_name(best)} is best by the mean; SPRINT is worse than it in the paired test in "
                           f"{worse} of {len(marks)} seeds")
                short = f"worse than {method_name(best)} in {worse} of {len(marks)} seeds (paired)"
            else:
                verdict = f"{method_name(best)} is best; SPRINT is indistinguishable from it in the paired test"
                short = f"not separable from {method_name(best)}, the best by the mean"
            n = int(rows["seeds"].max())
            rival = (values.drop("sprint").idxmax() if higher else values.drop("sprint").idxmin()) \
                if best == "sprint" else best
            pooled = _pooled(m, point, rival, key)
            if pooled:
                verdict += f"; over the {pooled[0]} seeds pooled, SPRINT − {method_name(rival)} {pooled[1]}"
                short += f"; {pooled[0]} seeds pooled: SPRINT − {method_name(rival)} {pooled[1]}"
            out.append((point, measure, f"{n} seed{'s' if n > 1 else ''}", short,
                        f"- **{point_label(point)}, {measure}** ({n} seed{'s' if n > 1 else ''}): {verdict} "
                        f"(SPRINT {values['sprint']:.2f}{unit}, {'next ' if best == 'sprint' else ''}"
                        f"{method_name(rival)} {values[rival]:.2f}{unit}; SPRINT's marks by seed: {counts or 'none'}).",
                        method_name(best)))
    return out


def _pooled(m, point: str, rival: str, key: str) -> tuple[int, str] | None:
    """SPRINT against ``rival`` over the calibration seeds both have at ``point``, read like :func:`_pooled_text`;
    None with fewer than 2 such seeds."""
    seeds = sorted(seed for method, p, seed in m.samples if method == "sprint" and p == point
                   and (m.samples[method, p, seed] or {}).get(key) and (m.samples.get((rival, p, seed)) or {}).get(key))
    if len(seeds) < 2:
        return None
    return len(seeds), _pooled_text([m.samples["sprint", point, seed] for seed in seeds],
                                    [m.samples[rival, point, seed] for seed in seeds], key)


def _pooled_text(mine: list, theirs: list, key: str) -> str:
    """Two models over the same calibration seeds (each item's mean over the seeds, paired:
    :func:`sprint.measure.stats.over_seeds`), read like :func:`_paired_text`."""
    from sprint.measure import stats

    return _paired_text({key: stats.over_seeds([s[key] for s in mine])},
                        {key: stats.over_seeds([s[key] for s in theirs])}, key, reading=True)


def _reading(text: str) -> str:
    """'better' / 'worse' / '≈' from a :func:`_paired_text` reading."""
    return text.rsplit("(", 1)[-1].rstrip(")")


def _summary(verdicts, turns: list[str]) -> list[str]:
    """The page's answer in a few lines: the verdicts of the main comparison, then each controlled change's lines
    (from :func:`_controlled`)."""
    from sprint.methods import point_label

    lines = ["## In short", "",
             "Generated from the paired tests below (same documents and windows for every model; one line per "
             "measure, then each controlled change on SPRINT itself and against the default setting's rivals):", ""]
    best = {measure: [(point, who) for point, m, _, _, _, who in verdicts if m == measure]
            for measure in ("accuracy", "perplexity")}
    if best["accuracy"]:
        won = [point for point, who in best["accuracy"] if who == "SPRINT"]
        others = "; ".join(f"{who} at {point_label(point)}" for point, who in best["accuracy"] if who != "SPRINT")
        lines.append(f"- **The paper's claim, SPRINT the most accurate at every speedup, "
                     f"{'holds' if len(won) == len(best['accuracy']) else 'does not hold'} here**: SPRINT has the best "
                     f"mean accuracy at {len(won)} of {len(best['accuracy'])} targets{f' (the best: {others})' if others else ''}"
                     f" and the lowest perplexity at {sum(who == 'SPRINT' for _, who in best['perplexity'])} of "
                     f"{len(best['perplexity'])}; the paired tests next say which gaps are more than noise.")
    for measure in ("accuracy", "perplexity"):
        found = [f"at {point_label(point)} ({seeds}), {short}" for point, m, seeds, short, *_ in verdicts if m == measure]
        lines.append(f"- SPRINT's {measure} among the methods at its targets: "
                     f"{'; '.join(found) if found else 'no target with SPRINT and another method done yet'}.")
    return lines + turns + [""]


def _detectable(m) -> list[str]:
    """What the paired test can see at this study's size: the difference it finds with 80% power (5% two-sided),
    from the spread of the pairs SPRINT forms with every other method at the same point and seed."""
    import numpy as np

    from sprint.measure import stats

    found: dict[str, list[float]] = {"acc": [], "ppl": []}
    for (method, point, seed), sample in m.samples.items():
        ref = m.samples.get(("sprint", point, seed))
        if method == "sprint" or not ref:
            continue
        for key, stat in (("acc", stats.mean_accuracy), ("ppl", stats.perplexity)):
            if sample.get(key) and ref.get(key):
                mde = stats.detectable_difference(ref[key], sample[key], stat)
                found[key].append(100 * mde if key == "acc" else
                                  100 * mde / float(stat(stats.paired([ref[key]]))[0]))
    if not found["acc"]:
        return []
    docs = next(sum(len(ids) for ids, _ in sample["acc"].values()) for sample in m.samples.values() if sample.get("acc"))
    windows = next((len(sample["ppl"][k][0]) for sample in m.samples.values() if sample.get("ppl")
                    for k in sample["ppl"]), 0)
    acc, ppl = np.array(found["acc"]), np.array(found["ppl"])
    lines = [f"What the paired test can detect here (80% power, 5% two-sided, from the spread of SPRINT's "
             f"{len(acc)} pair(s) with the other methods at the same target and seed): a difference in mean accuracy "
             f"of {np.median(acc):.1f} pp (range {acc.min():.1f}–{acc.max():.1f}) on these {docs} documents; smaller "
             "true differences mostly read as ≈."]
    if len(ppl):
        lines[0] += (f" In perplexity, {np.median(ppl):.1f}% of SPRINT's (range {ppl.min():.1f}–{ppl.max():.1f}%) "
                     f"over {windows} windows.")
    return lines + [""]


def _paired_text(a, b, key: str, reading: bool = False) -> str:
    """stat(a) − stat(b) with its paired 95% CI, in pp for accuracy; with ``reading``, what it says about ``a``
    ("better", "worse": the CI excludes 0 on that side; "≈": it includes 0) after the unit; '' unless both samples hold ``key``."""
    from sprint.measure import stats

    stat, scale = (stats.mean_accuracy, 100) if key == "acc" else (stats.perplexity, 1)
    if not (a or {}).get(key) or not (b or {}).get(key):
        return ""
    d = stats.paired_bootstrap(a[key], b[key], stat)
    text = f"{scale * d.estimate:+.2f} [{scale * d.lo:+.2f}, {scale * d.hi:+.2f}]"
    if not reading:
        return text
    up = d.lo > 0 if key == "acc" else d.hi < 0  # higher accuracy, lower perplexity
    down = d.hi < 0 if key == "acc" else d.lo > 0
    return f"{text}{' pp' if key == 'acc' else ''} ({'better' if up else 'worse' if down else '≈'})"


def _against(text: str) -> str:
    """'more accurate than' / 'as accurate as (≈)' / 'less accurate than' from a _paired_text reading."""
    return ("more accurate than" if text.endswith("(better)") else "less accurate than" if text.endswith("(worse)")
            else "not separable in accuracy from")


def _controlled(study: Study, base, other, name: str) -> tuple[list[str], list[str]]:
    """Every method run under ``other``'s setting against itself under the default one, point by point and seed by
    seed (and, at a point with several seeds, the seeds pooled); then SPRINT against each other method within each
    setting (paired).  Returns the section's lines and its lines for the page's short answer: SPRINT against itself
    per point, and per rival measured in both settings whether SPRINT's accuracy against it turns."""
    import math

    import pandas as pd

    from sprint.methods import point_label
    from sprint.report import markdown_table, method_name

    def table(m) -> str:
        lat = m.latency or {}
        return (f"t_attn {1000 * lat.get('t_attn_s', math.nan):.2f} ms, t_mlp {1000 * lat.get('t_mlp_s', math.nan):.2f}"
                f" ms (ratio {lat.get('t_mlp_s', math.nan) / lat.get('t_attn_s', math.nan):.2f}) of dense "
                f"{lat.get('dense_s', math.nan):.3f} s at {lat.get('prompt_len', '?')}+{lat.get('gen_len', '?')} tokens")

    def find(m, key):
        rows = m.runs[(m.runs["method"] == key[0]) & (m.runs["point"] == key[1]) & (m.runs["seed"] == key[2])]
        return rows.iloc[0] if not rows.empty else None

    runs = other.runs.assign(first=other.runs["method"] != "sprint").sort_values(["first", "method", "point", "seed"])
    rows, rivals, turns = [], [], []
    selves: dict[str, list[tuple]] = {}  # point -> [(seed, SPRINT under the change, SPRINT by default)]
    compared: dict[tuple, list] = {}  # (rival, point) -> the seeds with SPRINT and the rival in both settings
    for r in runs.itertuples():
        key = (r.method, r.point, r.seed)
        mine, theirs = other.samples.get(key), base.samples.get(key)
        if r.method == "sprint" and mine and theirs:
            selves.setdefault(r.point, []).append((r.seed, mine, theirs))
        for label, row in (("default", find(base, key)), (name, r)):
            if row is None:
                continue
            removed = row.removed if isinstance(row.removed, list) else []
            n_attn = sum(kind == "attn" for _, kind in removed)
            rows.append({"method": method_name(r.method), "target": point_label(r.point), "seed": r.seed,
                         "setting": label, "removed": f"{n_attn} attn + {len(removed) - n_attn} MLP",
                         "measured speedup (×)": f"{row.measured_speedup:.3f} [{row.measured_speedup_lo:.3f}, "
                                                 f"{row.measured_speedup_hi:.3f}]",
                         "mean acc. (%)": f"{row.mean_accuracy:.2f}", "WikiText-2 ppl": f"{row.wikitext2_ppl:.2f}",
                         "Δ acc. (pp) vs default [95% CI]": _paired_text(mine, theirs, "acc") if label == name else "",
                         "Δ ppl vs default [95% CI]": _paired_text(mine, theirs, "ppl") if label == name else ""})
        sprint_key = ("sprint", r.point, r.seed)
        if r.method != "sprint" and sprint_key in other.samples:
            acc = {setting: _paired_text(m.samples.get(sprint_key), m.samples.get(key), "acc", reading=True)
                   for setting, m in ((name, other), ("default", base)) if key in m.samples}
            within = [f"under `{setting}`: accuracy {acc[setting]}, perplexity "
                      f"{_paired_text(m.samples.get(sprint_key), m.samples.get(key), 'ppl', reading=True)}"
                      for setting, m in ((name, other), ("default", base)) if key in m.samples]
            rivals.append(f"- SPRINT − {method_name(r.method)} at {point_label(r.point)}, seed {r.seed} (paired, 95% "
                          f"CI; better / worse: for SPRINT, ≈: the CI includes 0): {'; '.join(within)}.")
            if acc.get("default") and acc.get(name):
                compared.setdefault((r.method, r.point), []).append(r.seed)
    def versus(m, method, point, seeds, key):  # SPRINT − method in setting m over ``seeds``, pooled when several
        mine = [m.samples["sprint", point, seed] for seed in seeds]
        theirs = [m.samples[method, point, seed] for seed in seeds]
        return _paired_text(mine[0], theirs[0], key, True) if len(seeds) == 1 else _pooled_text(mine, theirs, key)

    for (method, point), seeds in compared.items():
        acc = {setting: versus(m, method, point, seeds, "acc") for setting, m in ((name, other), ("default", base))}
        how = f"seed {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} seeds pooled"
        if len(seeds) > 1:
            rivals.append(f"- SPRINT − {method_name(method)} at {point_label(point)}, {how}: "
                          + "; ".join(f"under `{setting}`: accuracy {acc[setting]}, perplexity {versus(m, method, point, seeds, 'ppl')}"
                                      for setting, m in ((name, other), ("default", base))) + ".")
        turns.append(f"- Under `{name}` ({_variant(study, name)}, one change): SPRINT is {_against(acc['default'])} "
                     f"{method_name(method)} in the default setting and {_against(acc[name])} it under the change "
                     f"({point_label(point)}, {how}; SPRINT − {method_name(method)}: {acc['default']} by default, "
                     f"{acc[name]} under the change).")
        rivals.append(f"  So SPRINT is {_against(acc['default'])} {method_name(method)} in the default setting and "
                      f"{_against(acc[name])} it under `{name}` ({point_label(point)}, {how}), each measured at its "
                      "own setting.")
    itself = []
    for point, found in selves.items():
        if len(found) == 1:
            seed, mine, theirs = found[0]
            how = f"seed {seed}"
            acc, ppl = _paired_text(mine, theirs, "acc", True), _paired_text(mine, theirs, "ppl", True)
        else:
            how = (f"{len(found)} seeds pooled; accuracy by seed: "
                   f"{' / '.join(_reading(_paired_text(mine, theirs, 'acc', True)) for _, mine, theirs in found)}")
            acc = _pooled_text([mine for _, mine, _ in found], [theirs for *_, theirs in found], "acc")
            ppl = _pooled_text([mine for _, mine, _ in found], [theirs for *_, theirs in found], "ppl")
        itself.append(f"at {point_label(point)} ({how}): accuracy {acc}, perplexity {ppl}")
    if itself:
        turns.insert(0, f"- Under `{name}` ({_variant(study, name)}, one change), SPRINT against itself in the default "
                        f"setting (paired, change − default; better / worse / ≈ for the change): {'; '.join(itself)}.")
    lines = [f"## Controlled change: {_variant(study, name)} (`{name}`)", "",
             f"- Latency tables: default {table(base)}; `{name}` {table(other)}.", ""]
    if not rows:
        return lines + ["_no cell of this setting done yet_", ""], turns
    return lines + ["Each method under both settings (same documents and windows; Δ: paired bootstrap, this setting "
                    "− the default, same target and seed; each setting's speedup is measured at its own token "
                    "lengths):", "", markdown_table(pd.DataFrame(rows)), "", *turns[:1 if itself else 0],
                    *rivals, ""], turns


def page(study: Study) -> Path:
    """Write the study's results page (``output`` + ``.md``) and its full report (``output/report.md`` with its
    figures and CSVs) from the committed cells; returns the page."""
    from sprint.io import atomic_write_text
    from sprint.report import load_benchmarks, load_results, markdown_table, paired_tests, summary_table, write_report

    results = study.output / "results"
    names = [n for n in study.config["base"]["models"] if (results / n / "metrics").is_dir()]
    if not names:
        raise SprintError(f"study: no cell done yet under {results}")
    write_report(results, study.output / "report.md")
    models = {n: load_results(results, n) for n in names}
    main_name, main = names[0], models[names[0]]
    tests, _ = paired_tests(main)
    verdicts = _verdicts(main, tests)
    cells = study.cells()
    done = [c for c in cells if study.done(c)]
    lat = main.latency or {}
    cfg = study.config
    bench = load_benchmarks(results, list(study.config["base"]["models"]))
    rel = os.path.relpath(study.output, study.output.parent)
    ev = cfg["evaluate"]
    lines = [
        f"# The {study.path.stem} study", "",
        f"Generated by `python -m sprint.study page {os.path.relpath(study.path.resolve(), study.root)}` from the "
        f"{len(done)} of "
        f"{len(cells)} cells done (committed under `{study.output.relative_to(study.root)}/`); the full report, with "
        f"every table and figure, is [{rel}/report.md]({rel}/report.md).", "",
        "## Machine, settings and budget", "",
        f"- Machine: {lat.get('device', 'unknown')}; latency protocol: {cfg['latency']['timing']} timing on "
        f"{cfg['latency']['threads']} thread(s), at least {cfg['latency']['rounds']} rounds, 95% CI within "
        f"±{100 * cfg['latency']['max_spread']:.1f}%.",
        f"- Configuration: `{study.config_path.relative_to(study.root)}`: calibration {cfg['calibration']['n']} × "
        f"{cfg['calibration']['seq_len']} tokens of WikiText-2; targets "
        f"{', '.join(f'{t}×' for t in cfg['prune']['target_speedups'])}; SLEB / BlockPruner perplexity on "
        f"{cfg['prune'].get('ppl_windows') or 'all'} calibration window(s) (budget); "
        f"{ev.get('limit') or 'all'} documents per task ({', '.join(ev['tasks'])}), the same for every model; "
        f"perplexity on {'the whole WikiText-2 test split' if ev.get('ppl_max_windows') is None else str(ev['ppl_max_windows']) + ' windows'}"
        f" in {ev['ppl_seq_len']}-token windows.",
        f"- Job time of the cells done: {bench['wall_s'].sum() / 3600:.2f} h in all" if not bench.empty else
        "- Job time: no benchmark files yet", "",
        markdown_table(bench.round(1)) if not bench.empty else "", "",
        f"## Main comparison (`{main_name}`)", "",
        "Mean ± sample std over seeds (one seed: accuracy ± its stderr, perplexity and speedup [95% CI]); _vs best_: "
        "paired test against the best method at the same target and seed, one mark per seed.", "",
        markdown_table(summary_table(main, tests)), "",
        "In words (best by the mean over seeds; SPRINT's paired marks against the best, per seed):", "",
        *([line for *_, line, _ in verdicts] or ["- _no point with SPRINT and another method evaluated yet_"]), "",
        *_detectable(main),
        *(f"![{what} vs measured speedup, `{main_name}`]({rel}/report/{main_name}_{stem}.png)\n"
          for what, stem in (("Accuracy", "accuracy_speedup"), ("Perplexity", "ppl_speedup"))
          if (study.output / "report" / f"{main_name}_{stem}.png").is_file()),
    ]
    turns = []
    for name in names[1:]:
        more, found = _controlled(study, main, models[name], name)
        lines += more
        turns += found
    at = lines.index("## Machine, settings and budget")
    lines[at:at] = _summary(verdicts, turns)
    lines += ["## Cells", "", *(f"- {'done' if study.done(c) else 'to do'}: `{c}`" for c in cells), ""]
    out = study.output.with_suffix(".md")
    atomic_write_text(out, "\n".join(lines).rstrip() + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sprint.study", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("plan", "run", "page"), help="plan: list the cells, done or to do; run: "
                        "run the missing latency tables and cells in order, committing each (resumes); page: write the "
                        "results page (OUTPUT.md) and the full report from the cells done")
    parser.add_argument("study", help="study file (YAML), e.g. workflow/study/smollm2-cpu.yaml")
    parser.add_argument("--max-cells", type=int, default=None, help="stop after this many cells")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        study = load_study(args.study)
        if args.action == "plan":
            print("\n".join(plan(study)))
        elif args.action == "page":
            log.info("study: page written to %s", page(study))
        else:
            ran = run(study, args.max_cells)
            log.info("study: %d cell(s) run; %s", len(ran), "all done" if all(map(study.done, study.cells()))
                     else "cells remain")
    except SprintError as err:
        print(f"python -m sprint.study: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
