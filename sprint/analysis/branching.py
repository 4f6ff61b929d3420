"""SPRINT under many latency tables at once, sharing every step the tables agree on.

SPRINT's numbers (ζ̃, ζ, the tuned rows) depend on the pruning state only, never on the latency table; the table
enters only through η = ζ / t, which picks among them, and through the stopping rule.  So runs under several tables
are one run while their picks agree: :func:`sprint_under_tables` keeps a group of tables per pruning state, computes
one step for the group (the untuned walk once, then the tunings of the union of the tables' β best), lets each table
pick, and splits the group where the picks differ, each branch continuing from a copy of the state.  Each table's
removals, sensitivities and tuned weights are exactly those of an independent run under it
(tests/analysis/test_branching.py); the cost is that of the distinct branches.

The branches share one model: a branch's state is its pruner (a copy that shares the model, the calibration, the
embeddings and the dense references) plus the output projections it tuned and its removal set, written back into
the model before the branch moves on.  Copies drop the activations held for later tunings (``_saved``), which
changes no number, only what a later step recomputes.
"""

from __future__ import annotations

import copy
import inspect
import logging
from dataclasses import dataclass
from typing import Callable

import torch

from sprint.errors import SprintError
from sprint.measure.table import LatencyTable
from sprint.methods import PruneConfig
from sprint.methods.base import Removal
from sprint.methods.sprint import SprintPruner, type_flip
from sprint.model.modeling_sprint import set_removed
from sprint.model.sublayers import SublayerView, sublayer_name

log = logging.getLogger("sprint")


@dataclass
class _Branch:
    pruner: SprintPruner
    weights: list[torch.Tensor]  # every layer's output projection, as this branch left it
    tables: dict  # key -> LatencyTable still running on this branch
    flips: dict  # key -> the flip ratio of each removal so far under that table (Removal.flip_ratio)


def _pruner(view: SublayerView, calibration: torch.Tensor, table: LatencyTable, cfg: PruneConfig) -> SprintPruner:
    """SPRINT with everything in host memory (a copy of a spilled store would share, and delete, its files)."""
    kwargs = dict(variant="sprint", alpha=cfg.alpha, beta=cfg.beta, tune_ratio=cfg.tune_ratio, ridge=cfg.ridge,
                  reference=cfg.reference, distance=cfg.distance, progress=False,
                  store_dtype=getattr(torch, cfg.store_dtype) if cfg.store_dtype else None)
    if "dense_store" in inspect.signature(SprintPruner.__init__).parameters:
        kwargs["dense_store"] = "memory"
    return SprintPruner(view, calibration, table, **kwargs)


def _dense_tensors(pruner: SprintPruner) -> list[torch.Tensor]:
    store = pruner.dense_ref
    return list(getattr(store, "memory", store).values())


def _clone(pruner: SprintPruner) -> SprintPruner:
    """A copy of the pruner's state that shares the model and everything that never changes."""
    shared = [pruner.view, pruner.latency, pruner.calibration, pruner.checkpoints.embeddings, *_dense_tensors(pruner)]
    memo = {id(x): x for x in shared}
    saved, pruner._saved = pruner._saved, {}
    try:
        return copy.deepcopy(pruner, memo)
    finally:
        pruner._saved = saved


def _importance(table: LatencyTable, s: int, value: float) -> float:
    return value / table.saving(sublayer_name(s)[1])


@torch.inference_mode()
def _picks(pruner: SprintPruner, tables: dict) -> dict:
    """What ``SprintPruner.step`` would remove under each table from this state (key -> sublayer index): the untuned
    walk once, the tunings of the union of the tables' β best once."""
    cands = pruner.candidates()
    stale = [s for s in cands if s not in pruner.cache]
    if stale:
        pruner._walk(stale, tuned=False, keep=pruner.beta)
    chosen = {key: sorted(sorted(pruner.cache), key=lambda s: _importance(t, s, pruner.cache[s].pseudo))[: pruner.beta]
              for key, t in tables.items()}
    need = sorted({s for c in chosen.values() for s in c if pruner.cache[s].sensitivity is None})
    for s in [s for s in need if s in pruner._saved]:
        pruner.cache[s] = pruner._tuned_from_saved(s)
    rest = [s for s in need if pruner.cache[s].sensitivity is None]
    if rest:
        pruner._walk(rest, tuned=True)
    tuned = lambda s: pruner.cache[s].sensitivity  # noqa: E731
    return ({key: min(chosen[key], key=lambda s: _importance(tables[key], s, tuned(s))) for key in tables},
            {key: type_flip(chosen[key], tuned)[1] for key in tables})


