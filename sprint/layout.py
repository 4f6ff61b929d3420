"""The layout of results: where each file of a results folder lies, and the names of a pruned model's operating
points (the folder names under a method, the metrics files and the report's labels).

The results tree (:class:`ResultsTree`), written by the pipeline under ``results/`` and read by the report; a study
keeps a copy of its small files in the same layout::

    {model}/latency.json                                    the latency table (profile)
    {model}/speedup.json                                    measured speedups timed together (latency.speedups)
    {model}/llamacpp.json                                   llama.cpp serving speedups (the export stage)
    {model}/pruned/{method}/seed{seed}/{point}/             a pruned checkpoint, with its pruning.json
    {model}/journals/{method}/seed{seed}/                   the journal of a prune job until it completes
    {model}/metrics/dense.json                              evaluation of the dense model
    {model}/metrics/{method}/seed{seed}/{point}.json        evaluation of a pruned model
    benchmarks/{stage}/{job}.tsv, logs/{stage}/{job}.log    Snakemake's benchmark and log of every job
    report.md, report/                                      the report, its tables and figures

A point is a pruned model's operating point, as paths, metrics files and the report name it: "x1.2" for a sublayer
method's target speedup; for a one-shot method its setting: "2of4" (N:M, N weights kept of every M) or "u50"
(unstructured, 50% of the weights zeroed) for kind "weights", "s25" (25% of the hidden width sliced away) for kind
"slicing", "c20" for kind "structured". DVC and Snakemake put these names into paths, hence no ':' or '%'.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any

WEIGHT_PATTERNS = ("2:4", "4:8")
_SETTING = re.compile(r"(?:(?P<n>[1-9][0-9]*)of(?P<m>[1-9][0-9]*)|u(?P<pct>[1-9][0-9]?)|s(?P<slice>[1-9][0-9]?)"
                      r"|c(?P<struct>[1-9][0-9]?))")
SETTING_FORMS = {"weights": f"{' or '.join(p.replace(':', 'of') for p in WEIGHT_PATTERNS)} (N of every M weights "
                            "kept) or uP (unstructured, P% of the weights zeroed: u50)",
                 "slicing": "sP (P% of the hidden width sliced away: s25)",
                 "structured": "cP (P% of the query heads and MLP channels of the pruned layers removed: c20)"}


def setting_options(name: str, kind: str | None = None) -> dict[str, Any]:
    """A one-shot method's setting name -> its PruneConfig fields: "2of4" -> pattern 2:4, sparsity 0.5; "u60" ->
    unstructured, sparsity 0.6; "s25" -> slicing 0.25.  With ``kind``, only that kind's forms are accepted.
    ValueError naming what is accepted otherwise."""
    match = _SETTING.fullmatch(str(name))
    found = None if match is None else "slicing" if match["slice"] else "structured" if match["struct"] else "weights"
    if (found is None or (kind is not None and found != kind)
            or (match["n"] and f"{match['n']}:{match['m']}" not in WEIGHT_PATTERNS)):
        forms = SETTING_FORMS[kind] if kind else " or ".join(SETTING_FORMS.values())
        raise ValueError(f"{kind + ' ' if kind else ''}setting {name!r}: expected {forms}")
    if match["slice"]:
        return {"slicing": int(match["slice"]) / 100}
    if match["struct"]:
        return {"structured_ratio": int(match["struct"]) / 100}
    if match["pct"]:
        return {"pattern": "unstructured", "sparsity": int(match["pct"]) / 100}
    n, m = int(match["n"]), int(match["m"])
    return {"pattern": f"{n}:{m}", "sparsity": (m - n) / m}


def point_name(target: float | None = None, pattern: str | None = None, sparsity: float | None = None,
               slicing: float | None = None, structured_ratio: float | None = None) -> str:
    """The point's name: ``x{target:g}`` for a target speedup, ``s{percent}`` for a slicing ratio (s25: 25% of the
    hidden width deleted), ``c{percent}`` for a structured ratio, else the weight setting (see
    :func:`setting_options`)."""
    if target is not None:
        return f"x{float(target):g}"
    if slicing is not None:
        return f"s{round(100 * float(slicing)):d}"
    if structured_ratio is not None:
        return f"c{round(100 * float(structured_ratio)):d}"
    if pattern is None:
        raise ValueError("a point needs a target speedup, a slicing ratio or a weight pattern")
    if pattern != "unstructured":
        return pattern.replace(":", "of")
    return f"u{round(100 * float(sparsity)):d}"


def point_label(name: str) -> str:
    """How the report shows a point: "1.2×", "2:4", "50% unstr.", "25% sliced"."""
    if name.startswith("x"):
        return f"{name[1:]}×"
    setting = setting_options(name)
    if "slicing" in setting:
        return f"{name[1:]}% sliced"
    if "structured_ratio" in setting:
        return f"{name[1:]}% heads/channels"
    return setting["pattern"] if setting["pattern"] != "unstructured" else f"{name[1:]}% unstr."


@dataclass(frozen=True)
class ResultsTree:
    """The paths of the results tree (module docstring) under ``root``: "results", where the pipeline writes, or ""
    for paths inside any results folder.  Arguments may be "*" (a glob) or Snakemake wildcards ("{model}": a rule's
    pattern).  A job (of a benchmark or log file) is named by what it works on: model, method, seed, point, each
    when given."""

    root: str = "results"

    def _path(self, *parts: Any) -> str:
        return posixpath.join(self.root, *map(str, parts))

    def latency(self, model: str) -> str:
        return self._path(model, "latency.json")

    def speedup(self, model: str) -> str:
        return self._path(model, "speedup.json")

    def llamacpp(self, model: str) -> str:
        return self._path(model, "llamacpp.json")

    def pruned(self, model: str, method: str, seed: Any, point: str | None = None) -> str:
        """A pruned checkpoint; without ``point``, the folder of one seed's checkpoints (a sublayer method's job
        writes every target's at once)."""
        return self._path(model, "pruned", method, f"seed{seed}", *([point] if point is not None else []))

    def journal(self, model: str, method: str, seed: Any) -> str:
        """A sublayer method's pruning journal (sprint.methods.journal), outside the job's output folder: Snakemake
        and DVC delete a killed job's outputs, and the rerun resumes from the journal."""
        return self._path(model, "journals", method, f"seed{seed}")

    def pruning_record(self, model: str, method: str, seed: Any, point: str) -> str:
        return posixpath.join(self.pruned(model, method, seed, point), "pruning.json")

    def metrics(self, model: str, method: str, seed: Any = None, point: str | None = None) -> str:
        """The metrics file of a pruned model, or of the dense one (``method`` "dense": no seed, no point)."""
        if method == "dense":
            return self._path(model, "metrics", "dense.json")
        return self._path(model, "metrics", method, f"seed{seed}", f"{point}.json")

    def benchmarks(self) -> str:
        return self._path("benchmarks")

    def benchmark(self, stage: str, model: str | None = None, method: str | None = None, seed: Any = None,
                  point: str | None = None) -> str:
        return self._path("benchmarks", stage, *_job(model, method, seed, point)) + ".tsv"

    def log(self, stage: str, model: str | None = None, method: str | None = None, seed: Any = None,
            point: str | None = None) -> str:
        return self._path("logs", stage, *_job(model, method, seed, point)) + ".log"

    @property
    def report(self) -> str:
        return self._path("report.md")


def _job(model: str | None, method: str | None, seed: Any, point: str | None) -> list[str]:
    """The path parts that name a job: ``{model}/{method}/seed{seed}/{point}``, each when given."""
    parts = [model, method, None if seed is None else f"seed{seed}", point]
    return [part for part in parts if part is not None]


def report_folder(report: str) -> str:
    """Where the report ``report`` (a Markdown file) keeps its tables and figures: ``report/`` beside it."""
    return posixpath.join(posixpath.dirname(str(report)), "report")
