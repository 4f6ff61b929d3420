"""Running exported GGUFs with llama.cpp (through ``llama-cpp-python``): exactness against the PyTorch checkpoint,
and the serving speedup of pruned GGUFs over the dense one.

Exactness (:func:`torch_run`, :func:`llamacpp_run`, :func:`compare`): the same prompt's greedy continuation
(argmax at every step, no sampler, EOS not special) and the perplexity of held-out token windows, computed by
PyTorch on the checkpoint (float32) and by llama.cpp on the GGUF; plus the largest logit difference over the
prompt's positions.  :data:`KV_CACHE` says which KV cache a check runs an output type with: an f32 GGUF with an
f32 cache, so that the comparison sees the export alone (logits then agree to float32 rounding, ~1e-6 of their
scale), the others with llama.cpp's default f16 cache, as a server runs them (~1e-3 of their scale at f16).

Serving speedup (:func:`serving_speedups`): every GGUF (the dense one, a second copy of it as a control, the pruned
ones) is loaded once; each round times every model once, in an order rotated from round to round, at each thread
count: prompt processing (one batch of ``prompt_len`` seeded random tokens on an empty KV cache) and decode
(``gen_len`` single-token steps after it, each token fixed, as llama-bench does).  With ``timing="step"`` (the
default, for CPUs whose speed wanders over seconds, like the pipeline's PyTorch protocol on this VM) the decode steps
alternate model by model, so that steps milliseconds apart share their conditions; ``"whole"`` times each model's
prompt and decode in one go.  Per round and model the speedup
is the dense model's time over the model's, for prompt processing (``pp``), decode (``tg``) and the two together
(``e2e``: the pipeline's unit, a prompt then its generation).  Each is reported as the Hodges-Lehmann estimate
(or the median) over rounds with its distribution-free 95% CI (:mod:`sprint.measure.protocol`), rounds being
added up to ``max_rounds`` while a CI is wider than ``max_spread``.  Throughputs (tokens/s) are the medians.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from sprint.errors import SprintError
from sprint.measure.protocol import ESTIMATORS

log = logging.getLogger("sprint")

PHASES = ("pp", "tg", "e2e")
KV_CACHE = {"f32": "f32", "f16": "f16", "bf16": "f16", "q8_0": "f16"}  # output type -> KV cache of its check


class LlamaLoadError(SprintError):
    """llama.cpp refused a GGUF (its own message is on stderr; llama-cpp-python only says that loading failed)."""


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise SprintError("llama-cpp-python is not installed: bash workflow/setup.sh builds it "
                          "(pip install llama-cpp-python==0.3.36)") from None
    return llama_cpp


def open_gguf(path: str | os.PathLike, n_ctx: int = 512, threads: int = 1, logits_all: bool = False,
              kv_cache: str = "f16"):
    """A ``llama_cpp.Llama`` on ``path`` (CPU, quiet), its batch as large as its context; ``kv_cache``: the type of
    its cached keys and values, f16 (llama.cpp's default, what a server uses) or f32."""
    llama_cpp = _llama_cpp()
    if not Path(path).is_file():
        raise SprintError(f"{path}: no such GGUF file")
    kv = {"f16": llama_cpp.GGML_TYPE_F16, "f32": llama_cpp.GGML_TYPE_F32}[kv_cache]
    try:
        return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=threads,
                               n_threads_batch=threads, logits_all=logits_all, n_gpu_layers=0, seed=0, type_k=kv,
                               type_v=kv, verbose=False)
    except ValueError as err:
        raise LlamaLoadError(f"llama.cpp cannot load {path}: {err}") from None


def last_logits(llm) -> np.ndarray:
    llama_cpp = _llama_cpp()
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()


# ------------------------------------------------------------------------------------------------ exactness


