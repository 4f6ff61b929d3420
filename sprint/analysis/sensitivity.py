"""Does ζ predict the damage?  (issue 25, items 2 and 3)

At a step of SPRINT (the first, or after some removals), every candidate s gets
    ζ̃  its pseudo-sensitivity (no tuning, paper Sec. 3.4),
    ζ   its tunability-aware sensitivity (Eq. 5: d's output projection tuned, the distance read at d + 1),
and, by brute force, the damage its removal does to the whole model with that same tuning applied: the mean
next-token NLL after removing s and writing the tuned rows into d, minus the current model's, on the calibration
set (what the least squares fitted) and on fixed WikiText-2 test windows (held out).  Spearman's ρ between each
sensitivity and each damage, over all candidates and within each sublayer type, says whether ζ ranks the damage,
and whether it ranks attention and MLP sublayers on one scale (the type gap: how much more damage one type does than
the other at the same ζ).  The ranks before and after tuning give the paper's Fig. 3b.

The pruning state is SPRINT's own: :class:`ProbedSprint` is SPRINT with a :meth:`~ProbedSprint.probe` that scores
every candidate, tuned, without removing any, so the run continues unchanged after a probe.  The damage walk
(:func:`damage`) runs the current model once over the evaluation windows and branches off each candidate's pruned
path, with its tuned rows written into d on that branch only.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from sprint.analysis.rank import ranks, spearman_ci
from sprint.data import sources
from sprint.io import atomic_write_json
from sprint.measure.table import LatencyTable, load_latency
from sprint.methods import PruneConfig
from sprint.methods.sprint import SprintPruner
from sprint.model.sublayers import SublayerView, sublayer_name

log = logging.getLogger("sprint")

DAMAGES = ("calibration", "wikitext2")


@dataclass
class Candidate:
    """One candidate's scores at a step, and the tuned rows of its upper MLP d (what its removal would write)."""

    s: int
    tuned_layer: int  # the layer of d
    pseudo: float  # ζ̃
    sensitivity: float  # ζ
    rows: torch.Tensor  # LongTensor [k]: rows of d's output projection that tuning changes (may be empty)
    weight: torch.Tensor | None  # [k, I]: their tuned values


class ProbedSprint(SprintPruner):
    """SPRINT (the paper's variant, any options) whose state can be probed between steps."""

    @torch.inference_mode()
    def probe(self) -> dict[int, Candidate]:
        """ζ̃ and ζ of every candidate at the current step, with its tuned rows; removes nothing.

        One tuned walk over every candidate (what SPRINT-e computes each step), from the checkpoints; it leaves the
        cached scores and the removal record as they were, so the next ``step()`` does what it would have done.
        """
        tunings = self.num_tunings
        scores = self._walk(self.candidates(), tuned=True, cache=False)
        self.num_tunings = tunings  # a probe is no part of the run's cost
        out = {}
        for s, sc in sorted(scores.items()):
            rows = sc.rows if sc.rows is not None else torch.empty(0, dtype=torch.long)
            weight = self.tuned_rows(sc) if hasattr(self, "tuned_rows") else sc.weight
            out[s] = Candidate(s, sc.tuned // 2, sc.pseudo, sc.sensitivity, rows.clone(),
                               None if weight is None else weight.detach().clone())
        return out

    def choice(self, candidates: dict[int, Candidate]) -> int:
        """The candidate SPRINT's step removes, from the probe's scores: the β best by ζ̃/t, then the lowest ζ/t."""
        chosen = sorted(sorted(candidates), key=lambda s: self.importance(s, candidates[s].pseudo))[: self.beta]
        return min(chosen, key=lambda s: self.importance(s, candidates[s].sensitivity))


