"""SLEB and BlockPruner: greedy removal by calibration perplexity, under SPRINT's stopping rule.

* SLEB (Song et al. 2024): greedy over whole decoder layers; each step removes the layer whose removal gives the
  lowest calibration perplexity.  The first and last layers are kept, as in the authors' code.
* BlockPruner (Zhong et al. 2024): the same greedy search over individual MHA and MLP sublayers.

Each step walks the current model once and branches off each candidate's pruned path to the top, so the
activations below a candidate are computed once and shared by every candidate above it (exact reuse).  No tuning.
"""

from __future__ import annotations

import logging
import math

import torch
from tqdm.auto import tqdm

from sprint.measure.table import LatencyTable
from sprint.methods.base import Pruner, Removal
from sprint.model.sublayers import SublayerView, sublayer_name

log = logging.getLogger("sprint")


class PerplexityGreedyPruner(Pruner):
    """Greedy removal of the unit (layer or sublayer) whose removal yields the lowest calibration perplexity."""

    def __init__(
        self, view: SublayerView, calibration: torch.Tensor, latency: LatencyTable, *, unit: str, progress: bool = True
    ):
        super().__init__(view, calibration, latency)
        if unit not in ("layer", "sublayer"):
            raise ValueError(f"unit must be 'layer' or 'sublayer', got {unit!r}")
        self.unit, self.progress = unit, progress
        self.embeddings = view.embed(calibration)

    @classmethod
    def from_config(cls, view, calibration, latency, cfg, *, progress: bool = True, unit: str = "layer"):
        """``cfg.ppl_windows``: score perplexity on the first N calibration windows only (a budget option)."""
        scored = calibration[: cfg.ppl_windows] if cfg.ppl_windows else calibration
        return cls(view, scored, latency, unit=unit, progress=progress)

    @staticmethod
    def allowed(num_sublayers: int, *, unit: str = "layer", **settings) -> list[int]:
        if unit == "sublayer":
            return list(range(num_sublayers))
        return list(range(2, num_sublayers - 2))  # SLEB keeps the first and the last layer

    def admissible(self) -> list[int]:
        return self.allowed(self.view.num_sublayers, unit=self.unit)

    def units(self) -> list[tuple[int, ...]]:
        gone = self.removed_set
        if self.unit == "sublayer":
            return [(s,) for s in self.admissible() if s not in gone]
        layers = sorted({s // 2 for s in self.admissible()})
        return [(2 * layer, 2 * layer + 1) for layer in layers if 2 * layer not in gone]

    @torch.inference_mode()
    def _run_to_top(self, X: torch.Tensor, start: int, skip: set[int]) -> torch.Tensor:
        for j in range(start, self.view.num_sublayers):
            if j not in skip:
                X = self.view.apply(j, X)
        return X

    @torch.inference_mode()
    def perplexities(self) -> dict[tuple[int, ...], float]:
        view, gone = self.view, self.removed_set
        units = self.units()
        firsts = {u[0]: u for u in units}
        ppl: dict[tuple[int, ...], float] = {}
        X = self.embeddings
        bar = tqdm(total=len(units), desc="  candidates", leave=False, disable=not self.progress)
        for j in range(view.num_sublayers):
            if j in firsts:
                u = firsts[j]
                top = self._run_to_top(X, j, gone | set(u))
                ppl[u] = math.exp(view.nll(top, self.calibration))
                bar.update(1)
            if j not in gone:
                X = view.apply(j, X)
        bar.close()
        return ppl

    def step(self) -> list[Removal]:
        ppl = self.perplexities()
        best = min(ppl, key=ppl.get)
        removals = [Removal(*sublayer_name(s), ppl[best], ppl[best]) for s in best]
        self.record(removals)
        what = f"layer {best[0] // 2}" if len(best) == 2 else "%s %d" % sublayer_name(best[0])[::-1]
        log.info("removed %s (calibration ppl %.4g): est. latency %.4gs", what, ppl[best], self.estimated_latency())
        return removals

