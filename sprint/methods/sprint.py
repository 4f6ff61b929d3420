"""SPRINT (paper Algorithm 1) and its ablations SPRINT-l, SPRINT-t, SPRINT-e, on one code path.

Symbols of the paper and their names here:
    ζ^(s)  tunability-aware sensitivity (Eq. 5)      -> ``Score.sensitivity``
    ζ̃^(s)  pseudo-sensitivity (no tuning, Sec. 3.4)  -> ``Score.pseudo``
    η^(s) = ζ^(s) / t^(s)  importance (Eq. 4)         -> ``importance()``; t = t_MHA or t_MLP from the latency table
    d      nearest remaining MLP strictly above s    -> ``Score.tuned`` / ``upper_mlp()``
    α      activation checkpoints                     -> ``CheckpointStore`` positions
    β      candidates tuned per iteration            -> ``beta``
    c      share of output-projection rows tuned      -> ``tune_ratio``

One iteration (``step``):
 1. *walk*: run the current model from the highest valid checkpoint below the first candidate whose score is
    stale, carrying each stale candidate's pruned path (input of s, skipping s, through the remaining sublayers up
    to d) alongside, and score it at d.  Scores of candidates whose d lies below the last removed sublayer are
    reused: their whole computation is unchanged (Sec. 3.4, Observation 1).
 2. *fast candidate selection*: rank candidates by pseudo-importance ζ̃/t and keep the β best (Sec. 3.4, 2).
 3. *tunability-aware selection*: tune d's output projection for each of the β candidates (least squares,
    ``sprint.methods.tuning``) and measure ζ after tuning; remove the candidate with the lowest η and write its tuned
    rows into the model.  The walk of step 1 saves what the tuning of each candidate it scores needs (its pruned
    input at d, within a memory budget; beyond it, the statistics of those among the β best so far), so the chosen
    ones need no second pass, in this iteration or a later one while their score stays valid (``Saved``).  None of
    this changes a number, only what is recomputed.
SPRINT-e computes the tuned ζ of every candidate in every iteration from the embeddings, reusing nothing.
SPRINT-t uses ζ̃ as the sensitivity and never tunes.  SPRINT-l ranks by ζ instead of ζ/t.

Options where the authors' code departs from the paper (paper behaviour is the default):
    reference="dense"   X^(d+1) of the unpruned model (Eq. 3, 5);  "current": the current pruned model (their code)
    distance="frobenius"  ||X − X̂||_F / ||X||_F (Eq. 5);  "l1": Σ_samples ||X_n − X̂_n||₁ / ||X_n||₁ (their code)
The last MLP has no MLP above it and is never a candidate (as in the authors' code).

A departure of this project (issue 25), off by default:
    tie_break="none"    the lowest η is removed (paper Algorithm 1);
                        "sensitivity": when the latency table's own uncertainty could flip the pick between the
                        best attention and the best MLP candidate, remove the one with the lower ζ.  Why: on
                        SmolLM2 on a 2-core CPU (docs/analysis.md) ζ does not put the two types on one scale (at
                        equal ζ an MLP's removal did 2.5-3.1x an attention sublayer's end-to-end damage) and the
                        table's bootstrap moved t_mlp/t_attn between 1.5 and 2.7, so η's cross-type choices were
                        decided by timing noise.  η = ζ/t favours attention over MLP exactly when
                        t_mlp/t_attn < ζ_mlp/ζ_attn (the *flip ratio*); a near-tie is a flip ratio inside the 95%
                        interval of t_mlp/t_attn over bootstrap draws of the profile's recorded rounds
                        (:func:`sprint.measure.draws.ratio_interval`).  Within a type the table plays no part.
    ridge=0             the least squares undamped (paper Eq. 3; a ridge is added only when the solve fails);
                        r > 0: λ = r·mean(diag G) always, a weaker tuning (issue 25 item 4: on SmolLM2 the tuning
                        fits its 6,144 calibration tokens and loses on held-out text).
Every removal records its flip ratio (``Removal.flip_ratio``; None when only one type was compared), so a report can
say how many of a run's picks the table's uncertainty could have changed.

Memory, bounded by design (issue 26; none of it changes a number, see sprint.methods.plan and docs/memory.md):
    activations are stored in the model's dtype (``store_dtype`` may be narrower, never wider: the walk computes in
    the model's dtype, so a wider copy would double the largest terms and gain nothing);
    the dense references of all L MLPs go to spill files on local disk (``dense_store="disk"``, the default;
    "memory" keeps them in host memory as before), one read back at a time;
    checkpoints go to local disk too when they do not fit the host budget (``spill_checkpoints``);
    tuned rows are kept in the model's dtype (the dtype they are written into the model in) and, with the dense
    references on disk, in spill files until their candidate is removed.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from sprint.errors import SprintError
from sprint.measure.table import LatencyTable
from sprint.methods import tuning
from sprint.methods.base import Pruner, Removal
from sprint.model.sublayers import CheckpointStore, SpillStore, SublayerView, sublayer_name
from sprint.methods.tuning import TuningStats, tune_rows

log = logging.getLogger("sprint")

TIE_BREAKS = ("none", "sensitivity")
HELD_BYTES = 256 * 2**20  # activations held for later tunings (``Saved``); also caps one scoring pass's Ẑ

VARIANTS = {
    #            latency_aware, tunability, exhaustive
    "sprint": (True, True, False),
    "sprint-l": (False, True, False),
    "sprint-t": (True, False, False),
    "sprint-e": (True, True, True),
}


@dataclass
class Score:
    s: int
    tuned: int  # sublayer index of d (an MLP)
    pseudo: float
    sensitivity: float | None = None  # ζ after tuning (None until tuned)
    rows: torch.Tensor | None = None
    weight: torch.Tensor | None = None  # [k, I] in the model's dtype: tuned rows of d's output projection (None
    # while they are spilled: ``SprintPruner.tuned_rows``)


@dataclass
class Saved:
    """What a scored candidate's tuning needs, saved by the walk that scored it, so that tuning it later (in this
    iteration or, while its score stays valid, a later one) costs no second walk.

    Within ``HELD_BYTES`` (best pseudo-importance first) it holds d's pruned input Y, and Ẑ = h(Y) when that fits
    too, and the Gram statistics are accumulated only if the candidate is chosen.  Beyond the budget a candidate
    among the β best gets its statistics at once and drops its activations (the l1 distance keeps Y: its tuned
    distance needs it); any other loses its entry and is re-walked if it is ever chosen.
    """

    d: int
    err_rows: torch.Tensor  # per-row squared errors before tuning
    ref_sq: float
    Y: torch.Tensor | None = None
    ref: torch.Tensor | None = None
    z: list[torch.Tensor] | None = None  # Ẑ, chunk by chunk
    stats: TuningStats | None = None

    def nbytes(self, count_ref: bool) -> int:
        held = [self.Y] * (self.Y is not None) + (self.z or []) + [self.ref] * (count_ref and self.ref is not None)
        return sum(t.numel() * t.element_size() for t in held)


def type_flip(cands: list[int], sensitivity) -> tuple[tuple[int, int] | None, float | None]:
    """The least sensitive attention and MLP candidate, and the t_mlp/t_attn below which η = ζ/t prefers the
    attention one: ζ_mlp / ζ_attn (None, None with one type only or a zero sensitivity)."""
    firsts: dict[str, int] = {}
    for s in sorted(cands, key=lambda s: (sensitivity(s), s)):
        firsts.setdefault(sublayer_name(s)[1], s)
    if len(firsts) < 2 or sensitivity(firsts["attn"]) <= 0 or sensitivity(firsts["mlp"]) <= 0:
        return None, None
    return (firsts["attn"], firsts["mlp"]), sensitivity(firsts["mlp"]) / sensitivity(firsts["attn"])


class SprintPruner(Pruner):
    def __init__(
        self,
        view: SublayerView,
        calibration: torch.Tensor,
        latency: LatencyTable,
        *,
        variant: str = "sprint",
        alpha: int = 8,
        beta: int = 5,
        tune_ratio: float = 1.0,
        reference: str = "dense",
        distance: str = "frobenius",
        store_dtype: torch.dtype | None = None,
        progress: bool = True,
        dense_store: str = "disk",
        spill_dir: str | None = None,
        spill_checkpoints: bool = False,
        max_stats: int | None = None,
        tie_break: str = "none",
        ridge: float = 0.0,
    ):
        super().__init__(view, calibration, latency)
        if max_stats is not None and max_stats < 1:
            raise SprintError(f"max_stats must be >= 1, got {max_stats}")
        self.max_stats = max_stats  # Gram statistics held at once for later tunings (None: up to β); see _trim_saved
        if dense_store not in ("disk", "memory"):
            raise SprintError(f"dense_store must be 'disk' or 'memory', got {dense_store!r}")
        self.latency_aware, self.tunability, self.exhaustive = VARIANTS[variant]
        self.beta, self.tune_ratio = beta, tune_ratio
        self.reference, self.distance = reference, distance
        self.progress = progress
        if tie_break not in TIE_BREAKS:
            raise SprintError(f"tie_break must be one of {', '.join(TIE_BREAKS)}, got {tie_break!r}")
        self.tie_break = tie_break
        self.ridge = ridge
        self.ratio_ci: tuple[float, float] | None = None
        if tie_break == "sensitivity" and self.latency_aware:
            from sprint.measure.draws import ratio_interval

            try:
                self.ratio_ci = ratio_interval(latency)
            except SprintError as err:
                raise SprintError(f"tie_break=sensitivity needs the latency table's uncertainty: {err}") from None
            log.info("tie_break=sensitivity: t_mlp/t_attn %.3g, its 95%% interval over the table's rounds "
                     "[%.3g, %.3g]", latency.t_mlp_s / latency.t_attn_s, *self.ratio_ci)
        X0 = view.embed(calibration)
        if store_dtype is not None and torch.empty(0, dtype=store_dtype).element_size() > X0.element_size():
            raise SprintError(
                f"store_dtype {str(store_dtype).replace('torch.', '')} is wider than the model's "
                f"{str(X0.dtype).replace('torch.', '')}: the walk computes in the model's dtype, so wider stored "
                "activations gain no precision and double the largest memory terms (leave it unset)")
        self.store_dtype = store_dtype or X0.dtype
        spill = spill_dir if spill_dir is not None else tempfile.gettempdir()
        self.checkpoints = CheckpointStore(view.num_sublayers, 1 if self.exhaustive else alpha, X0, self.store_dtype,
                                           spill=spill if spill_checkpoints else None)
        on_disk = dense_store == "disk"
        self.dense_ref = SpillStore(spill if on_disk else None, "dense")  # MLP sublayer d -> dense X^(d+1)
        self.rows_store = SpillStore(spill if on_disk else None, "rows")  # s -> tuned rows of its cached score
        self.peak_terms: dict[str, int] = {}  # the most bytes each term held (memory accounting)
        self.cache: dict[int, Score] = {}
        self._saved: dict[int, Saved] = {}  # s -> what its tuning needs, saved by the untuned walk that scored it
        inner = view.down_proj(0).weight.shape[1]
        outer = view.down_proj(0).weight.shape[0]
        self._stats_bytes = (inner * inner + inner * outer + outer) * 8
        tokens = calibration.numel()
        # Ẑ of one candidate is tokens x inner: on large calibration sets (SmolLM2 at 128 x 512: 400 MB) recompute
        # it from Y for the few candidates whose statistics are needed, rather than hold it during every scoring pass
        self.hold_z = tokens * inner * X0.element_size() <= HELD_BYTES
        if self.tunability and tokens < 4 * inner:
            log.warning(
                "only %d calibration tokens for an MLP of width %d (< 4x): least squares nearly interpolates the "
                "calibration set, so tuned sensitivities collapse towards 0 and stop ranking sublayers. "
                "Use more calibration windows or longer ones.", tokens, inner,
            )

    @classmethod
    def from_config(cls, view, calibration, latency, cfg, *, progress: bool = True, variant: str = "sprint",
                    execution: dict | None = None):
        store = getattr(torch, cfg.store_dtype) if cfg.store_dtype else None
        return cls(view, calibration, latency, variant=variant, alpha=cfg.alpha, beta=cfg.beta,
                   tune_ratio=cfg.tune_ratio, reference=cfg.reference, distance=cfg.distance, store_dtype=store,
                   tie_break=cfg.tie_break, ridge=cfg.ridge, progress=progress, **(execution or {}))

    # -- memory accounting ----------------------------------------------------------------------------------------
    def memory_terms(self) -> dict[str, int]:
        """Host bytes held now by each term of sprint.methods.plan that this pruner owns."""
        emb = self.checkpoints.embeddings
        saved = sum(e.nbytes(self.reference == "current") for e in self._saved.values())
        return {
            "embeddings": emb.numel() * emb.element_size(),
            "checkpoints": self.checkpoints.store.nbytes(),
            "dense references": self.dense_ref.nbytes(),
            "held activations": saved,
            "gram statistics": tuning.LIVE["now"] * self._stats_bytes,
            "tuned rows": sum(sc.weight.numel() * sc.weight.element_size() for sc in self.cache.values()
                              if sc.weight is not None) + self.rows_store.nbytes(),
        }

    def _account(self) -> None:
        for k, v in self.memory_terms().items():
            self.peak_terms[k] = max(self.peak_terms.get(k, 0), v)

    def close(self) -> None:
        """Remove the spill files."""
        self.dense_ref.close()
        self.rows_store.close()
        self.checkpoints.store.close()

    # -- structure ----------------------------------------------------------------------------------------------
    @staticmethod
    def allowed(num_sublayers: int, **settings) -> list[int]:
        return list(range(num_sublayers - 1))  # every sublayer but the last MLP

    def admissible(self) -> list[int]:
        return self.allowed(self.view.num_sublayers)

    def candidates(self) -> list[int]:
        gone = self.removed_set
        return [s for s in self.admissible() if s not in gone]

    def upper_mlp(self, s: int) -> int:
        gone = self.removed_set
        return next(j for j in range(s + 1, self.view.num_sublayers) if j % 2 == 1 and j not in gone)

    def importance(self, s: int, sensitivity: float) -> float:
        return sensitivity / self.saving(s) if self.latency_aware else sensitivity

    def _pick(self, cands: list[int], sensitivity) -> tuple[int, float | None]:
        """The candidate to remove: the lowest η (ties in sublayer order), or under ``tie_break="sensitivity"`` the
        less sensitive of the best attention and the best MLP when their flip ratio lies inside the table's
        interval (module docstring).  Returns it with the flip ratio, for the removal record."""
        best = min(cands, key=lambda s: self.importance(s, sensitivity(s)))
        pair, flip = type_flip(cands, sensitivity) if self.latency_aware else (None, None)
        if pair and self.ratio_ci and self.ratio_ci[0] < flip < self.ratio_ci[1]:
            pick = min(pair, key=lambda s: (sensitivity(s), s))
            if pick != best:
                log.info("near-tie: the pick flips at t_mlp/t_attn = %.3g, inside the table's 95%% interval "
                         "[%.3g, %.3g]: removing the less sensitive %s %d", flip, *self.ratio_ci,
                         *reversed(sublayer_name(pick)))
            return pick, flip
        return best, flip

    # -- scoring ------------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def _score(self, s: int, d: int, Y: torch.Tensor, ref: torch.Tensor, ref_sq: float, tuned: bool,
               keep: int = 0) -> Score:
        """Score candidate s from Y = pruned-path residual input of MLP d, against ref = X^(d+1) (ref_sq = ||ref||²).

        ``keep`` > 0 (untuned walk): save what s's tuning needs (``Saved``) from this very pass, within the memory
        budget and always if s ranks among the ``keep`` best by pseudo-importance so far.
        """
        with self.view.resident(d):  # offload: d's weights on the device for the whole scoring (and tuning)
            return self._score_resident(s, d, Y, ref, ref_sq, tuned, keep)

    def _score_resident(self, s: int, d: int, Y: torch.Tensor, ref: torch.Tensor, ref_sq: float, tuned: bool,
                        keep: int) -> Score:
        view, layer = self.view, d // 2
        down = view.down_proj(layer)
        if down.bias is not None:
            raise NotImplementedError("output projections with a bias are not supported")
        dev = down.weight.device
        stats = TuningStats(down.weight.shape[1], down.weight.shape[0]) if tuned else None
        held: list[torch.Tensor] | None = [] if keep and self.distance == "frobenius" and self.hold_z else None
        err_rows = torch.zeros(down.weight.shape[0], dtype=torch.float64)  # squared error per output row
        l1 = 0.0
        for c in view.chunks(Y.shape[0]):
            y, r = Y[c].to(dev), ref[c].to(dev)
            z = view.mlp_hidden_chunk(layer, y)
            b = r - y  # target of Ẑ Wᵀ
            if stats is not None:
                stats.add(z, b)
            elif held is not None:
                held.append(z)
            diff = down(z) - b  # = X̂^(d+1) − X^(d+1)
            err_rows += diff.double().pow(2).sum((0, 1)).cpu()
            if self.distance == "l1":
                l1 += (diff.double().abs().flatten(1).sum(1) / r.double().abs().flatten(1).sum(1)).sum().item()
        pseudo = l1 if self.distance == "l1" else (err_rows.sum().item() / ref_sq) ** 0.5
        score = Score(s, d, pseudo)
        if stats is not None:
            self._tune(score, stats, err_rows, ref_sq, Y, ref)
        elif keep:
            self.cache[s] = score  # ranked by the budget below
            self._saved[s] = Saved(d, err_rows, ref_sq, Y, ref, held)
            self._trim_saved(keep)
        return score

    def _ref_sq(self, ref: torch.Tensor) -> float:
        return sum(ref[c].double().pow(2).sum().item() for c in self.view.chunks(ref.shape[0]))

    def _stats(self, d: int, Y: torch.Tensor, ref: torch.Tensor, held: list[torch.Tensor] | None) -> TuningStats:
        """Tuning statistics of MLP d's output projection for pruned input Y: from the Ẑ chunks a scoring pass held,
        or (``held`` None) recomputed from Y."""
        layer = d // 2
        down = self.view.down_proj(layer)
        stats = TuningStats(down.weight.shape[1], down.weight.shape[0])
        with self.view.resident(d):
            for i, c in enumerate(self.view.chunks(Y.shape[0])):
                y = Y[c].to(down.weight.device)
                z = held[i] if held is not None else self.view.mlp_hidden_chunk(layer, y)
                stats.add(z, ref[c].to(y.device) - y)
        return stats

    def _tune(self, score: Score, stats: TuningStats, err_rows: torch.Tensor, ref_sq: float,
              Y: torch.Tensor | None = None, ref: torch.Tensor | None = None) -> None:
        """Tune d's output projection from the statistics and set the score's tuned sensitivity ζ and rows."""
        self.num_tunings += 1
        layer = score.tuned // 2
        with self.view.resident(score.tuned):
            w = self.view.down_proj(layer).weight
            result = tune_rows(stats, w, self.tune_ratio, err_rows, self.ridge)
            # the rows are written into the model in its dtype: rounding them now gives the same bits and halves
            # (bf16: quarters) what a cached score holds
            score.rows, score.weight = result.rows, result.weight.to(w.dtype)
            if self.distance == "l1":
                score.sensitivity = self._l1_after_tuning(layer, Y, ref, result)
            else:
                score.sensitivity = (result.error_sq / ref_sq) ** 0.5
        if self.rows_store.on_disk:
            self.rows_store.put(score.s, score.weight)
            score.weight = None
        self._account()

    def _l1_after_tuning(self, layer: int, Y: torch.Tensor, ref: torch.Tensor, result) -> float:
        view, down = self.view, self.view.down_proj(layer)
        w = down.weight.detach().clone()
        w[result.rows] = result.weight.to(w.dtype).to(w.device)
        total = 0.0
        for c in view.chunks(Y.shape[0]):
            y, r = Y[c].to(w.device), ref[c].to(w.device)
            diff = y + view.mlp_hidden_chunk(layer, y) @ w.T - r
            total += (diff.double().abs().flatten(1).sum(1) / r.double().abs().flatten(1).sum(1)).sum().item()
        return total

    def _ranked(self) -> list[int]:
        """Cached candidates, best pseudo-importance first (ties in sublayer order)."""
        return sorted(sorted(self.cache), key=lambda s: self.importance(s, self.cache[s].pseudo))

    def _trim_saved(self, keep: int) -> None:
        """Fit the saved activations into ``HELD_BYTES``, best pseudo-importance first (see ``Saved``).

        Statistics are held for at most ``max_stats`` candidates at once (a host budget, sprint.methods.plan): a
        candidate of the β best beyond that loses its entry and is re-walked, tuned, if it is chosen.  The numbers
        are the same either way (the statistics are recomputed from the same activations); only walks are added."""
        ranked = self._ranked()
        top, used = set(ranked[:keep]), 0
        count_ref = self.reference == "current"  # a dense reference is held anyway
        for s in [s for s in ranked if s in self._saved and self._saved[s].stats is not None and s not in top]:
            del self._saved[s]  # statistics are kept for the β best only (dropped first: never one too many)
        held_stats = sum(e.stats is not None for e in self._saved.values())
        for s in [s for s in ranked if s in self._saved]:
            e = self._saved[s]
            if e.stats is None and used + e.nbytes(count_ref) > HELD_BYTES:
                if e.z is not None and s not in top:
                    e.z = None  # Y alone may still fit
                if s in top and self.distance == "frobenius":
                    if self.max_stats is not None and held_stats >= self.max_stats:
                        del self._saved[s]  # over the budget's statistics: re-walked if chosen
                        continue
                    e.stats, e.Y, e.ref, e.z = self._stats(e.d, e.Y, e.ref, e.z), None, None, None
                    held_stats += 1
                elif s not in top and used + e.nbytes(count_ref) > HELD_BYTES:
                    del self._saved[s]
                    continue
            if e.stats is not None and s not in top:
                del self._saved[s]  # statistics are kept for the β best only
                continue
            used += e.nbytes(count_ref)

    @torch.inference_mode()
    def _walk(self, targets: list[int], tuned: bool, keep: int = 0, cache: bool = True) -> dict[int, Score]:
        """Run the current model from a checkpoint, scoring every target's pruned path at its upper MLP.

        New scores go into the cache as they come (unless ``cache`` is False); ``keep`` > 0 saves what the targets'
        tunings need (``Saved``), so the ``keep`` best by pseudo-importance can be tuned without another walk.
        """
        view, gone = self.view, self.removed_set
        upper = {s: self.upper_mlp(s) for s in targets}
        start, X = self.checkpoints.start_for(min(targets))
        stop = max(upper.values())
        pending: dict[int, torch.Tensor] = {}  # s -> its pruned path's activations (input of s, s skipped)
        scores: dict[int, Score] = {}
        bar = tqdm(total=stop + 1 - start, desc="  walk", leave=False, disable=not self.progress, unit="sublayer")
        for j in range(start, stop + 1):
            bar.update(1)
            self.checkpoints.offer(j, X)
            if j in gone:
                continue
            if j in upper:
                pending[j] = X
            with view.resident(j):  # offload: j's weights moved once for every path evaluated here
                X_next = view.apply(j, X)
                if j % 2 == 1:
                    here = [s for s in pending if upper[s] == j]
                    if self.reference == "dense" and j not in self.dense_ref:
                        assert not self.removed, "dense reference activations must come from the unpruned model"
                        self.dense_ref.put(j, X_next.to(self.store_dtype))
                        ref = X_next.to(self.store_dtype).to(X.dtype)  # what the store returns, without reading it
                    elif self.reference == "dense":
                        ref = self.dense_ref.get(j).to(X.dtype) if here else None
                    else:
                        ref = X_next
                    ref_sq = self._ref_sq(ref) if here else 0.0
                    for s in here:
                        scores[s] = self._score(s, j, pending.pop(s), ref, ref_sq, tuned, keep=keep)
                        if cache:
                            self.cache[s] = scores[s]
                for s in pending:
                    if s != j:
                        pending[s] = view.apply(j, pending[s])
            X = X_next
            self._account()
        bar.close()
        return scores

    @torch.inference_mode()
    def _tuned_from_saved(self, s: int) -> Score:
        """Tuned score of s from what its scoring walk saved."""
        e, pseudo = self._saved.pop(s), self.cache[s].pseudo
        if self.distance == "l1":
            return self._score(s, e.d, e.Y, e.ref, e.ref_sq, tuned=True)
        score = Score(s, e.d, pseudo)
        self._tune(score, e.stats or self._stats(e.d, e.Y, e.ref, e.z), e.err_rows, e.ref_sq)
        return score

    # -- one iteration ------------------------------------------------------------------------------------------
    def step(self) -> list[Removal]:
        cands = self.candidates()
        if self.exhaustive:
            scores = self._walk(cands, tuned=True, cache=False)
            best, flip = self._pick(cands, lambda s: scores[s].sensitivity)
            return self._remove(scores[best], tuned=True, flip=flip)

        stale = [s for s in cands if s not in self.cache]
        if stale:
            self._walk(stale, tuned=False, keep=self.beta if self.tunability else 0)
        if not self.tunability:
            best, flip = self._pick(cands, lambda s: self.cache[s].pseudo)
            return self._remove(self.cache[best], tuned=False, flip=flip)

        chosen = self._ranked()[: self.beta]
        need = [s for s in chosen if self.cache[s].sensitivity is None]
        # those holding statistics first: each is freed once tuned, before any is built from held activations
        for s in sorted((s for s in need if s in self._saved), key=lambda s: self._saved[s].stats is None):
            self.cache[s] = self._tuned_from_saved(s)
        rest = [s for s in need if self.cache[s].sensitivity is None]
        if rest:
            self._walk(rest, tuned=True)
        best, flip = self._pick(chosen, lambda s: self.cache[s].sensitivity)
        return self._remove(self.cache[best], tuned=True, flip=flip)

    @torch.inference_mode()
    def prepare_replay(self) -> None:
        """The dense references come from the unpruned model: compute them (one dense pass) before the replay."""
        if self.reference != "dense" or self.removed:
            return
        X = self.checkpoints.embeddings
        for j in range(self.view.num_sublayers):
            X = self.view.apply(j, X)
            if j % 2 == 1 and j not in self.dense_ref:
                self.dense_ref.put(j, X.to(self.store_dtype))

    def replay(self, steps: list[dict]) -> None:
        super().replay(steps)
        if self.removed:
            self.checkpoints.invalidate_above(min(self.removed_set))
            for r in self.removed_set:
                self.dense_ref.pop(r, None)
        self.cache, self._saved = {}, {}

    def tuned_rows(self, score: Score) -> torch.Tensor:
        """The tuned rows of a score, from the score or its spill file."""
        return score.weight if score.weight is not None else self.rows_store.get(score.s)

    def _remove(self, score: Score, tuned: bool, flip: float | None = None) -> list[Removal]:
        r = score.s
        sensitivity = score.sensitivity if tuned else score.pseudo
        layer, kind = sublayer_name(r)
        removal = Removal(layer, kind, self.importance(r, sensitivity), sensitivity, score.tuned // 2 if tuned else None,
                          flip_ratio=flip)
        if tuned and score.rows is not None and len(score.rows):
            rows = self.tuned_rows(score)
            self.last_rows = (score.tuned // 2, score.rows, rows)  # for the journal (sprint.methods.journal)
            self.view.write_rows(score.tuned // 2, score.rows, rows)
        else:
            self.last_rows = None
        self.record([removal])
        self.checkpoints.invalidate_above(r)
        self.cache = {s: sc for s, sc in self.cache.items() if sc.tuned < r and s != r}
        self._saved = {s: e for s, e in self._saved.items() if s in self.cache}
        for s in [s for s in self.rows_store.keys() if s not in self.cache]:
            self.rows_store.pop(s)
        self.dense_ref.pop(r, None)  # a removed MLP is nobody's upper MLP any more
        log.info(
            "removed %s %d (importance %.4g, sensitivity %.4g%s): est. latency %.4gs",
            kind, layer, removal.importance, sensitivity,
            f", tuned MLP {removal.tuned_layer}" if removal.tuned_layer is not None else "", self.estimated_latency(),
        )
        return [removal]