@dataclass
class Run:
    """What one engine computed: the greedy continuation, the prompt's logits, the windows' summed NLL."""

    greedy: list[int]
    prompt_logits: np.ndarray
    nll: float
    tokens: int
    margins: list[float] = field(default_factory=list)  # top-1 minus top-2 logit at each greedy step

    @property
    def ppl(self) -> float:
        return math.exp(self.nll / self.tokens) if self.tokens else float("nan")


def torch_run(model, prompt: Sequence[int], windows: Sequence[Sequence[int]], n_new: int = 32,
              threads: int | None = 1) -> Run:
    """The PyTorch model's :class:`Run` (float32; greedy steps on the model's KV cache, as generate runs them);
    ``threads``: torch's CPU threads meanwhile (None: unchanged; one avoids oversubscribing a shared CPU)."""
    import torch

    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        ids = torch.tensor([list(prompt)])
        nll, count = 0.0, 0
        out: list[int] = []
        margins: list[float] = []
        with torch.inference_mode():
            step = model(ids, use_cache=True)
            prompt_logits = step.logits[0].float().numpy()
            for _ in range(n_new):
                logits = step.logits[0, -1].float()
                top = torch.topk(logits, 2).values
                nxt = int(logits.argmax())
                out.append(nxt)
                margins.append(float(top[0] - top[1]))
                step = model(torch.tensor([[nxt]]), use_cache=True, **_cache_arg(model, step))
            for window in windows:
                w = torch.tensor([list(window)])
                logits = model(w).logits[0, :-1].float()
                nll += float(torch.nn.functional.cross_entropy(logits, w[0, 1:], reduction="sum"))
                count += len(window) - 1
    finally:
        torch.set_num_threads(saved)
    return Run(out, prompt_logits, nll, count, margins)


def _cache_arg(model, output) -> dict[str, Any]:
    """The KV cache of ``output`` as the keyword the installed transformers takes (``cache`` from 5.24, before
    that ``past_key_values``)."""
    import inspect

    if "cache" in inspect.signature(model.forward).parameters:
        return {"cache": output.cache}
    return {"past_key_values": output.past_key_values}


def llamacpp_run(gguf: str | os.PathLike, prompt: Sequence[int], windows: Sequence[Sequence[int]], n_new: int = 32,
                 threads: int = 1, kv_cache: str = "f16") -> Run:
    """llama.cpp's :class:`Run` of a GGUF (greedy argmax over its logits, one token per step)."""
    n_ctx = max([len(prompt) + n_new, *(len(w) for w in windows)])
    llm = open_gguf(gguf, n_ctx=n_ctx, threads=threads, logits_all=True, kv_cache=kv_cache)
    try:
        llm.reset()
        llm.eval(list(prompt))
        prompt_logits = np.array(llm.scores[: len(prompt)], dtype=np.float32)
        out: list[int] = []
        for _ in range(n_new):
            nxt = int(np.argmax(last_logits(llm)))
            out.append(nxt)
            llm.eval([nxt])
        nll, count = 0.0, 0
        for window in windows:
            llm.reset()
            llm.eval(list(window))
            logits = np.asarray(llm.scores[: len(window) - 1], dtype=np.float64)
            top = logits.max(axis=1)
            lse = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
            nll += float((lse - logits[np.arange(len(window) - 1), list(window[1:])]).sum())
            count += len(window) - 1
    finally:
        llm.close()
    return Run(out, prompt_logits, nll, count)


