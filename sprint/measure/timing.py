"""Timing: one subject's generation (a whole HF ``generate``, or step by step), and the interleaved rounds over
several subjects that every latency number of the project goes through (:func:`interleaved_rounds`).
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import platform
import statistics
import time
from typing import Any, Callable, Iterator

import torch
from tqdm.auto import tqdm

from sprint.errors import SprintError
from sprint.measure.protocol import NoisyLatencyError, Protocol

log = logging.getLogger("sprint")


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

