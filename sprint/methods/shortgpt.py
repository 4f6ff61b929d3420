"""ShortGPT (Men et al. 2024) under SPRINT's stopping rule: Block Influence BI_l = 1 − mean_tokens cos(x_l,
x_{l+1}) of each decoder layer on the dense model; the whole layers with the lowest BI are removed, in one shot, until
the latency table's estimate meets the target.  No tuning."""

from __future__ import annotations

import logging

import torch
from tqdm.auto import tqdm

from sprint.measure.table import LatencyTable
from sprint.methods.base import Pruner, Removal
from sprint.model.sublayers import SublayerView, sublayer_index

log = logging.getLogger("sprint")


def _layer_removals(layer: int, score: float) -> list[Removal]:
    return [Removal(layer, kind, score, score) for kind in ("attn", "mlp")]



class ShortGPTPruner(Pruner):
    def __init__(self, view: SublayerView, calibration: torch.Tensor, latency: LatencyTable, progress: bool = True):
        super().__init__(view, calibration, latency)
        self.progress = progress
        self._order: list[tuple[float, int]] | None = None

    @staticmethod
    def allowed(num_sublayers: int, **settings) -> list[int]:
        return list(range(num_sublayers))

    def admissible(self) -> list[int]:
        return self.allowed(self.view.num_sublayers)

    @torch.inference_mode()
    def block_influence(self) -> list[float]:
        view = self.view
        X = view.embed(self.calibration)
        influence = []
        for layer in tqdm(range(view.num_layers), desc="  block influence", leave=False, disable=not self.progress):
            Y = view.apply(sublayer_index(layer, "mlp"), view.apply(sublayer_index(layer, "attn"), X))
            cos = torch.nn.functional.cosine_similarity(X.float(), Y.float(), dim=-1)
            influence.append(1.0 - cos.mean().item())
            X = Y
        return influence

    def prepare_replay(self) -> None:
        """Block influences are measured on the dense model once: measure them before the journal is replayed."""
        self._order = sorted((bi, layer) for layer, bi in enumerate(self.block_influence()))

    def replay(self, steps: list[dict]) -> None:
        super().replay(steps)
        gone = {r["layer"] for step in steps for r in step["removals"]}
        self._order = [(bi, layer) for bi, layer in self._order if layer not in gone]

    def step(self) -> list[Removal]:
        if self._order is None:
            self._order = sorted((bi, layer) for layer, bi in enumerate(self.block_influence()))
        bi, layer = self._order.pop(0)
        removals = _layer_removals(layer, bi)
        self.record(removals)
        log.info("removed layer %d (block influence %.4g): est. latency %.4gs", layer, bi, self.estimated_latency())
        return removals