def compare(reference: Run, got: Run) -> dict[str, Any]:
    """Greedy match, first differing step, perplexities and their relative difference, largest logit difference."""
    first = next((i for i, (a, b) in enumerate(zip(reference.greedy, got.greedy)) if a != b), None)
    diff = np.abs(reference.prompt_logits - got.prompt_logits)
    return {
        "greedy_match": first is None and len(reference.greedy) == len(got.greedy),
        "greedy_first_difference": first, "greedy_tokens": len(reference.greedy),
        # how close PyTorch's own choice was where the two part: a near-tie that rounding may flip, or not
        "greedy_margin_at_difference": None if first is None or not reference.margins else reference.margins[first],
        "greedy_min_margin": min(reference.margins) if reference.margins else None,
        "ppl_torch": reference.ppl, "ppl_llamacpp": got.ppl, "ppl_rel_diff": got.ppl / reference.ppl - 1,
        "ppl_tokens": reference.tokens, "max_abs_logit_diff": float(diff.max()),
        "logit_scale": float(np.abs(reference.prompt_logits).max()),
        "prompt_argmax_agreement": float((reference.prompt_logits.argmax(1) == got.prompt_logits.argmax(1)).mean()),
    }


# ------------------------------------------------------------------------------------------------ serving speed


@dataclass(frozen=True)
class ServingProtocol:
    """How the serving speedup is timed (see the module's docstring)."""

    prompt_len: int = 64
    gen_len: int = 16
    threads: tuple[int, ...] = (1, 2)
    warmup: int = 1
    min_rounds: int = 8
    max_rounds: int = 30
    max_spread: float = 0.03
    estimator: str = "hodges-lehmann"
    seed: int = 0
    control: bool = True  # time a second copy of the dense GGUF too (its speedup is 1 up to noise)
    timing: str = "step"  # "step": decode steps alternate model by model; "whole": each model's round in one go

    def validate(self) -> None:
        if self.timing not in ("step", "whole"):
            raise SprintError(f"serving protocol: timing must be step or whole, got {self.timing!r}")
        if self.estimator not in ESTIMATORS:
            raise SprintError(f"serving protocol: estimator must be one of {', '.join(ESTIMATORS)}, "
                              f"got {self.estimator!r}")
        if self.prompt_len < 1 or self.gen_len < 1 or self.warmup < 0 or not self.threads or min(self.threads) < 1:
            raise SprintError("serving protocol needs prompt_len, gen_len >= 1, warmup >= 0 and thread counts >= 1")
        if not 6 <= self.min_rounds <= self.max_rounds:
            raise SprintError(f"serving protocol needs 6 <= min_rounds <= max_rounds, got {self.min_rounds}, "
                              f"{self.max_rounds}")


@dataclass
class _Subject:
    label: str
    llm: Any
    times: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})


def _time_once(llm, prompt: list[int], gen_len: int, token: int) -> tuple[float, float]:
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt)
    t1 = time.perf_counter()
    for _ in range(gen_len):
        llm.eval([token])
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def _estimate(values: list[float], estimator: str) -> dict[str, Any]:
    est, lo, hi = ESTIMATORS[estimator](values)
    return {"value": est, "ci95": [lo, hi], "spread": max(est - lo, hi - est) / est}


@contextmanager
def _opened(ggufs: dict[str, Path], n_ctx: int, threads: int) -> Iterator[list[_Subject]]:
    subjects = []
    try:
        for label, path in ggufs.items():
            subjects.append(_Subject(label, open_gguf(path, n_ctx=n_ctx, threads=threads)))
        yield subjects
    finally:
        for s in subjects:
            s.llm.close()