def sprint_under_tables(model, calibration: torch.Tensor, tables: dict, target: float, cfg: PruneConfig,
                        on_done: Callable[[object, list[Removal], object], None]) -> int:
    """Prune with SPRINT (``cfg``'s options, variant "sprint") under each table of ``tables`` (key -> LatencyTable) to
    ``target``, sharing the steps on which the tables agree.  ``on_done(key, removals, model)`` is called when a
    table's run is done, with the model in that run's pruned state (its removals skipped, its tuned rows written);
    each removal's importance is under that table.  ``model`` is left dense-shaped with unknown tuned rows: reload it.
    Returns the number of steps computed (the independent runs would compute the sum of their lengths)."""
    if not tables:
        return 0
    cfg.validate()
    if cfg.tie_break != "none":
        raise SprintError(f"SPRINT under drawn tables picks by η alone: tie_break={cfg.tie_break} is not supported "
                          "here (each draw's pick would need its own interval)")
    torch.manual_seed(cfg.seed)
    view = SublayerView(model, batch_size=cfg.batch_size)
    first = next(iter(tables.values()))
    for t in tables.values():
        t.check_plausible(view.num_layers)
    root = _pruner(view, calibration, first, cfg)
    weights = lambda: [view.down_proj(i).weight.detach().clone() for i in range(view.num_layers)]  # noqa: E731
    stack = [_Branch(root, weights(), dict(tables), {key: [] for key in tables})]
    steps = 0
    while stack:
        branch = stack.pop()
        pruner = branch.pruner
        with torch.no_grad():
            for i, w in enumerate(branch.weights):
                view.down_proj(i).weight.copy_(w)
        set_removed(model, [(r.layer, r.kind) for r in pruner.removed])
        for key in [k for k, t in branch.tables.items() if t.speedup(*pruner.counts()) >= target - 1e-12]:
            table = branch.tables.pop(key)
            removals = [Removal(r.layer, r.kind, _importance(table, 2 * r.layer + (r.kind == "mlp"), r.sensitivity),
                                r.sensitivity, r.tuned_layer, flip) for r, flip in zip(pruner.removed, branch.flips[key])]
            on_done(key, removals, model)
        if not branch.tables:
            continue
        if len(pruner.removed) >= len(pruner.admissible()):
            raise SprintError(f"SPRINT removed every admissible sublayer without reaching {target:g}x")
        picks, flips = _picks(pruner, branch.tables)
        steps += 1
        groups: dict[int, dict] = {}
        for key, s in picks.items():
            groups.setdefault(s, {})[key] = branch.tables[key]
        if len(groups) > 1:
            log.info("step %d: the tables split %s", len(pruner.removed) + 1, ", ".join(
                f"{sublayer_name(s)[1]} {sublayer_name(s)[0]}: {len(g)}" for s, g in groups.items()))
        order = sorted(groups)
        here = weights()
        for n, s in enumerate(order):
            p = pruner if n == len(order) - 1 else _clone(pruner)
            with torch.no_grad():  # each branch removes from the same state
                for i, w in enumerate(here):
                    view.down_proj(i).weight.copy_(w)
            set_removed(model, [(r.layer, r.kind) for r in p.removed])
            with torch.inference_mode():
                p._remove(p.cache[s], tuned=True)
            stack.append(_Branch(p, weights(), groups[s], {key: branch.flips[key] + [flips[key]] for key in groups[s]}))
    return steps
