"""Running a study: the latency tables it measures once, then each cell not done yet through the pipeline, its
small files copied into the output folder and committed as it finishes; the checkpoints freed once every cell that
reads them is done."""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from sprint.errors import SprintError
from sprint.methods import REGISTRY
from sprint.study.spec import RESULTS, STRONGEST, Cell, Study

log = logging.getLogger("sprint")


def run_pipeline(root: Path, config: Path, targets: list[str]) -> None:
    """``snakemake --configfile config targets`` in the repository ``root`` (the default profile)."""
    cmd = [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/default", "--configfile", str(config),
           "--", *targets]
    log.info("study: %s", " ".join(cmd[2:]))
    proc = subprocess.run(cmd, cwd=root, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SprintError(f"study: snakemake failed ({proc.returncode}) for {' '.join(targets)}: see the log above")


def _copy(root: Path, relative: str, dest_root: Path) -> Path | None:
    """Copy ``root / relative`` to the same place under ``dest_root``; None when there is no such file."""
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
            run_pipeline(study.root, Path(f.name), [RESULTS.latency(model)])
        finally:
            os.unlink(f.name)
        table.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(study.root / RESULTS.latency(model), table)
        _copy(study.root, RESULTS.benchmark("profile", model), study.output)  # the measuring job's time
        _commit(study, f"study {study.path.stem}: latency table of {model}, measured once and kept")


def _exported_after_pruning(root: Path, model: str) -> bool:
    """Whether ``model`` has a llamacpp.json written after every checkpoint it names that is still there was pruned
    (not a leftover of earlier checkpoints)."""
    path = root / RESULTS.llamacpp(model)
    if not path.is_file():
        return False
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["models"].values()
        records = [root / e["checkpoint"] / "pruning.json" for e in entries if e["method"] != "dense"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise SprintError(f"study: {path}: not a llama.cpp speedup file ({type(err).__name__}: {err})") from None
    return all(path.stat().st_mtime >= r.stat().st_mtime for r in records if r.is_file())


def collect(study: Study, cell: Cell) -> None:
    """Copy a finished cell's small files (metrics, pruning record, latency table, pruning and evaluation times) into
    the output, and its model's llama.cpp serving speedups with the export's time where the pipeline's export stage
    wrote them (``llamacpp.json``: the page's "llama.cpp speedup" column)."""
    model, method, seed, point = cell.model, cell.method, cell.seed, cell.point
    # (the profile's time is the measuring job's, kept by measure_tables)
    files = [RESULTS.latency(model), *([RESULTS.llamacpp(model), RESULTS.benchmark("export", model)]
                                       if _exported_after_pruning(study.root, model) else [])]
    if method == "dense":
        files.append(RESULTS.benchmark("evaluate", model, method))
    else:
        sublayer = REGISTRY[method].kind == "sublayer"  # one pruning job for every target
        files += [RESULTS.pruning_record(model, method, seed, point),
                  RESULTS.benchmark("evaluate", model, method, seed, point),
                  RESULTS.benchmark("prune", model, method, seed, None if sublayer else point)]
    for relative in files:
        _copy(study.root, relative, study.output)
    if _copy(study.root, cell.metrics, study.output) is None:  # last: its presence marks the cell done
        raise SprintError(f"study: {cell} finished without {cell.metrics}")


def collect_exports(study: Study) -> None:
    """Copy and commit each model's llama.cpp speedups (and the export's time) that the export stage wrote after its
    checkpoints and the output does not hold yet: an export run after the model's last cell, e.g.
    ``snakemake --configfile CONFIG export_all``."""
    for model in study.config["base"]["models"]:
        src, dest = study.root / RESULTS.llamacpp(model), study.output / RESULTS.llamacpp(model)
        if not _exported_after_pruning(study.root, model) or (
                dest.is_file() and dest.read_bytes() == src.read_bytes()):
            continue
        for relative in (RESULTS.llamacpp(model), RESULTS.benchmark("export", model)):
            _copy(study.root, relative, study.output)
        _commit(study, f"study {study.path.stem}: llama.cpp serving speedups of {model} (the export stage)")


def release(study: Study, cell: Cell) -> None:
    """Delete the checkpoints of ``cell``'s pruning job once every cell that reads them is done: they are the study's
    bulk (about 0.5 GB per SmolLM2 checkpoint, several per job), and its committed files are what it keeps."""
    job = cell.prune_job
    if job and all(study.done(c) for c in study.cells() if c.prune_job == job):
        shutil.rmtree(study.root / job, ignore_errors=True)


def run(study: Study, max_cells: int | None = None) -> list[Cell]:
    """Measure the missing latency tables and commit a new export's llama.cpp speedups (:func:`collect_exports`),
    then run the cells not done yet, in order, committing each; returns the cells run."""
    measure_tables(study)
    collect_exports(study)
    ran: list[Cell] = []
    while todo := [c for c in study.cells() if not study.done(c)]:  # again after each cell: it may resolve one
        cell = todo[0]
        if cell.method == STRONGEST:
            raise SprintError(f"study: {cell}: no baseline has been evaluated at {cell.point} (seed 0) yet, so the "
                              "strongest cannot be chosen: list those cells first")
        if max_cells is not None and len(ran) >= max_cells:
            break
        t0 = time.perf_counter()
        run_pipeline(study.root, study.config_path, [cell.metrics])
        collect(study, cell)
        _commit(study, f"study {study.path.stem}: {cell} ({time.perf_counter() - t0:.0f} s)")
        release(study, cell)
        ran.append(cell)
    return ran


def plan(study: Study) -> list[str]:
    """One line per latency table and cell, in order: done or to do."""
    lines = []
    for model, table in study.tables().items():
        lines.append(f"{'done' if table.is_file() else 'to do'}  latency table of {model} -> "
                     f"{table.relative_to(study.root)}")
    for cell in study.cells():
        lines.append(f"{'done' if study.done(cell) else 'to do'}  {cell}")
    return lines
