"""The latency table (per-sublayer generation-time savings) and how it is measured.

Authors' protocol: time HF ``generate`` (batch 1, random prompt, exactly ``gen_len`` new tokens, KV cache on) for
the dense model (T1), with a fraction of MLP sublayers removed (T2) and with the same fraction of attention
sublayers removed (T3); t_mlp = (T1 - T2) / n and t_attn = (T1 - T3) / n.  During pruning the latency of a
candidate model is *estimated* from that table; real speedups are measured afterwards.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from tqdm.auto import tqdm

from sprint.errors import SprintError
from sprint.io import atomic_write_json
from sprint.modeling_sprint import decoder_layers, removed_sublayers, set_removed
from sprint.provenance import provenance

log = logging.getLogger("sprint")

_REQUIRED = ("dense_s", "t_attn_s", "t_mlp_s")
_OPTIONAL = {"device": "unknown", "model": "unknown", "prompt_len": 0, "gen_len": 0}


@dataclass
class LatencyTable:
    """Dense generation time and the time saved by removing one attention / one MLP sublayer (seconds)."""

    device: str
    model: str
    prompt_len: int
    gen_len: int
    dense_s: float
    t_attn_s: float
    t_mlp_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def saving(self, kind: str) -> float:
        """Seconds saved by removing one sublayer of ``kind`` ("attn" or "mlp")."""
        if kind not in ("attn", "mlp"):
            raise ValueError(f"sublayer kind must be 'attn' or 'mlp', got {kind!r}")
        return self.t_attn_s if kind == "attn" else self.t_mlp_s

    def estimate(self, n_attn: int, n_mlp: int) -> float:
        """Estimated generation time with n_attn attention and n_mlp MLP sublayers removed."""
        return self.dense_s - n_attn * self.t_attn_s - n_mlp * self.t_mlp_s

    def speedup(self, n_attn: int, n_mlp: int) -> float:
        """Estimated speedup dense_s / estimate (inf once the estimate reaches 0)."""
        est = self.estimate(n_attn, n_mlp)
        return self.dense_s / est if est > 0 else math.inf

    def check_plausible(self, num_layers: int, source: str = "latency table") -> None:
        """Refuse a table that cannot be true for a model of ``num_layers`` decoder layers: removing every
        sublayer would save as much time as the dense model takes, or more (the estimate would reach 0 s).

        A profiled table is judged at the lower ends of its savings' 95% CIs: a layer-dominated model (a tiny test
        model) can measure savings whose medians add up to the dense time within noise, which is not impossible.
        """
        ci = self.extra.get("ci95") if isinstance(self.extra.get("ci95"), dict) else {}

        def low(key: str, value: float) -> float:
            bounds = ci.get(key)
            ok = isinstance(bounds, (list, tuple)) and bounds and isinstance(bounds[0], (int, float))
            return min(value, float(bounds[0])) if ok else value

        t_attn, t_mlp = low("t_attn_s", self.t_attn_s), low("t_mlp_s", self.t_mlp_s)
        total = num_layers * (t_attn + t_mlp)
        if total >= self.dense_s:
            where = " (the lower ends of their 95% CIs)" if ci else ""
            raise SprintError(
                f"{source}: dense_s={self.dense_s:g} s but {num_layers} layers x (t_attn_s={t_attn:g} + "
                f"t_mlp_s={t_mlp:g}) s{where} = {total:g} s: removing every sublayer would save all the dense time "
                f"or more, which cannot be true (re-profile, or fix the hand-written table)"
            )

    def to_dict(self) -> dict[str, Any]:
        """Flat dict: the seven fields with the extra keys merged in."""
        d = asdict(self)
        extra = d.pop("extra")
        return {**d, **extra}


def load_latency(path: str | os.PathLike) -> LatencyTable:
    """Read a latency JSON; only dense_s, t_attn_s and t_mlp_s (positive numbers) are required."""
    path = Path(path)
    if not path.is_file():
        raise SprintError(f"latency file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        where = f"line {err.lineno}, column {err.colno}"
        raise SprintError(f"latency file {path}: invalid JSON at {where}: {err.msg}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise SprintError(f"latency file {path} cannot be read: {err}") from err
    if not isinstance(data, dict):
        raise SprintError(f"latency file {path}: expected a JSON object, got {type(data).__name__}")
    for key in _REQUIRED:
        if key not in data:
            raise SprintError(f"latency file {path}: missing key {key!r} (required: {', '.join(_REQUIRED)})")
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise SprintError(f"latency file {path}: {key!r} must be a positive number of seconds, got {value!r}")
    for key in ("t_attn_s", "t_mlp_s"):
        if data[key] >= data["dense_s"]:
            raise SprintError(f"latency file {path}: {key}={data[key]!r} s is not below dense_s={data['dense_s']!r} s: "
                              f"one sublayer cannot take all of the model's time")
    for key in ("prompt_len", "gen_len"):
        value = data.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SprintError(f"latency file {path}: {key!r} must be a non-negative integer, got {value!r}")
    opt = {k: data.get(k, default) for k, default in _OPTIONAL.items()}
    extra = {k: v for k, v in data.items() if k not in _OPTIONAL and k not in _REQUIRED}
    return LatencyTable(
        device=str(opt["device"]), model=str(opt["model"]), prompt_len=opt["prompt_len"], gen_len=opt["gen_len"],
        **{k: float(data[k]) for k in _REQUIRED}, extra=extra,
    )


def save_latency(table: LatencyTable, path: str | os.PathLike) -> None:
    atomic_write_json(path, table.to_dict())


def given_table(path: str | os.PathLike, num_layers: int) -> LatencyTable:
    """A latency table measured before (or hand-written), checked for a model of ``num_layers`` decoder layers, with
    ``given`` (its path and SHA-256) added, so that the copy says it was not measured in this run."""
    table = load_latency(path)
    table.check_plausible(num_layers, f"latency file {path}")
    table.extra["given"] = {"path": str(path), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
    return table


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model name and the number of usable cores."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            name = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name} ({cores} cores)"


def _random_prompt(model, prompt_len: int, seed: int) -> torch.Tensor:
    """Seeded random prompt ids [1, prompt_len], avoiding the model's bos/eos/pad ids."""
    vocab = model.config.vocab_size
    special = set()
    for cfg in (model.config, getattr(model, "generation_config", None)):
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(cfg, key, None)
            special.update(v for v in (value if isinstance(value, (list, tuple)) else [value]) if v is not None)
    allowed = torch.ones(vocab, dtype=torch.bool)
    allowed[[i for i in special if 0 <= i < vocab]] = False
    pool = allowed.nonzero().squeeze(1)
    pick = torch.randint(0, pool.numel(), (1, prompt_len), generator=torch.Generator().manual_seed(seed))
    return pool[pick]