def serving_speedups(ggufs: dict[str, str | os.PathLike], dense: str, protocol: ServingProtocol = ServingProtocol()
                     ) -> dict[str, dict[str, Any]]:
    """label -> {"t{threads}": {"pp_speedup"|"tg_speedup"|"e2e_speedup": {value, ci95, spread}, "pp_tok_s",
    "tg_tok_s", "rounds"}} for every GGUF of ``ggufs`` against ``ggufs[dense]`` (itself included: 1.0), plus
    ``"dense-copy"`` when ``protocol.control``."""
    protocol.validate()
    if dense not in ggufs:
        raise SprintError(f"serving speedup: the dense GGUF {dense!r} is not among {', '.join(ggufs)}")
    paths = {label: Path(p) for label, p in ggufs.items()}
    if protocol.control:
        paths["dense-copy"] = paths[dense]
    rng = random.Random(protocol.seed)
    out: dict[str, dict[str, Any]] = {label: {} for label in paths}
    for threads in protocol.threads:
        with _opened(paths, protocol.prompt_len + protocol.gen_len + 1, threads) as subjects:
            vocab = subjects[0].llm.n_vocab()
            prompt = [rng.randrange(vocab) for _ in range(protocol.prompt_len)]
            token = prompt[-1]
            for s in subjects:
                for _ in range(protocol.warmup):
                    _time_once(s.llm, prompt, protocol.gen_len, token)
            rounds = 0
            while True:
                shift = rounds % len(subjects)
                order = subjects[shift:] + subjects[:shift]
                if protocol.timing == "whole":
                    for s in order:
                        pp, tg = _time_once(s.llm, prompt, protocol.gen_len, token)
                        s.times["pp"].append(pp)
                        s.times["tg"].append(tg)
                else:  # "step": the prompts one after the other, then the decode steps alternate model by model
                    for s in order:
                        s.llm.reset()
                        t0 = time.perf_counter()
                        s.llm.eval(prompt)
                        s.times["pp"].append(time.perf_counter() - t0)
                        s.times["tg"].append(0.0)
                    for _ in range(protocol.gen_len):
                        for s in order:
                            t0 = time.perf_counter()
                            s.llm.eval([token])
                            s.times["tg"][-1] += time.perf_counter() - t0
                for s in order:
                    s.times["e2e"].append(s.times["pp"][-1] + s.times["tg"][-1])
                rounds += 1
                if rounds < protocol.min_rounds:
                    continue
                results = _summarise(subjects, dense, protocol, threads)
                widest = max(r[f"{p}_speedup"]["spread"] for r in results.values() for p in PHASES)
                if widest <= protocol.max_spread or rounds >= protocol.max_rounds:
                    break
            if widest > protocol.max_spread:
                log.warning("llama.cpp serving speedup at %d thread(s): a 95%% CI is still ±%.1f%% after %d rounds",
                            threads, 100 * widest, rounds)
            for label, result in results.items():
                out[label][f"t{threads}"] = result
    return out


def _summarise(subjects: list[_Subject], dense: str, protocol: ServingProtocol, threads: int) -> dict[str, Any]:
    ref = next(s for s in subjects if s.label == dense)
    results = {}
    for s in subjects:
        row: dict[str, Any] = {"rounds": len(s.times["pp"]), "threads": threads}
        for phase in PHASES:
            ratios = [d / t for d, t in zip(ref.times[phase], s.times[phase])]
            row[f"{phase}_speedup"] = _estimate(ratios, protocol.estimator)
        row["pp_tok_s"] = protocol.prompt_len / float(np.median(s.times["pp"]))
        row["tg_tok_s"] = protocol.gen_len / float(np.median(s.times["tg"]))
        results[s.label] = row
    return results


def speedup_table(results: dict[str, dict[str, Any]], sizes: dict[str, int] | None = None,
                  outtype: str | None = None) -> str:
    """A Markdown table of :func:`serving_speedups`' results (one row per model and thread count)."""
    head = "| model | " + ("GGUF | MB | " if outtype else "") + "threads | pp speedup [95% CI] | tg speedup [95% CI] " \
           "| e2e speedup [95% CI] | pp tok/s | tg tok/s | rounds |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, by_threads in results.items():
        for key, r in by_threads.items():
            cells = [label] + ([outtype, f"{sizes[label] / 1e6:.1f}" if sizes and label in sizes else ""]
                               if outtype else [])
            cells.append(key[1:])
            for phase in PHASES:
                e = r[f"{phase}_speedup"]
                cells.append(f"{e['value']:.3f} [{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]")
            cells += [f"{r['pp_tok_s']:.0f}", f"{r['tg_tok_s']:.1f}", str(r["rounds"])]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
