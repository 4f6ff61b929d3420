"""What every pruning method shares: the model's sublayer view, the calibration set, and the removal record."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from sprint.measure.table import LatencyTable
from sprint.model.modeling_sprint import set_removed
from sprint.model.sublayers import SublayerView, sublayer_index, sublayer_name


@dataclass
class Removal:
    """One removed sublayer, in removal order (the ``removed`` list of pruning.json)."""

    layer: int
    kind: str
    importance: float
    sensitivity: float
    tuned_layer: int | None = None
    flip_ratio: float | None = None  # SPRINT: the t_mlp/t_attn at which its pick would change type (sprint.methods.sprint)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["flip_ratio"] is None:
            del d["flip_ratio"]  # methods that compare no types: the record is what it was before the field
        return d


class Pruner:
    """Greedy sublayer pruning: ``step()`` removes one sublayer (or a whole layer) and returns what it removed.

    Subclasses implement ``step`` and ``admissible``, the sublayers the method could ever remove (used to fail
    fast on unreachable targets).
    """

    supports_offload = True  # runs with offloaded decoder layers (sprint.model.offload): it only runs sublayers
    # through the view and edits weights through SublayerView.write_rows

    def __init__(self, view: SublayerView, calibration: torch.Tensor, latency: LatencyTable):
        self.view = view
        self.calibration = calibration
        self.latency = latency
        self.removed: list[Removal] = []
        self.num_tunings = 0

    @property
    def removed_set(self) -> set[int]:
        return {sublayer_index(r.layer, r.kind) for r in self.removed}

    def counts(self) -> tuple[int, int]:
        n_attn = sum(r.kind == "attn" for r in self.removed)
        return n_attn, len(self.removed) - n_attn

    def estimated_latency(self) -> float:
        return self.latency.estimate(*self.counts())

    def record(self, removals: list[Removal]) -> None:
        self.removed.extend(removals)
        set_removed(self.view.model, [(r.layer, r.kind) for r in self.removed])

    @classmethod
    def from_config(cls, view: SublayerView, calibration: torch.Tensor, latency: LatencyTable, cfg: Any, *,
                    progress: bool = True, **settings: Any) -> "Pruner":
        """The pruner for a :class:`sprint.methods.driver.PruneConfig` (``settings``: its registry entry's fixed arguments)."""
        return cls(view, calibration, latency, progress=progress, **settings)

    @staticmethod
    def allowed(num_sublayers: int, **settings: Any) -> list[int]:
        """The sublayers the method may ever remove, for a model of ``num_sublayers`` (its registry settings)."""
        raise NotImplementedError

    def admissible(self) -> list[int]:
        """:meth:`allowed` for this pruner's model and settings."""
        raise NotImplementedError

    def step(self) -> list[Removal]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the pruner keeps outside the model (SPRINT: its spill files)."""

    def prepare_replay(self) -> None:
        """Compute, from the still unpruned model, what later steps need of it (before :meth:`replay`)."""

    def replay(self, steps: list[dict]) -> None:
        """Restore the state after the journaled ``steps`` (:mod:`sprint.methods.journal`): write each step's tuned
        rows into the model and record its removals, exactly as the steps did."""
        self.prepare_replay()
        for step in steps:
            rows = step.get("rows")
            if rows is not None:
                self.view.write_rows(rows["layer"], rows["index"], rows["weight"])
            self.record([Removal(**r) for r in step["removals"]])
            self.num_tunings = step.get("num_tunings", self.num_tunings)

    def saving(self, s: int) -> float:
        return self.latency.saving(sublayer_name(s)[1])


class OneShotPruner:
    """A method pruned once at a setting (kinds "weights", "slicing", "structured" of :mod:`sprint.methods`): it
    removes no sublayer, so ``removed`` stays empty and the latency table plays no part.  A subclass names the
    PruneConfig fields its constructor takes (``options``, in order) and implements ``run()`` and ``record()``."""

    options: tuple[str, ...] = ()
    supports_offload = False  # SliceGPT rotates the embeddings and head; LLM-Pruner needs gradients

    def __init__(self, view: SublayerView, calibration: torch.Tensor, progress: bool = True):
        self.view, self.calibration, self.progress = view, calibration, progress
        self.removed: list = []
        self.num_tunings = 0

    @classmethod
    def from_config(cls, view: SublayerView, calibration: torch.Tensor, latency, cfg, *, progress: bool = True,
                    **settings) -> "OneShotPruner":
        return cls(view, calibration, *(getattr(cfg, k) for k in cls.options), progress=progress, **settings)

    @staticmethod
    def allowed(num_sublayers: int, **settings) -> list[int]:
        return []  # removes no sublayer

    def admissible(self) -> list[int]:
        return []

    def counts(self) -> tuple[int, int]:
        return 0, 0