def _pad_id(model) -> int:
    gc = getattr(model, "generation_config", None)
    for value in (getattr(gc, "pad_token_id", None), getattr(gc, "eos_token_id", None), model.config.eos_token_id):
        value = value[0] if isinstance(value, (list, tuple)) and value else value
        if isinstance(value, int):
            return value
    return 0


def _timed(device: torch.device, fn: Callable[[], Any]) -> tuple[Any, float]:
    """(fn(), seconds it took): CUDA events on a GPU (synchronised), ``perf_counter`` elsewhere."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        out = fn()
        end.record()
        torch.cuda.synchronize(device)
        return out, start.elapsed_time(end) / 1000.0
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


@torch.inference_mode()
def measure_generate_latency(
    model, prompt_len: int, gen_len: int, warmup: int = 1, repeats: int = 3, seed: int = 0
) -> dict[str, Any]:
    """Time ``generate`` of exactly gen_len tokens after a random prompt (batch 1, greedy, KV cache on).

    Returns median_s (the reported number), mean_s, times_s and the device name.
    """
    if prompt_len < 1 or gen_len < 1 or repeats < 1 or warmup < 0:
        raise SprintError(
            f"latency measurement needs prompt_len, gen_len, repeats >= 1 and warmup >= 0, got "
            f"prompt_len={prompt_len}, gen_len={gen_len}, repeats={repeats}, warmup={warmup}"
        )
    device = next(model.parameters()).device
    input_ids = _random_prompt(model, prompt_len, seed).to(device)
    kwargs = dict(
        attention_mask=torch.ones_like(input_ids), max_new_tokens=gen_len, min_new_tokens=gen_len, do_sample=False,
        use_cache=True, pad_token_id=_pad_id(model),
    )
    times = []
    for i in range(warmup + repeats):
        _, elapsed = _timed(device, lambda: model.generate(input_ids, **kwargs))
        if i >= warmup:
            times.append(elapsed)
    return {"median_s": statistics.median(times), "mean_s": statistics.fmean(times), "times_s": times,
            "device": device_name(device)}


def decode_steps(subject: Callable[[], Any], prompt_len: int, gen_len: int,
                 seed: int = 0) -> Iterator[tuple[float, torch.Tensor]]:
    """Greedy generation of ``gen_len`` tokens after the seeded random prompt, one forward at a time with the KV
    cache (the prefill, then gen_len - 1 decode steps: the forwards ``generate`` runs), yielding each step's
    seconds and token, so that several models' steps can be timed alternately.  ``subject()`` is called before
    every step (outside the timing) and returns the model, ready to run."""
    from transformers import DynamicCache

    model = subject()
    device = next(model.parameters()).device
    x = _random_prompt(model, prompt_len, seed).to(device)
    cache = DynamicCache(config=model.config)
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"  # 5.24 renamed it
    for _ in range(gen_len):
        model = subject()
        with torch.inference_mode():
            x, elapsed = _timed(device, lambda: model(input_ids=x, use_cache=True, **{name: cache}).logits[:, -1:]
                                .argmax(-1))
        yield elapsed, x


# ------------------------------------------------------------------------------------------ the protocol


TIMINGS = ("generate", "step")
SPARSE_KERNELS = ("auto", "dense")  # how a 2:4-sparse model is timed (sprint.sparse_kernels)


class NoisyLatencyError(SprintError):
    """A latency measurement whose samples stayed spread beyond the protocol's bound."""