def wikitext_windows(tokenizer, mirror: Path | None, seq_len: int, n: int) -> torch.Tensor:
    """The first ``n`` non-overlapping ``seq_len`` windows of the WikiText-2 test split: the windows
    :func:`sprint.measure.perplexity.perplexity_record` scores first."""
    ids = tokenizer(sources.wikitext2_text("test", mirror), return_tensors="pt", add_special_tokens=False,
                    verbose=False).input_ids[0]
    n = min(n, ids.numel() // seq_len)
    return ids[: n * seq_len].view(n, seq_len)


@torch.inference_mode()
def damage(view: SublayerView, removed: set[int], candidates: dict[int, Candidate],
           groups: dict[str, torch.Tensor], untuned: bool = False, progress: Callable[[int], None] | None = None,
           ) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
    """(NLL of the current model per group, {s: NLL per group after removing s with its tuned rows in d}).

    ``groups``: name -> token ids [n, T].  With ``untuned`` each candidate also gets ``"<group> untuned"``: its
    removal alone, d left as it is.
    """
    X = {g: view.embed(ids) for g, ids in groups.items()}
    after: dict[int, dict[str, float]] = {}
    for j in range(view.num_sublayers):
        if j in candidates:
            c = candidates[j]
            variants = [("", c)] + ([(" untuned", None)] if untuned else [])
            after[j] = {}
            for suffix, tuned in variants:
                for g, ids in groups.items():
                    Y = X[g]
                    for i in range(j + 1, view.num_sublayers):
                        if i in removed:
                            continue
                        if tuned is not None and i == 2 * tuned.tuned_layer + 1 and len(tuned.rows):
                            w = view.down_proj(tuned.tuned_layer).weight
                            old = w[tuned.rows].clone()
                            w[tuned.rows] = tuned.weight.to(dtype=w.dtype, device=w.device)
                            try:
                                Y = view.apply(i, Y)
                            finally:
                                w[tuned.rows] = old
                        else:
                            Y = view.apply(i, Y)
                    after[j][g + suffix] = view.nll(Y, ids)
            if progress is not None:
                progress(j)
        if j not in removed:
            X = {g: view.apply(j, x) for g, x in X.items()}
    base = {g: view.nll(X[g], ids) for g, ids in groups.items()}
    return base, after


def type_gap(zeta: list[float], harm: list[float], kinds: list[str]) -> dict[str, Any]:
    """log(damage) = a + b·log ζ + c·[MLP], least squares over the candidates with positive damage: exp(c) is how
    many times the damage of an MLP is that of an attention sublayer with the same ζ (1: one scale)."""
    keep = [i for i, h in enumerate(harm) if h > 0 and zeta[i] > 0]
    if len({kinds[i] for i in keep}) < 2 or len(keep) < 4:
        return {"mlp_over_attn": math.nan, "slope": math.nan, "n": len(keep)}
    A = np.array([[1.0, math.log(zeta[i]), 1.0 if kinds[i] == "mlp" else 0.0] for i in keep])
    y = np.array([math.log(harm[i]) for i in keep])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return {"mlp_over_attn": float(math.exp(coef[2])), "slope": float(coef[1]), "n": len(keep),
            "dropped_nonpositive": len(harm) - len(keep)}


def correlations(rows: list[dict]) -> dict[str, Any]:
    """Spearman's ρ (95% bootstrap CI) of ζ̃ and ζ against each damage, over all candidates and per type; the same for
    the importances η̃ = ζ̃/t and η = ζ/t against damage per second saved; and the type gap."""
    out: dict[str, Any] = {}
    damages = [k for k in rows[0]["damage"]]
    for scope in ("all", "attn", "mlp"):
        sub = [r for r in rows if scope == "all" or r["kind"] == scope]
        entry: dict[str, Any] = {"n": len(sub)}
        for dmg in damages:
            harm = [r["damage"][dmg] for r in sub]
            per_s = [r["damage"][dmg] / r["t_s"] for r in sub]
            for key, name in (("pseudo", "zeta_tilde"), ("sensitivity", "zeta")):
                entry[f"{name} ~ {dmg}"] = spearman_ci([r[key] for r in sub], harm)
            for key, name in (("pseudo_importance", "eta_tilde"), ("importance", "eta")):
                entry[f"{name} ~ {dmg} per s"] = spearman_ci([r[key] for r in sub], per_s)
        entry["zeta_tilde ~ zeta"] = spearman_ci([r["pseudo"] for r in sub], [r["sensitivity"] for r in sub])
        out[scope] = entry
    out["type_gap"] = {dmg: {"zeta": type_gap([r["sensitivity"] for r in rows], [r["damage"][dmg] for r in rows],
                                              [r["kind"] for r in rows]),
                             "zeta_tilde": type_gap([r["pseudo"] for r in rows], [r["damage"][dmg] for r in rows],
                                                    [r["kind"] for r in rows])}
                       for dmg in damages}
    return out


def step_rows(pruner: ProbedSprint, candidates: dict[int, Candidate], base: dict[str, float],
              after: dict[int, dict[str, float]]) -> list[dict]:
    rows = []
    for s, c in sorted(candidates.items()):
        layer, kind = sublayer_name(s)
        t = pruner.saving(s)
        rows.append({"s": s, "layer": layer, "kind": kind, "tuned_layer": c.tuned_layer, "t_s": t,
                     "pseudo": c.pseudo, "sensitivity": c.sensitivity, "rows_tuned": int(len(c.rows)),
                     "pseudo_importance": c.pseudo / t, "importance": c.sensitivity / t,
                     "nll": after[s], "damage": {g: v - base[g.split(" ")[0]] for g, v in after[s].items()}})
    for key in ("pseudo", "sensitivity", "pseudo_importance", "importance"):
        for r, k in zip(rows, ranks([r[key] for r in rows])):
            r[f"rank_{key}"] = k
    for g in rows[0]["damage"]:
        for r, k in zip(rows, ranks([r["damage"][g] for r in rows])):
            r.setdefault("rank_damage", {})[g] = k
    return rows


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_sensitivity(
    model_path: str, calibration: torch.Tensor, calibration_path: str, table_path: str, output: str | Path, *,
    steps: tuple[int, ...] = (1, 8), wiki_windows: int = 32, calibration_windows: int | None = None,
    mirror: Path | None = None, untuned: bool = False,
    prune_settings: dict | None = None, load: Callable[[], tuple[Any, Any]] | None = None,
    table: LatencyTable | None = None,
) -> dict:
    """Probe SPRINT at each of ``steps`` (1 = before any removal; m = after m − 1 removals, those SPRINT makes with
    ``table_path``'s table and the default β) and measure every candidate's damage; write ``output`` (JSON) after
    each step and return its content.  WikiText-2 windows have the calibration's length; ``calibration_windows``
    limits the calibration-set damage to the first N calibration windows (all of them still tune and score)."""
    if load is None:
        from sprint.model.loading import load_model

        def load():
            return load_model(model_path, device="cpu", dtype="float32")

    steps = tuple(sorted(set(steps)))
    if not steps or steps[0] < 1:
        raise ValueError(f"steps are 1-based, got {steps}")
    table = table or load_latency(table_path)
    cfg = PruneConfig(method="sprint", target_speedup=[1.01], **(prune_settings or {}))
    cfg.validate()
    model, tokenizer = load()
    torch.manual_seed(cfg.seed)
    view = SublayerView(model, batch_size=cfg.batch_size)
    pruner = ProbedSprint.from_config(view, calibration, table, cfg, progress=False, variant="sprint")
    groups = {"calibration": calibration[:calibration_windows] if calibration_windows else calibration,
              "wikitext2": wikitext_windows(tokenizer, mirror, int(calibration.shape[1]), wiki_windows)}
    result: dict[str, Any] = {
        "analysis": "sensitivity", "model": model_path,
        "table": {"path": str(table_path), "dense_s": table.dense_s, "t_attn_s": table.t_attn_s,
                  "t_mlp_s": table.t_mlp_s},
        "calibration": {"path": str(calibration_path), "n": int(calibration.shape[0]),
                        "seq_len": int(calibration.shape[1]),
                        "sha256": _sha256(calibration_path) if Path(calibration_path).is_file() else None},
        "damage_windows": {"calibration": int(groups["calibration"].shape[0]),
                           "wikitext2": int(groups["wikitext2"].shape[0]), "seq_len": int(calibration.shape[1])},
        "prune_settings": cfg.as_params(), "steps": [],
    }
    try:
        for m in steps:
            while len(pruner.removed) < m - 1:
                pruner.step()
            t0 = time.perf_counter()
            candidates = pruner.probe()
            t_probe = time.perf_counter() - t0
            choice = pruner.choice(candidates)
            done = [0]

            def tick(_j: int) -> None:
                done[0] += 1
                if done[0] % 10 == 0:
                    log.info("step %d: damage of %d / %d candidates", m, done[0], len(candidates))

            base, after = damage(view, pruner.removed_set, candidates, groups, untuned=untuned, progress=tick)
            rows = step_rows(pruner, candidates, base, after)
            least = {g: min(rows, key=lambda r: r["damage"][g] / r["t_s"])["s"] for g in rows[0]["damage"]}
            result["steps"].append({
                "step": m, "removed_before": [[r.layer, r.kind] for r in pruner.removed],
                "base_nll": base, "sprint_choice": list(sublayer_name(choice)),
                "least_damage_per_s": {g: list(sublayer_name(s)) for g, s in least.items()},
                "probe_s": t_probe, "damage_s": time.perf_counter() - t0 - t_probe,
                "candidates": rows, "correlations": correlations(rows),
            })
            atomic_write_json(output, result)
            log.info("step %d: %d candidates; SPRINT removes %s %d", m, len(rows), *sublayer_name(choice)[::-1])
    finally:
        getattr(pruner, "close", lambda: None)()
    return result
