"""Resumable pruning: a journal of removals, written atomically after each one, beside the output (issue 26).

``<parent>/.sprint-journal.<output name>/`` holds ``run.json`` (what the run is: method and settings, model, calibration
hash, latency table, the targets whose checkpoints are written) and one ``step-NNNN.pt`` per removal step: the
sublayers removed, the tuned rows written into the model (layer, row indices, values in the model's dtype), the
pruning time so far and the tunings counted.  Each file is written to a temporary name, synced and renamed, so a
``kill -9`` at any moment leaves a journal of whole steps.

``sprint prune`` rerun with the same inputs reads the journal, has the pruner replay its steps (the pruner first
computes from the dense model what it needs of it: SPRINT its dense references, ShortGPT its block influences),
and continues with the next removal.  The result is identical to an uninterrupted run's: the removal order and
the tuned rows depend only on the model's state after each step, which the replay restores exactly, and the scores an
uninterrupted run keeps from earlier steps are recomputed bit for bit (paper Sec. 3.4, Observation 1: nothing
below a candidate's tuned MLP changed).  A journal of another run (other settings, calibration, model or table) is
discarded with a warning naming the difference (the pipeline reruns a job whose parameters changed).  The journal
is removed once every checkpoint is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch

from sprint.io import atomic_write_bytes, atomic_write_text

log = logging.getLogger("sprint")


def journal_dir(output: str | os.PathLike) -> Path:
    out = Path(output)
    return out.parent / f".sprint-journal.{out.name}"


def tokens_sha256(tokens: torch.Tensor) -> str:
    return hashlib.sha256(tokens.detach().contiguous().cpu().numpy().tobytes()).hexdigest()


class Journal:
    """The steps of one pruning run, in ``directory``; ``identity``: what must match for a resume."""

    def __init__(self, directory: str | os.PathLike, identity: dict):
        self.directory = Path(directory)
        self.identity = json.loads(json.dumps(identity, sort_keys=True, default=str))
        self.saved_targets: list[float] = []

    # -- reading --------------------------------------------------------------------------------------------------
    def _run_file(self) -> Path:
        return self.directory / "run.json"

    def steps(self) -> list[dict]:
        """The journaled steps, in order (empty for a new run).  A journal of another run is an error."""
        if not self._run_file().is_file():
            return []
        run = json.loads(self._run_file().read_text())
        if run.get("identity") != self.identity:
            old, new = run.get("identity", {}), self.identity
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            log.warning("journal %s is of another run (differs in %s): starting over", self.directory, ", ".join(diff))
            self.remove()
            return []
        self.saved_targets = [float(t) for t in run.get("saved_targets", [])]
        steps = []
        for i in range(len(list(self.directory.glob("step-*.pt")))):
            path = self.directory / f"step-{i:04d}.pt"
            if not path.is_file():
                break  # steps are written in order; a gap ends the journal
            steps.append(torch.load(path, weights_only=True))
        return steps

    # -- writing --------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self._run_file().is_file():
            self._write_run()

    def _write_run(self) -> None:
        atomic_write_text(self._run_file(), json.dumps(
            {"identity": self.identity, "saved_targets": self.saved_targets}, indent=1, sort_keys=True) + "\n")

    def append(self, index: int, step: dict) -> Path:
        """Write step ``index`` (0-based) atomically."""
        import io

        buf = io.BytesIO()
        torch.save(step, buf)
        return atomic_write_bytes(self.directory / f"step-{index:04d}.pt", buf.getvalue())

    def truncate(self, keep: int) -> None:
        """Drop the steps from index ``keep`` on (they are then recomputed)."""
        for path in self.directory.glob("step-*.pt"):
            if int(path.stem.split("-")[1]) >= keep:
                path.unlink()

    def target_saved(self, target: float) -> None:
        self.saved_targets = sorted(set(self.saved_targets) | {float(target)})
        self._write_run()

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def step_entry(pruner, removals, elapsed_s: float) -> dict:
    """The journal entry of one step: its removals and the tuned rows it wrote (SPRINT's ``last_rows``)."""
    rows = getattr(pruner, "last_rows", None)
    entry = {"removals": [r.to_dict() for r in removals], "elapsed_s": float(elapsed_s),
             "num_tunings": int(pruner.num_tunings), "rows": None}
    if rows is not None:
        layer, idx, weight = rows
        entry["rows"] = {"layer": int(layer), "index": idx.detach().cpu().long(),
                         "weight": weight.detach().cpu().contiguous()}
    return entry