@dataclass(frozen=True)
class Protocol:
    """How every latency number of the project is measured: the profile's table, the pipeline's measured speedups
    and the benchmark's latency check all go through :func:`interleaved_rounds`.

    The timed unit is the generation of exactly ``gen_len`` tokens after a seeded random ``prompt_len`` prompt
    (batch 1, greedy, KV cache on). Every subject first runs ``warmup`` untimed generations; then each *round* times
    every subject once, the order rotated from round to round, so a drift of the machine hits all subjects alike.
    ``timing="generate"`` (the authors' protocol) times one whole HF ``generate`` per subject and round.
    ``timing="step"`` interleaves finer: the subjects' forwards alternate step by step (prefill, then each decode
    step, :func:`decode_steps`) and a subject's time is the sum of its steps.  That is for noisy CPUs: on the shared
    2-core VM this project is developed on, the compute speed itself wanders by ~10% over seconds (no preemption,
    no page faults: other tenants' load on the host), so two generates a second apart differ by 8-14% while steps
    35 ms apart share their conditions; the per-round ratio's spread drops about threefold.  It times the model's
    forwards and the greedy pick, not ``generate``'s own bookkeeping (the same for dense and pruned models), and it
    synchronises a GPU at every step: GPUs keep ``"generate"``.  ``threads`` > 0 sets torch's CPU threads while
    timing (0 leaves them): one thread on a 2-core VM halves the per-round spread and keeps a busy second core out
    of the numbers; the table and the report record it as part of the device.  ``sparse_kernels`` says how a
    2:4-sparse checkpoint is timed: ``auto`` with semi-structured sparse kernels where the hardware has them (CUDA,
    compute capability 8.0+), ``dense`` as stored (:mod:`sprint.sparse_kernels`).
    A quantity is a location estimate over rounds of a per-round value (a ratio of two times, a difference) with a
    95% confidence interval: by default (``estimator="hodges-lehmann"``) the Hodges-Lehmann estimate, the median of
    the pairwise means of the rounds, with the exact Wilcoxon signed-rank CI (:func:`hodges_lehmann_ci`); with
    ``estimator="median"`` the sample median with its order-statistic CI (:func:`median_ci`).  Both CIs are
    distribution-free; Hodges-Lehmann's assumes the per-round values are symmetric about their centre (timing
    noise on interleaved rounds hits both sides of a ratio alike) and in exchange is narrower: 0.82-0.99 of the
    median's width on simulated symmetric noise (tests/test_latency.py), and 0.6-0.8 on this project's recorded
    rounds (scripts/estimator_widths.py on 9 measured speedups of SmolLM2 here: ±4.4 / 3.3 / 2.5 / 2.4% after 10 / 15 /
    20 / 25 rounds, against ±7.4 / 4.8 / 3.7 / 3.1% for the median), so the same precision takes about half the
    rounds there.  The median's needs no symmetry.  Its *spread* is the CI's
    half-width relative to the reference time (the dense model's). ``min_rounds`` rounds are taken, then more, up to
    ``max_rounds``, while any spread exceeds ``max_spread``; a measurement still too wide is taken again from
    scratch (``attempts`` in all) and, if it stays noisy, raises :class:`NoisyLatencyError`: no number is written
    that the protocol does not trust.
    """

    prompt_len: int = 64
    gen_len: int = 32
    timing: str = "generate"
    threads: int = 0
    warmup: int = 1
    min_rounds: int = 8
    max_rounds: int = 24
    max_spread: float = 0.03
    attempts: int = 2
    seed: int = 0
    estimator: str = "hodges-lehmann"
    sparse_kernels: str = "auto"

    def validate(self) -> None:
        if self.sparse_kernels not in SPARSE_KERNELS:
            raise SprintError(f"latency protocol: sparse_kernels must be one of {', '.join(SPARSE_KERNELS)}, got "
                              f"{self.sparse_kernels!r}")
        if self.timing not in TIMINGS:
            raise SprintError(f"latency protocol: timing must be one of {', '.join(TIMINGS)}, got {self.timing!r}")
        if self.estimator not in ESTIMATORS:
            raise SprintError(f"latency protocol: estimator must be one of {', '.join(ESTIMATORS)}, got "
                              f"{self.estimator!r}")
        if self.prompt_len < 1 or self.gen_len < 1 or self.warmup < 0:
            raise SprintError(f"latency protocol needs prompt_len, gen_len >= 1 and warmup >= 0, got "
                              f"prompt_len={self.prompt_len}, gen_len={self.gen_len}, warmup={self.warmup}")
        if not 6 <= self.min_rounds <= self.max_rounds:
            raise SprintError(f"latency protocol needs 6 <= min_rounds <= max_rounds (6 rounds are the fewest with a "
                              f"95% CI), got min_rounds={self.min_rounds}, max_rounds={self.max_rounds}")
        if self.threads < 0:
            raise SprintError(f"latency protocol: threads must be >= 0 (0 = torch's setting), got {self.threads}")
        if not 0 < self.max_spread < 1 or self.attempts < 1:
            raise SprintError(f"latency protocol needs 0 < max_spread < 1 and attempts >= 1, got "
                              f"max_spread={self.max_spread}, attempts={self.attempts}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def median_ci(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(median, lo, hi): the sample median and the order-statistic CI [x_(j), x_(n-1-j)] holding the population
    median with probability >= ``level`` (the largest such j; the sample range when n is too small for ``level``)."""
    x = sorted(values)
    n = len(x)
    if n == 0:
        raise ValueError("median_ci of no values")
    j, cdf = 0, 0.0
    for k in range(n // 2):
        cdf += math.comb(n, k) / 2**n  # P(B <= k), B ~ Binomial(n, 1/2)
        if 1 - 2 * cdf < level:
            break
        j = k
    return statistics.median(x), x[j], x[n - 1 - j]


def hodges_lehmann_ci(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(estimate, lo, hi): the Hodges-Lehmann estimate (the median of the n(n+1)/2 Walsh averages (x_i + x_j) / 2,
    i <= j) and the CI [w_(c), w_(M+1-c)] of the sorted Walsh averages that holds the centre of a symmetric
    distribution with probability >= ``level``, c the largest with P(T <= c - 1) <= (1 - level) / 2 under the exact
    null distribution of Wilcoxon's signed-rank statistic T (the full range when n is too small for ``level``)."""
    x = sorted(values)
    n = len(x)
    if n == 0:
        raise ValueError("hodges_lehmann_ci of no values")
    walsh = sorted((x[i] + x[j]) / 2 for i in range(n) for j in range(i, n))
    m = len(walsh)
    counts = [1] + [0] * m  # counts[t]: subsets of {1..n} with rank sum t (the signed-rank null, times 2^n)
    for k in range(1, n + 1):
        for t in range(m, k - 1, -1):
            counts[t] += counts[t - k]
    c, cdf = 0, 0.0
    for t in range(m):
        cdf += counts[t] / 2**n  # P(T <= t)
        if cdf > (1 - level) / 2:
            break
        c = t + 1
    lo, hi = (walsh[c - 1], walsh[m - c]) if c >= 1 else (walsh[0], walsh[-1])
    return statistics.median(walsh), lo, hi


ESTIMATORS = {"hodges-lehmann": hodges_lehmann_ci, "median": median_ci}


def _estimate(values: list[float], scale: float, estimator: str = "hodges-lehmann") -> dict[str, Any]:
    """Location estimate, 95% CI and spread (the CI's larger half-width divided by ``scale``) of per-round values,
    by ``estimator`` (a key of :data:`ESTIMATORS`)."""
    est, lo, hi = ESTIMATORS[estimator](values)
    return {"value": est, "ci95": [lo, hi], "spread": max(est - lo, hi - est) / scale}


def interleaved_rounds(
    subjects: dict[str, Callable[[], Any]], protocol: Protocol, summarize: Callable[[dict[str, list[float]]], dict],
    desc: str = "latency",
) -> tuple[dict[str, list[float]], dict[str, dict], int]:
    """Time ``subjects`` (name -> zero-argument callable returning the model to time, ready to run) in interleaved
    rounds until every quantity of ``summarize(samples)`` is within ``protocol.max_spread``.

    Returns (samples, summary, attempt): the per-subject times of the accepted attempt (seconds, one per round), its
    summary ({quantity: {"value", "ci95", "spread"}}) and which attempt it was.  Raises NoisyLatencyError.
    """
    protocol.validate()
    threads = torch.get_num_threads()
    if protocol.threads:
        torch.set_num_threads(protocol.threads)
    try:
        return _interleaved_rounds(subjects, protocol, summarize, desc)
    finally:
        torch.set_num_threads(threads)


def _interleaved_rounds(subjects, protocol, summarize, desc):
    names = list(subjects)
    worst: tuple[float, str] = (math.inf, "")
    for attempt in range(1, protocol.attempts + 1):
        for name in names:
            if protocol.warmup:
                measure_generate_latency(subjects[name](), protocol.prompt_len, protocol.gen_len, 0, protocol.warmup,
                                         protocol.seed)
        samples: dict[str, list[float]] = {name: [] for name in names}
        with tqdm(total=protocol.max_rounds, desc=f"{desc} (attempt {attempt})", unit="round", leave=False) as bar:
            for rnd in range(protocol.max_rounds):
                for name, seconds in _round(subjects, names[rnd % len(names):] + names[: rnd % len(names)],
                                            protocol).items():
                    samples[name].append(seconds)
                bar.update(1)
                if rnd + 1 < protocol.min_rounds:
                    continue
                summary = summarize(samples)
                worst = max((q["spread"], key) for key, q in summary.items())
                bar.set_postfix(spread=f"±{worst[0]:.1%}")
                if worst[0] <= protocol.max_spread:
                    return samples, summary, attempt
        log.warning("%s: attempt %d of %d too noisy after %d rounds: %s spreads ±%.1f%% (bound ±%.1f%%)", desc,
                    attempt, protocol.attempts, protocol.max_rounds, worst[1], 100 * worst[0],
                    100 * protocol.max_spread)
    raise NoisyLatencyError(
        f"{desc}: too noisy to trust: after {protocol.attempts} attempt(s) of {protocol.max_rounds} interleaved "
        f"rounds the 95% CI of {worst[1]} still spreads ±{100 * worst[0]:.1f}% of the dense time, beyond the bound "
        f"±{100 * protocol.max_spread:.1f}% (latency.max_spread). Run it on an idle machine (stop other jobs), or "
        f"allow more rounds (latency.max_rounds), or knowingly accept a wider bound (latency.max_spread); nothing "
        f"was written"
    )


def _round(subjects: dict[str, Callable[[], Any]], order: list[str], protocol: Protocol) -> dict[str, float]:
    """One round: every subject's generation time, in ``order``.  ``timing="generate"``: one whole ``generate``
    each, one after the other; ``"step"``: the subjects' forwards alternate step by step (:func:`decode_steps`),
    each subject's time the sum of its steps."""
    if protocol.timing == "generate":
        return {name: measure_generate_latency(subjects[name](), protocol.prompt_len, protocol.gen_len, 0, 1,
                                               protocol.seed)["times_s"][0] for name in order}
    steps = {name: decode_steps(subjects[name], protocol.prompt_len, protocol.gen_len, protocol.seed)
             for name in order}
    totals = dict.fromkeys(order, 0.0)
    for _ in range(protocol.gen_len):
        for name in order:
            totals[name] += next(steps[name])[0]
    return totals


def with_removed(model, removed: list) -> Callable[[], Any]:
    """A subject for :func:`interleaved_rounds`: ``model`` with exactly ``removed`` sublayers skipped."""

    def subject():
        set_removed(model, removed)
        return model

    return subject


def measure_speedup(dense: Callable[[], Any], pruned: Callable[[], Any], protocol: Protocol,
                    desc: str = "speedup") -> dict[str, Any]:
    """Measured speedup of ``pruned`` over ``dense``: :func:`measure_speedups` with one pruned subject."""
    return measure_speedups(dense, {"pruned": pruned}, protocol, desc)["pruned"]


def measure_speedups(dense: Callable[[], Any], pruned: dict[str, Callable[[], Any]], protocol: Protocol,
                     desc: str = "speedup") -> dict[str, dict[str, Any]]:
    """Measured speedup of every ``pruned`` subject over ``dense`` (subjects as in :func:`interleaved_rounds`),
    all timed in the same interleaved rounds: name -> the median over rounds of the per-round ratio dense time /
    pruned time, its 95% CI, spread and every raw sample.  Rounds continue until every ratio is within
    ``protocol.max_spread``.  Timing many models together times the dense model once per round for all of them,
    and takes every ratio under the same conditions; it holds every model in memory at once."""
    if "dense" in pruned:
        raise ValueError("measure_speedups: 'dense' names the reference subject; give the pruned ones other names")
    names = list(pruned)

    def ratios(s: dict[str, list[float]], name: str) -> list[float]:
        return [d / p for d, p in zip(s["dense"], s[name])]

    def summarize(s: dict[str, list[float]]) -> dict:
        return {name: _estimate(r, statistics.median(r), protocol.estimator) for name in names
                for r in [ratios(s, name)]}

    samples, summary, attempt = interleaved_rounds({"dense": dense, **pruned}, protocol, summarize, desc)
    device = device_name(next(dense().parameters()).device)
    out = {}
    for name in names:
        est = summary[name]
        out[name] = {
            "estimate": est["value"], "estimator": protocol.estimator, "median": statistics.median(ratios(samples, name)),
            "ci95": est["ci95"], "spread": est["spread"], "max_spread": protocol.max_spread,
            "rounds": len(samples["dense"]), "attempts": attempt, "ratios": ratios(samples, name),
            "dense_s": samples["dense"], "pruned_s": samples[name],
            "dense_latency_s": statistics.median(samples["dense"]), "latency_s": statistics.median(samples[name]),
            "subjects": len(names) + 1,
            "protocol": protocol.to_dict(), "prompt_len": protocol.prompt_len, "gen_len": protocol.gen_len,
            "warmup": protocol.warmup, "device": device, "torch_threads": protocol.threads or torch.get_num_threads(),
        }
    return out


def profile_latency(model, model_name: str, protocol: Protocol, fraction: float = 0.25) -> LatencyTable:
    """Measure the latency table: dense (T1), n MLPs removed (T2), n attentions removed (T3), layers L-2, L-3, ...

    The three are timed by the protocol (:class:`Protocol`).  What the stopping rule needs is each sublayer's
    saving *as a share of the dense time* (the estimated speedup depends on nothing else), and that is what the
    rounds measure well: per round, (1 - T2/T1) / n and (1 - T3/T1) / n, whose estimates (with 95% CIs) times the
    dense time's give t_mlp and t_attn.  The noise guard bounds their spreads, n times the CI half-width of
    the per-sublayer share, i.e. the uncertainty of the measured saving as a share of the dense time.  dense_s
    itself moves with the machine's speed from round to round (±15% within minutes on a shared 2-core VM, which
    scales T1, T2 and T3 alike and cancels in the shares); its CI is recorded, not guarded.  A saving whose CI
    reaches 0 or below means the machine was too noisy and is an error.
    """
    base = removed_sublayers(model)
    num_layers = len(decoder_layers(model))
    if not 0 < fraction < 1:
        raise SprintError(f"latency profiling fraction must be in (0, 1), got {fraction}")
    if num_layers < 2:
        raise SprintError(f"latency profiling needs at least 2 decoder layers, the model has {num_layers}")
    n = min(max(1, round(fraction * num_layers)), num_layers - 1)
    upper = list(range(num_layers - 2, num_layers - 2 - n, -1))
    configs = {"dense": [], "mlp": [(i, "mlp") for i in upper], "attn": [(i, "attn") for i in upper]}
    clash = sorted(set(base) & {r for rs in configs.values() for r in rs})
    if clash:
        raise SprintError(f"model {model_name} already has sublayers {clash} removed: profile the dense model")

    def summarize(s: dict[str, list[float]]) -> dict:
        """Per-sublayer savings as shares of the dense time (guarded), keyed by the table entry they scale to."""
        return {f"t_{kind}_s": _estimate([(1 - x / d) / n for d, x in zip(s["dense"], s[kind])], 1 / n,
                                         protocol.estimator)
                for kind in ("attn", "mlp")}

    try:
        samples, shares, attempt = interleaved_rounds(
            {name: with_removed(model, base + removed) for name, removed in configs.items()}, protocol, summarize,
            desc="latency profile")
    finally:
        set_removed(model, base)
    dense = _estimate(samples["dense"], statistics.median(samples["dense"]), protocol.estimator)
    t1 = dense["value"]
    summary = {"dense_s": dense, **{k: {"value": t1 * q["value"], "ci95": [t1 * q["ci95"][0], t1 * q["ci95"][1]],
                                        "spread": q["spread"]} for k, q in shares.items()}}
    t_attn, t_mlp = summary["t_attn_s"]["value"], summary["t_mlp_s"]["value"]
    log.info("latency: dense %.4f s, t_attn %.5f s, t_mlp %.5f s (spreads %s)", t1, t_attn, t_mlp,
             ", ".join(f"{k} ±{100 * q['spread']:.1f}%" for k, q in summary.items()))
    low = [k for k in ("t_attn_s", "t_mlp_s") if summary[k]["ci95"][0] <= 0]
    if low:
        raise NoisyLatencyError(
            f"latency profile: removing {n} sublayers did not measurably reduce the time ({', '.join(low)} has a 95% "
            f"CI reaching {min(summary[k]['ci95'][0] for k in low):.5f} s; dense {t1:.4f} s): run on an idle machine "
            f"or use a larger --gen-len; nothing was written"
        )
    extra = {"num_layers": num_layers, "n_removed": n, "fraction": fraction, "protocol": protocol.to_dict(),
             "rounds": len(samples["dense"]), "attempts": attempt,
             "ci95": {k: q["ci95"] for k, q in summary.items()}, "spread": {k: q["spread"] for k, q in summary.items()},
             "guarded": sorted(shares), "max_spread": protocol.max_spread, "times_s": samples, "dtype": str(model.dtype),
             "torch_threads": protocol.threads or torch.get_num_threads(), "provenance": provenance()}
    return LatencyTable(device=device_name(next(model.parameters()).device), model=model_name,
                        prompt_len=protocol.prompt_len, gen_len=protocol.gen_len, dense_s=t1, t_attn_s=t_attn,
                        t_mlp_s=t_mlp, extra=extra)
