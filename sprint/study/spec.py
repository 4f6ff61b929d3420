"""A study file: the pipeline configuration, the output folder and the cells, in the order they run; a cell is
one metrics file of the pipeline, with what the pipeline's jobs write around it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sprint.errors import SprintError
from sprint.layout import ResultsTree
from sprint.methods import REGISTRY

# The pipeline's results, relative to the repository; the output keeps a copy of each cell's small files there.
RESULTS = ResultsTree()
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
        return RESULTS.metrics(self.model, self.method, self.seed, self.point)

    @property
    def prune_job(self) -> str | None:
        """The folder the pipeline's pruning job for this cell writes (a sublayer method's holds every target)."""
        if self.method == "dense" or self.method not in REGISTRY:
            return None
        sublayer = REGISTRY[self.method].kind == "sublayer"
        return RESULTS.pruned(self.model, self.method, self.seed, None if sublayer else self.point)

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
