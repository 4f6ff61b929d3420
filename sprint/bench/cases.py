"""Benchmark of the pruning methods: wall time, peak memory, the forward-pass floor, scaling, latency-model accuracy.

Usage::

    python -m sprint.bench [--model data/models/smollm2-135m] [--output results/bench] [options]
    python -m sprint.bench --quick --model TINY_FOLDER --methods sprint,blockpruner --output /tmp/bench

Writes ``<output>/bench.json``, ``<output>/bench.md`` (one table per item, with a PASS/FAIL column against the
targets), ``<output>/latency.json`` (the latency table used), per-run results in ``<output>/runs/``, child logs in
``<output>/logs/`` and calibration files / tiny models in ``<output>/work/``.

Items (each method run happens in a fresh ``python -m sprint.bench --one JOBS.json`` child process, so its wall
time and peak RSS belong to it alone; the wall time is ``prune_model`` only, model load timed separately; the peak
RSS is the child's ``ru_maxrss`` from ``os.wait4`` (imports + model load + pruning; ``load_peak_rss_mb`` is the
part reached before pruning starts)):

1. ``methods``: every method (sprint, sprint-l, sprint-t, sprint-e, shortgpt, sleb, blockpruner) pruned to one
   target speedup on one calibration set; ``ratio_to_sprint`` = method time / sprint time of the same run.
   sprint, the denominator of every ratio, is run ``--sprint-repeats`` times (each in a fresh process, as the
   floor's forward is repeated): its time is the median, every sample is in ``wall_time_samples_s``.
   Targets: sprint-e / sprint >= 2.0, blockpruner / sprint >= 15.
2. ``forward_pass_s``: one dense forward over the calibration set through the decoder layers only
   (``SublayerView.embed``, then ``apply`` of every sublayer; median of ``--forward-repeats``);
   ``floor_ratio`` = sprint time / (removed sublayers x forward_pass_s).  Target: <= 1.5.
3. ``scaling``: sprint and blockpruner time against calibration tokens (``--token-sizes`` on the model) and
   against depth (tiny random Llama models of ``--depths`` layers, hidden 32, MLP 64, random calibration
   ``--depth-calibration``, a synthetic uniform latency table: dense 1 s, each sublayer 0.9 / (2L) s, so the same
   target removes the same share of sublayers at every depth); ``exponent_tokens`` / ``exponent_depth`` = the
   least-squares slope of log time against log size.  A run identical to an item-1 run is not repeated.
4. ``speedup_error``: |estimated - measured| / measured speedup of each pruned model of item 1; measured with
   ``measure_generate_latency`` at the latency table's prompt_len / gen_len, dense and pruned models interleaved
   in every round (order rotated per round), measured speedup = median over rounds of dense / pruned.
   Target: <= 10 %.
5. ``--memory-check``: sprint alone on a 128 x 512 calibration set; its child's peak RSS is
   ``sprint_peak_rss_mb_128x512`` (cap ``--memory-check-time``; a capped run reports the peak so far, which
   already holds the dense reference activations and checkpoints once its first step is done).  Target: < 8 GiB.

Items run in the order 1, 2, 4, 5, 3 (the checked targets first, the long scaling runs last); bench.json and
bench.md are rewritten after each, so an interrupted benchmark still leaves the finished items behind.

Time caps: a child running longer than ``--max-method-time`` seconds (``--greedy-baseline-time`` for sleb and
blockpruner, ``--memory-check-time`` for item 5; its whole life: imports, model load and pruning) is stopped
(SIGTERM: it records how far it got; SIGKILL 30 s later); its result is then marked ``timed_out`` with the steps it
completed, its elapsed time (a lower bound of the pruning time, so its ratio to sprint is a lower bound too) and an
extrapolated total (remaining steps >= the fewest removals that can still reach the target, each costing the last
step's time scaled by (live sublayers left / live sublayers now)^2, the cost model of a greedy sweep).
``--baseline-cap-ratio R`` sets the sleb / blockpruner cap from sprint's time in the same run, so that a capped run
has pruned for at least R x sprint's time: ``ratio_to_sprint`` >= R is then shown without running to the end.
When a scaling series holds a timed-out run (or a run stopped by ``--scaling-greedy-steps``: status ``partial``)
its exponent is fitted on the first greedy step's time instead (``basis: first_step``), the same computation at
every size.

The latency table is profiled once at the start (``profile_latency``, ``--prompt-len`` / ``--gen-len`` /
``--latency-repeats``) unless ``--latency FILE`` is given.  ``--quick`` uses tiny sizes for a smoke test (a tiny
random model is created when ``--model`` is not given; random calibration tokens; 1 torch thread; a synthetic
latency table when profiling the tiny model is too noisy; the floor and scaling runs in the parent process, which
saves child start-ups, so only item 1 keeps fresh processes).  ``--resume`` reuses finished runs of an earlier
invocation with the same settings (``runs/*.json``) and its latency table.  bench.json also records the machine,
versions, date, command line and the 1-minute load average around every child (other work on the machine inflates
wall times, and oversubscribed intra-op threads inflate small-op latencies even more).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sprint.methods import METHODS
from sprint.errors import SprintError
from sprint.io import atomic_write_json, atomic_write_text

log = logging.getLogger("sprint")

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = {"sprint-e": 2.0, "blockpruner": 15.0}  # method time / sprint time must be at least this
FLOOR_MAX = 1.5
SPEEDUP_TOLERANCE = 0.10
MEMORY_LIMIT_MB = 8 * 1024
MEMORY_SHAPE = (128, 512)
SYNTHETIC_SHARE = 0.9  # share of the dense latency spent in sublayers, in synthetic latency tables
DEFAULTS = dict(model="data/models/smollm2-135m", calibration_n=32, seq_len=256, token_sizes="8x256,16x256,32x256",
                depths="4,8,16", depth_calibration="16x64", calibration_source="wikitext2", prompt_len=64, gen_len=32,
                latency_rounds=8, max_spread=0.03, forward_repeats=3, sprint_repeats=3, max_method_time=1800.0, threads=0)
QUICK = dict(calibration_n=8, seq_len=32, token_sizes="4x32,8x32,16x32", depths="2,3,4", depth_calibration="8x32",
             calibration_source="random", prompt_len=8, gen_len=8, latency_rounds=6, max_spread=0.5,
             forward_repeats=2, sprint_repeats=1, max_method_time=300.0, threads=1)


# -- small helpers --------------------------------------------------------------------------------------------------
def parse_shape(text: str) -> tuple[int, int]:
    """'32x256' -> (32, 256)."""
    try:
        n, seq = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SprintError(f"calibration size {text!r}: expected NxSEQ_LEN, e.g. 32x256") from None
    if n < 1 or seq < 2:
        raise SprintError(f"calibration size {text!r}: need N >= 1 and SEQ_LEN >= 2")
    return n, seq


def fit_exponent(sizes: list[float], times: list[float]) -> float | None:
    """Least-squares slope of log(time) against log(size); None with < 2 distinct sizes or a non-positive value."""
    pts = [(math.log(s), math.log(t)) for s, t in zip(sizes, times) if s and t and s > 0 and t > 0]
    if len(pts) < 2 or len({x for x, _ in pts}) < 2 or len(pts) != len(sizes):
        return None
    mx, my = statistics.fmean(x for x, _ in pts), statistics.fmean(y for _, y in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def _load1() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _num(x: Any, fmt: str = ".3g") -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def _verdict(ok: bool | None, note: str = "") -> str:
    word = "N/A" if ok is None else ("PASS" if ok else "FAIL")
    return f"{word} {note}".strip()


def machine_info() -> dict[str, Any]:
    import torch
    import transformers

    from sprint.latency import device_name

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": device_name(torch.device("cpu")), "cores": cores, "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "cuda": torch.cuda.is_available()}


def synthetic_latency(num_layers: int, model: str, prompt_len: int, gen_len: int):
    """Uniform table: dense 1 s, every sublayer saves SYNTHETIC_SHARE / (2L) s."""
    from sprint.latency import LatencyTable

    t = SYNTHETIC_SHARE / (2 * num_layers)
    return LatencyTable(device="synthetic", model=model, prompt_len=prompt_len, gen_len=gen_len, dense_s=1.0,
                        t_attn_s=t, t_mlp_s=t, extra={"synthetic": True, "share": SYNTHETIC_SHARE})


def make_tiny_model(path: Path, layers: int, seed: int = 0) -> Path:
    """A conftest-like random Llama (hidden 32, MLP 64, 4 heads / 2 KV heads, vocab 96) with a word tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if (path / "config.json").is_file():
        return path
    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
                         tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
    words = ["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(92)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tmp = path.with_name(f".{path.name}.tmp")
    model.save_pretrained(tmp)
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(tmp)
    os.replace(tmp, path)
    return path


# -- child side: one process runs the jobs of one JSON file ----------------------------------------------------------
class _StepLimit(Exception):
    """Raised after a job's ``max_steps`` greedy steps (scaling runs of the slow baselines)."""


def _run_prune(job: dict) -> dict:
    """Prune once; step times go to the progress file every few seconds (read back if the run is killed)."""
    import torch

    import sprint.prune as P
    from sprint.calibration import load_calibration
    from sprint.latency import load_latency
    from sprint.models import load_model

    tokens, table = load_calibration(job["calibration"]), load_latency(job["latency"])
    t0 = time.perf_counter()
    model, _ = load_model(job["model"], device=job["device"], dtype=job["dtype"])
    load_s, load_rss = time.perf_counter() - t0, P.peak_rss_mb()
    prog: dict[str, Any] = {"step_times_s": [], "counts": [0, 0], "load_time_s": load_s, "load_peak_rss_mb": load_rss}
    clock = {"start": 0.0, "flushed": time.perf_counter()}
    build = P.build_pruner

    def flush(force: bool = False) -> None:
        if force or time.perf_counter() - clock["flushed"] > 5.0:
            prog["elapsed_s"] = time.perf_counter() - clock["start"]
            atomic_write_json(job["progress"], prog)
            clock["flushed"] = time.perf_counter()

    def timed_build(*args, **kwargs):
        pruner = build(*args, **kwargs)
        prog["setup_s"] = time.perf_counter() - clock["start"]
        step = pruner.step

        def timed_step():
            t = time.perf_counter()
            out = step()
            prog["step_times_s"].append(time.perf_counter() - t)
            prog["counts"] = list(pruner.counts())
            flush()
            if job.get("max_steps") and len(prog["step_times_s"]) >= job["max_steps"]:
                raise _StepLimit
            return out

        pruner.step = timed_step
        flush(force=True)
        return pruner

    def on_term(signum, frame) -> None:  # the parent's time cap: leave an exact elapsed time behind
        if clock["start"]:
            flush(force=True)
        os._exit(124)

    old_handler = signal.signal(signal.SIGTERM, on_term)
    P.build_pruner = timed_build
    try:
        cfg = P.PruneConfig(method=job["method"], target_speedup=job["target"], batch_size=job["batch_size"])
        clock["start"] = time.perf_counter()
        pruner = P.prune_model(model, tokens, table, cfg, progress=False)
        wall = time.perf_counter() - clock["start"]
    except _StepLimit:
        return {**prog, "status": "partial", "elapsed_s": time.perf_counter() - clock["start"],
                "peak_rss_mb_self": P.peak_rss_mb(), "torch_threads": torch.get_num_threads()}
    finally:
        P.build_pruner = build
        signal.signal(signal.SIGTERM, old_handler)
    removed = [r.to_dict() for r in pruner.removed]
    return {**prog, "status": "ok", "wall_time_s": wall, "elapsed_s": wall, "peak_rss_mb_self": P.peak_rss_mb(),
            "removed": removed, "n_removed": len(removed), "counts": list(pruner.counts()),
            "estimated_speedup": table.speedup(*pruner.counts()), "num_tunings": pruner.num_tunings,
            "num_layers": pruner.view.num_layers, "tokens": int(tokens.numel()),
            "torch_threads": torch.get_num_threads()}


def _run_forward(job: dict) -> dict:
    """Dense decoder forward over the calibration set: embed, then every sublayer (no final norm / LM head)."""
    import torch

    from sprint.calibration import load_calibration
    from sprint.models import load_model
    from sprint.prune import peak_rss_mb
    from sprint.sublayers import SublayerView

    tokens = load_calibration(job["calibration"])
    t0 = time.perf_counter()
    model, _ = load_model(job["model"], device=job["device"], dtype=job["dtype"])
    load_s = time.perf_counter() - t0
    view = SublayerView(model, batch_size=job["batch_size"])
    times = []
    with torch.inference_mode():
        for _ in range(job["repeats"]):
            t = time.perf_counter()
            X = view.embed(tokens)
            for s in range(view.num_sublayers):
                X = view.apply(s, X)
            times.append(time.perf_counter() - t)
            del X
    return {"status": "ok", "forward_pass_s": statistics.median(times), "times_s": times, "load_time_s": load_s,
            "peak_rss_mb_self": peak_rss_mb(), "tokens": int(tokens.numel()), "torch_threads": torch.get_num_threads()}


def run_jobs(spec: str) -> int:
    """Child entry (``--one``; quick mode's scaling batch, in process): run every job of the JSON list, writing
    each job's result file."""
    import torch

    jobs = json.loads(Path(spec).read_text(encoding="utf-8"))
    failed, threads = 0, torch.get_num_threads()
    for job in jobs:
        torch.set_num_threads(job.get("threads") or threads)
        log.info("job %s (%d torch threads)", job["key"], torch.get_num_threads())
        try:
            result = (_run_forward if job["kind"] == "forward" else _run_prune)(job)
        except Exception as err:  # noqa: BLE001 - recorded, the parent decides
            log.exception("job %s failed", job["key"])
            result, failed = {"status": "error", "error": f"{type(err).__name__}: {err}"}, failed + 1
        atomic_write_json(job["result"], {"job": job, **result})
    torch.set_num_threads(threads)
    return 1 if failed else 0


# -- parent side ---------------------------------------------------------------------------------------------------
class Runner:
    """Spawns child processes for jobs, enforces the time cap, collects results (reusing them with --resume)."""

    def __init__(self, out: Path, max_time: float, resume: bool):
        self.out, self.max_time, self.resume = out, max_time, resume
        for sub in ("runs", "logs", "work/jobs"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        self.done: dict[str, dict] = {}

    def job(self, kind: str, key: str, **spec) -> dict:
        return {"kind": kind, "key": key, "result": str(self.out / "runs" / f"{key}.json"),
                "progress": str(self.out / "work" / "jobs" / f"{key}.progress.json"), **spec}

    def _reusable(self, job: dict, cap: float | None = None) -> dict | None:
        """A result of this run, or with --resume an earlier finished one (timed out: only under a cap >= ours)."""
        if job["key"] in self.done:
            return self.done[job["key"]]
        path = Path(job["result"])
        if self.resume and path.is_file():
            old = json.loads(path.read_text(encoding="utf-8"))
            cap = self.max_time if cap is None else cap
            longer = old.get("cap_s") is not None and (old["cap_s"] <= 0 or 0 < cap <= old["cap_s"])
            finished = old.get("status") in ("ok", "partial") or old.get("status") == "timed_out" and longer
            if old.get("job") == job and finished:
                self.done[job["key"]] = {**old, "reused": True}
                return self.done[job["key"]]
        return None

    def run(self, jobs: list[dict], name: str, in_process: bool = False, cap: float | None = None) -> list[dict]:
        """Run ``jobs`` in one child (only those without a result yet); return their results in order.

        ``in_process`` (quick mode's scaling batch): run them here instead, no time cap and no child numbers.
        """
        todo = [j for j in jobs if self._reusable(j, cap) is None]
        if todo:
            for j in todo:
                for f in (j["result"], j["progress"]):
                    Path(f).unlink(missing_ok=True)
            spec = self.out / "work" / "jobs" / f"{name}.jobs.json"
            atomic_write_json(spec, todo)
            if in_process:
                run_jobs(str(spec))
                for j in todo:
                    result = json.loads(Path(j["result"]).read_text(encoding="utf-8"))
                    self.done[j["key"]] = {**result, "in_process": True}
            else:
                self._spawn(todo, name, spec, self.max_time if cap is None else cap)
        return [self._reusable(j) or self.done[j["key"]] for j in jobs]

    def _spawn(self, jobs: list[dict], name: str, spec: Path, cap: float) -> None:
        path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env = {**os.environ, "PYTHONPATH": path, "SPRINT_MLFLOW": "0"}
        cmd = [sys.executable, "-m", "sprint.bench", "--one", str(spec)]
        limit = cap * len(jobs) if cap > 0 else None
        load_before, t0, timed_out = _load1(), time.monotonic(), False
        with open(self.out / "logs" / f"{name}.log", "w", encoding="utf-8") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if limit is not None and time.monotonic() - t0 > limit:
                    proc.terminate()  # the child writes its progress and exits; killed if it does not within 30 s
                    for _ in range(600):
                        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                        if pid:
                            break
                        time.sleep(0.05)
                    else:
                        proc.kill()
                        pid, status, usage = os.wait4(proc.pid, 0)
                    timed_out = True
                    break
                time.sleep(0.05)
            proc.returncode = os.waitstatus_to_exitcode(status)
        child = {"cap_s": cap, "child_peak_rss_mb": usage.ru_maxrss / 1024, "child_wall_s": time.monotonic() - t0,
                 "child_cpu_s": usage.ru_utime + usage.ru_stime, "returncode": proc.returncode,
                 "load1_before": load_before, "load1_after": _load1(), "jobs_in_child": len(jobs)}
        for job in jobs:
            path = Path(job["result"])
            if path.is_file():
                result = json.loads(path.read_text(encoding="utf-8"))
            else:
                prog = Path(job["progress"])
                partial = json.loads(prog.read_text(encoding="utf-8")) if prog.is_file() else {}
                status = "timed_out" if timed_out else "error"
                why = f" after the {cap:g} s cap" if timed_out else ""
                result = {"job": job, **partial, "status": status, "error": f"child exited with {proc.returncode}{why}"}
            result.update(child)
            atomic_write_json(path, result)
            self.done[job["key"]] = result
            if result["status"] not in ("ok", "partial"):
                log.warning("%s: %s (%s)", job["key"], result["status"], result.get("error", ""))


def extrapolate(result: dict, table, method: str, num_layers: int, target: float) -> float | None:
    """Rough total time of a killed greedy run (see the module docstring); None without a completed step.

    A step of a greedy sweep over m live sublayers costs ~ m^2 / 2 sublayer passes (each candidate runs to the top)
    plus m perplexity heads; both are folded into the (m / m_now)^2 scaling of the last step's time.
    """
    from sprint.prune import admissible_sublayers
    from sprint.sublayers import sublayer_name

    steps = result.get("step_times_s") or []
    if not steps:
        return None
    n_attn, n_mlp = result.get("counts", [0, 0])
    kinds = [sublayer_name(s)[1] for s in admissible_sublayers(method, num_layers)]
    left = {"attn": kinds.count("attn") - n_attn, "mlp": kinds.count("mlp") - n_mlp}
    need = table.estimate(n_attn, n_mlp) - table.dense_s / target
    per_step = 2 if method in ("sleb", "shortgpt") else 1
    savings = sorted([table.t_attn_s] * left["attn"] + [table.t_mlp_s] * left["mlp"], reverse=True)
    more = 0
    while need > 1e-12 and savings:
        need -= sum(savings[:per_step])
        savings, more = savings[per_step:], more + 1
    live = 2 * num_layers - n_attn - n_mlp
    extra = sum(steps[-1] * ((live - per_step * i) / live) ** 2 for i in range(1, more + 1))
    return max(result.get("elapsed_s", 0.0), result.get("setup_s", 0.0) + sum(steps) + extra)


def _write_calibration(path: Path, tokens, meta: dict) -> str:
    from sprint.calibration import save_calibration

    if not path.is_file():
        save_calibration(tokens, path, meta)
    return str(path)


class Calibrations:
    """Calibration files of one model: seeded windows of WikiText-2 (tokenized once) or random token ids."""

    def __init__(self, model: str, source: str, work: Path, tag: str, seed: int = 0, mirror: str | None = None):
        self.model, self.source, self.work, self.tag, self.seed, self.mirror = model, source, work, tag, seed, mirror
        self._ids = None

    def get(self, n: int, seq_len: int) -> str:
        import torch

        from sprint.calibration import sample_windows
        from sprint.data import resolve_mirror, wikitext2_text
        from sprint.models import load_config, load_tokenizer

        path = self.work / f"calib-{self.tag}-{self.source}-{n}x{seq_len}-s{self.seed}.pt"
        if path.is_file():
            return str(path)
        if self.source == "random":
            vocab = load_config(self.model).vocab_size
            gen = torch.Generator().manual_seed(self.seed)
            tokens = torch.randint(3, vocab, (n, seq_len), generator=gen)
            return _write_calibration(path, tokens, {"source": "random", "seed": self.seed})
        if self._ids is None:
            root = resolve_mirror(self.mirror)
            if root is None:
                text, self._label = wikitext2_text("train", None), "wikitext2-train (hub)"
            else:
                text, self._label = wikitext2_text("validation", root), "wikitext2-valid (offline mirror)"
            tok = load_tokenizer(self.model)
            self._ids = torch.tensor(tok(text, add_special_tokens=False, verbose=False)["input_ids"], dtype=torch.long)
        tokens = sample_windows(self._ids, n, seq_len, self.seed)
        return _write_calibration(path, tokens, {"source": self._label, "source_tokens": self._ids.numel(),
                                                 "tokenizer": self.model, "seed": self.seed})


def _check_reachable(method: str, num_layers: int, table, target: float) -> str | None:
    from sprint.prune import check_reachable

    try:
        check_reachable(method, num_layers, table, [target])
    except SprintError as err:
        return str(err)
    return None


def get_latency_table(args, model_path: str, out: Path, methods: list[str]) -> tuple[Any, dict]:
    """Profiled once (or --latency FILE, or reused with --resume); quick mode falls back to a synthetic table."""
    from sprint.latency import load_latency, profile_latency, save_latency
    from sprint.models import load_config, load_model

    dest = out / "latency.json"
    num_layers = load_config(model_path).num_hidden_layers
    if args.latency:
        table, info = load_latency(args.latency), {"source": f"file {args.latency}"}
    elif args.resume and dest.is_file():
        table, info = load_latency(dest), {"source": f"reused {dest}"}
    else:
        model, _ = load_model(model_path, device=args.device, dtype=args.dtype)
        table = error = None
        try:
            t0 = time.perf_counter()
            table = profile_latency(model, model_path, latency_protocol(args))
            info = {"source": "profiled", "profile_s": time.perf_counter() - t0}
        except SprintError as err:  # the protocol already retried (attempts)
            if not args.quick:
                raise SprintError(f"latency profiling failed ({err}); pass --latency FILE") from None
            error = str(err)
        del model
        if table is None:
            table = synthetic_latency(num_layers, model_path, args.prompt_len, args.gen_len)
            info = {"source": "synthetic (quick mode: profiling too noisy)", "profile_error": error}
    bad = {m: e for m in methods if (e := _check_reachable(m, num_layers, table, args.target))}
    if bad and args.quick and table.device != "synthetic":
        log.warning("quick mode: target unreachable with the profiled table, using a synthetic one")
        info = {"source": "synthetic (quick mode: target unreachable with the profiled table)",
                "profiled": table.to_dict()}
        table = synthetic_latency(num_layers, model_path, args.prompt_len, args.gen_len)
        bad = {m: e for m in methods if (e := _check_reachable(m, num_layers, table, args.target))}
    if bad:
        raise SprintError("; ".join(bad.values()))
    save_latency(table, dest)
    return table, {**info, "path": str(dest), **table.to_dict()}


def latency_protocol(args, prompt_len: int | None = None, gen_len: int | None = None):
    """The pipeline's latency protocol (sprint.latency.Protocol) at the bench's settings."""
    from sprint.latency import Protocol

    return Protocol(prompt_len=prompt_len or args.prompt_len, gen_len=gen_len or args.gen_len, warmup=1,
                    min_rounds=args.latency_rounds, max_rounds=max(args.latency_rounds, 3 * args.latency_rounds),
                    max_spread=args.max_spread)


def latency_check(args, model_path: str, table, results: dict[str, dict]) -> dict[str, dict]:
    """Estimated vs measured speedup of every pruned model by the pipeline's protocol (``measure_speedup``: dense
    and pruned interleaved per round, median ratio with its 95% CI), the sublayers skipped on one loaded model."""
    from sprint.latency import measure_speedup, with_removed
    from sprint.models import load_model

    model, _ = load_model(model_path, device=args.device, dtype=args.dtype)
    protocol = latency_protocol(args, table.prompt_len, table.gen_len)
    out = {}
    for name, res in results.items():
        if res.get("status") != "ok":
            continue
        removed = [(r["layer"], r["kind"]) for r in res["removed"]]
        n_attn = sum(kind == "attn" for _, kind in removed)
        est = table.speedup(n_attn, len(removed) - n_attn)
        m = measure_speedup(with_removed(model, []), with_removed(model, removed), protocol, desc=f"speedup {name}")
        out[name] = {"estimated_speedup": est, "measured_speedup": m["estimate"], "ci95": m["ci95"],
                     "spread": m["spread"], "rounds": m["rounds"], "error": abs(est - m["estimate"]) / m["estimate"],
                     "dense_times_s": m["dense_s"], "pruned_times_s": m["pruned_s"], "n_attn": n_attn,
                     "n_mlp": len(removed) - n_attn, "prompt_len": protocol.prompt_len, "gen_len": protocol.gen_len}
    with_removed(model, [])()
    return out


def _summary(res: dict) -> dict:
    """The per-run numbers reported in bench.json."""
    keys = ("status", "wall_time_s", "load_time_s", "load_peak_rss_mb", "n_removed", "counts", "estimated_speedup",
            "num_tunings", "setup_s", "step_times_s", "elapsed_s", "returncode", "load1_before", "load1_after",
            "child_wall_s", "child_cpu_s", "torch_threads", "reused", "error", "wall_time_samples_s")
    out = {k: res[k] for k in keys if k in res}
    out["peak_rss_mb"] = res.get("child_peak_rss_mb")
    out["calibration"] = f"{res['job'].get('n')}x{res['job'].get('seq_len')}"
    if res.get("status") == "timed_out":
        from sprint.latency import load_latency

        job = res["job"]
        out["wall_time_lower_bound_s"] = res.get("elapsed_s")  # None: killed before pruning started
        out["extrapolated_wall_time_s"] = extrapolate(res, load_latency(job["latency"]), job["method"],
                                                      job["num_layers"], job["target"])
    return out


def _time_of(s: dict) -> tuple[float | None, bool]:
    """(time, is_lower_bound) of a run summary."""
    if s.get("status") == "ok":
        return s["wall_time_s"], False
    if s.get("status") == "timed_out":
        return s.get("wall_time_lower_bound_s"), True
    return None, False


def run_bench(args) -> dict:
    """The whole benchmark (parent side); returns the bench.json dict (also written, after every item)."""
    from sprint.latency import save_latency
    from sprint.models import load_config

    out = Path(args.output)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    model_path = args.model or str(make_tiny_model(work / "tiny-quick", layers=4))
    model_tag = Path(model_path).name
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            raise SprintError(f"unknown method {m!r}: expected some of {', '.join(METHODS)}")
    methods = ["sprint"] + [m for m in methods if m != "sprint"]  # ratios need sprint
    num_layers = load_config(model_path).num_hidden_layers
    runner = Runner(out, args.max_method_time, args.resume)
    bench: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, "-m", "sprint.bench", *args.argv]),
        "machine": machine_info(), "load1_start": _load1(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("argv", "one")},
        "model": model_path, "num_layers": num_layers, "target_speedup": args.target,
    }

    def save() -> None:
        bench["load1_end"] = _load1()
        atomic_write_json(out / "bench.json", bench)
        atomic_write_text(out / "bench.md", render_markdown(bench))

    cal = Calibrations(model_path, args.calibration_source, work, model_tag, mirror=args.mirror)
    n, seq = args.calibration_n, args.seq_len
    main_calib = cal.get(n, seq)  # before profiling: a missing data source fails in seconds, not minutes
    log.info("latency table (%s)", "file" if args.latency else "profiling")
    table, bench["latency"] = get_latency_table(args, model_path, out, methods)
    bench["calibration"] = {"n": n, "seq_len": seq, "tokens": n * seq, "source": args.calibration_source}
    common = dict(device=args.device, dtype=args.dtype, batch_size=args.batch_size, threads=args.threads)
    latency_file = str(out / "latency.json")

    def prune_job(method: str, model: str, calib: str, cn: int, cs: int, lat: str, layers: int, tag: str,
                  **over) -> dict:
        return runner.job("prune", f"{method}-{tag}-{cn}x{cs}-x{args.target:g}", method=method, model=model,
                          calibration=calib, latency=lat, target=args.target, n=cn, seq_len=cs, num_layers=layers,
                          **{**common, **over})

    def forward_job(cn: int, cs: int, calib: str) -> dict:
        return runner.job("forward", f"forward-{model_tag}-{cn}x{cs}", model=model_path, calibration=calib,
                          repeats=args.forward_repeats, n=cn, seq_len=cs, **common)

    def cap_of(method: str) -> float | None:
        if method not in ("sleb", "blockpruner"):
            return None
        sprint_run = runs.get("sprint", {})
        if args.baseline_cap_ratio and sprint_run.get("status") == "ok":
            # enough for the pruning alone to exceed ratio x sprint: add sprint's start-up and load, plus slack
            startup = sprint_run.get("child_wall_s", 0) - sprint_run["wall_time_s"]
            cap = args.baseline_cap_ratio * sprint_run["wall_time_s"] + max(startup, 0) + 30
            return min(cap, args.greedy_baseline_time) if args.greedy_baseline_time else cap
        return args.greedy_baseline_time

    # 1. every method, one fresh child each (sprint, the denominator of every ratio, --sprint-repeats times)
    runs: dict[str, dict] = {}  # sprint first: the baseline caps may depend on its time
    for m in tqdm(methods, desc="methods", unit="method"):
        job = prune_job(m, model_path, main_calib, n, seq, latency_file, num_layers, model_tag)
        runs[m] = runner.run([job], job["key"], cap=cap_of(m))[0]
        if m == "sprint" and runs[m]["status"] == "ok":
            spec = {k: v for k, v in job.items() if k not in ("kind", "key", "result", "progress")}
            again = [runner.job("prune", f"{job['key']}-repeat{i}", **spec) for i in range(2, args.sprint_repeats + 1)]
            runs[m] = runner.done[job["key"]] = median_run([runs[m]] + [runner.run([j], j["key"])[0] for j in again])
        log.info("%s: %s %s", m, runs[m]["status"], _num(runs[m].get("wall_time_s")))
    summaries = {m: _summary(r) for m, r in runs.items()}
    base, _ = _time_of(summaries["sprint"])
    for m, s in summaries.items():
        t, lower = _time_of(s)
        s["ratio_to_sprint"] = t / base if t is not None and base and summaries["sprint"]["status"] == "ok" else None
        s["ratio_is_lower_bound"] = lower
        if s.get("extrapolated_wall_time_s") and base:
            s["extrapolated_ratio_to_sprint"] = s["extrapolated_wall_time_s"] / base
    bench["methods"] = summaries
    save()

    # 2. the floor: one dense decoder forward over the calibration set (quick mode: with the scaling batch)
    fwd_job = forward_job(n, seq, main_calib)

    def floor() -> None:
        fwd = runner.run([fwd_job], fwd_job["key"])[0]
        bench["forward_pass_s"] = fwd.get("forward_pass_s")
        bench["forward"] = {k: fwd.get(k) for k in ("status", "forward_pass_s", "times_s", "load_time_s", "tokens",
                                                      "child_peak_rss_mb", "load1_before", "load1_after")}
        bench["floor_ratio"] = floor_ratio(summaries["sprint"], bench["forward_pass_s"])
        save()

    if not args.quick:
        floor()

    # 4. accuracy of the latency model (before the long scaling runs, close in time to the profile)
    if not args.skip_latency_check:
        check = latency_check(args, model_path, table, runs)
        bench["latency_check"] = check
        bench["speedup_error"] = {m: c["error"] for m, c in check.items()}
        save()

    # 5. memory check: sprint alone at 128 x 512
    if args.memory_check:
        mn, ms = MEMORY_SHAPE
        job = prune_job("sprint", model_path, cal.get(mn, ms), mn, ms, latency_file, num_layers, model_tag)
        res = runner.run([job], "memory-" + job["key"], cap=args.memory_check_time)[0]
        bench["sprint_peak_rss_mb_128x512"] = res.get("child_peak_rss_mb")
        bench["memory_check"] = _summary(res)
        save()

    # 3. scaling (quick mode: the whole batch and the floor in this process, to stay fast)
    scale_jobs: dict[str, list[tuple[str, int, dict]]] = {}
    if not args.skip_scaling:
        sizes = [parse_shape(s) for s in args.token_sizes.split(",") if s.strip()]
        depths = [int(d) for d in args.depths.split(",") if d.strip()]
        dn, dseq = parse_shape(args.depth_calibration)
        for m in args.scaling_methods.split(","):
            for d in depths:  # cheap tiny models first
                path = make_tiny_model(work / f"tiny-llama-L{d}", layers=d)
                lat = work / f"latency-tiny-L{d}.json"
                save_latency(synthetic_latency(d, str(path), args.prompt_len, args.gen_len), lat)
                dcal = Calibrations(str(path), "random", work, f"tiny-L{d}").get(dn, dseq)
                job = prune_job(m, str(path), dcal, dn, dseq, str(lat), d, f"tiny-L{d}", threads=1)
                scale_jobs.setdefault(m, []).append(("depth", d, job))
            for cn, cs in sizes:
                steps = args.scaling_greedy_steps if m in ("sleb", "blockpruner") and (cn, cs) != (n, seq) else 0
                job = prune_job(m, model_path, cal.get(cn, cs), cn, cs, latency_file, num_layers, model_tag,
                                **({"max_steps": steps} if steps else {}))
                scale_jobs.setdefault(m, []).append(("tokens", cn * cs, job))
        every = [j for series in scale_jobs.values() for _, _, j in series]
        if args.quick:
            runner.run([fwd_job] + every, "quick-batch", in_process=True)
        else:
            for job in tqdm(sorted(every, key=lambda j: j["kind"] != "prune" or "tiny-L" not in j["key"]),
                            desc="scaling", unit="run"):
                runner.run([job], job["key"], cap=cap_of(job["method"]))
                bench["scaling"] = scaling_summary(scale_jobs, runner, partial=True)
                save()
        bench["scaling"] = scaling_summary(scale_jobs, runner)
        if "sprint" in scale_jobs:
            bench["floor_by_tokens"] = floor_by_tokens(scale_jobs["sprint"], runner, forward_job, args.quick)
    if args.quick:
        floor()
    save()
    return bench


def median_run(samples: list[dict]) -> dict:
    """Repeated runs of one job as one: the median-time run (of an even count, the slower middle one), with every
    sample's time; a run that did not finish stands for them all."""
    if any(s.get("status") != "ok" for s in samples):
        return next(s for s in samples if s.get("status") != "ok")
    ranked = sorted(samples, key=lambda s: s["wall_time_s"])
    return {**ranked[len(ranked) // 2], "wall_time_samples_s": [s["wall_time_s"] for s in samples]}


def floor_ratio(run: dict, forward_s: float | None) -> float | None:
    """Item 2: pruning time / (removed sublayers x one dense forward over the same calibration set)."""
    ok = run.get("status") == "ok" and run.get("n_removed") and forward_s
    return run["wall_time_s"] / (run["n_removed"] * forward_s) if ok else None


def floor_by_tokens(series: list, runner: Runner, forward_job, in_process: bool) -> list[dict]:
    """Item 2 again at every calibration size of sprint's token-scaling series: the floor ratio of each run."""
    rows = []
    for axis, _, job in series:
        res = runner.done.get(job["key"]) or runner._reusable(job)
        if axis != "tokens" or not res:
            continue
        fwd_job = forward_job(job["n"], job["seq_len"], job["calibration"])
        fwd = runner.done.get(fwd_job["key"]) or runner.run([fwd_job], fwd_job["key"], in_process=in_process)[0]
        f = fwd.get("forward_pass_s")
        rows.append({"calibration": f"{job['n']}x{job['seq_len']}", "forward_pass_s": f,
                     "sprint_s": res.get("wall_time_s"), "n_removed": res.get("n_removed"),
                     "floor_ratio": floor_ratio(res, f)})
    return rows


def scaling_summary(scale_jobs: dict, runner: Runner, partial: bool = False) -> dict:
    """Per method and axis: sizes, times, fitted exponent (partial: only the runs finished so far)."""
    out: dict[str, dict] = {}
    for m, series in scale_jobs.items():
        entry: dict[str, Any] = {}
        for axis in ("depth", "tokens"):
            pts = [(size, runner.done.get(j["key"]) or runner._reusable(j)) for a, size, j in series if a == axis]
            pts = [(size, r) for size, r in pts if r is not None]
            if not pts or (not partial and len(pts) < len([1 for a, _, _ in series if a == axis])):
                continue
            complete = all(r.get("status") == "ok" for _, r in pts)
            if complete:
                basis, times = "wall_time", [r["wall_time_s"] for _, r in pts]
            else:
                basis = "first_step"
                times = [r.get("setup_s", 0.0) + r["step_times_s"][0] if r.get("step_times_s") else None
                         for _, r in pts]
            sizes = [size for size, _ in pts]
            entry[f"exponent_{axis}"] = fit_exponent(sizes, times) if None not in times else None
            entry[axis] = {"sizes": sizes, "times_s": times, "basis": basis,
                           "runs": [{"size": size, **_summary(r)} for size, r in pts]}
        out[m] = entry
    return out


def _removed_text(s: dict) -> str:
    if "n_removed" in s:
        return str(s["n_removed"])
    return f"{sum(s['counts'])} (partial)" if s.get("counts") else "—"


# -- Markdown ------------------------------------------------------------------------------------------------------
def render_markdown(b: dict) -> str:
    mach = b.get("machine", {})
    lat = b.get("latency", {})
    lines = [
        "# SPRINT benchmark", "",
        f"- date: {b.get('date')}; command: `{b.get('command')}`",
        f"- machine: {mach.get('cpu')}, {mach.get('cores')} cores, torch threads {mach.get('torch_threads')}; "
        f"torch {mach.get('torch')}, transformers {mach.get('transformers')}, python {mach.get('python')}",
        f"- 1-minute load average: start {b.get('load1_start')}, end {b.get('load1_end')} (other work inflates times)",
        f"- model: `{b.get('model')}` ({b.get('num_layers')} layers); target speedup {b.get('target_speedup')}x; "
        f"calibration {b.get('calibration', {}).get('n')}x{b.get('calibration', {}).get('seq_len')} "
        f"({b.get('calibration', {}).get('source')})",
        f"- latency table ({lat.get('source')}): dense {_num(lat.get('dense_s'), '.4g')} s, t_attn "
        f"{_num(lat.get('t_attn_s'), '.3g')} s, t_mlp {_num(lat.get('t_mlp_s'), '.3g')} s "
        f"(prompt {lat.get('prompt_len')}, gen {lat.get('gen_len')})", "",
    ]
    methods = b.get("methods", {})
    if methods:
        lines += ["## 1. Pruning time and peak memory (one fresh process per method)", "",
                  "| method | status | pruning s | load s | peak RSS MB | removed | est. speedup | ratio to sprint "
                  "| target | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
        for m, s in methods.items():
            ratio, lower = s.get("ratio_to_sprint"), s.get("ratio_is_lower_bound")
            rtxt = ("≥ " if lower and ratio is not None else "") + _num(ratio, ".3g")
            if s.get("extrapolated_ratio_to_sprint"):
                rtxt += f" (extrap. ~{s['extrapolated_ratio_to_sprint']:.3g})"
            t, _ = _time_of(s)
            ttxt = ("≥ " if s.get("status") == "timed_out" and t is not None else "") + _num(t, ".4g")
            goal = TARGET_RATIO.get(m)
            if goal is None:
                verdict, gtxt = "—", "—"
            else:
                gtxt = f"≥ {goal:g}x"
                if ratio is None:
                    verdict = _verdict(None)
                elif ratio >= goal:
                    verdict = _verdict(True, "(lower bound)" if lower else "")
                else:
                    verdict = "INCONCLUSIVE (timed out)" if lower else _verdict(False)
            status = f"{s.get('status')}{' (reused)' if s.get('reused') else ''}"
            lines.append(f"| {m} | {status} | {ttxt} | {_num(s.get('load_time_s'), '.3g')} | "
                         f"{_num(s.get('peak_rss_mb'), '.0f')} | {_removed_text(s)} | "
                         f"{_num(s.get('estimated_speedup'), '.3f')} | {rtxt} | {gtxt} | {verdict} |")
        samples = methods.get("sprint", {}).get("wall_time_samples_s") or []
        if len(samples) > 1:
            lines += ["", f"sprint's time is the median of {len(samples)} fresh-process runs: "
                          f"{', '.join(_num(t, '.4g') for t in samples)} s."]
        lines.append("")
    def floor_row(calibration: str, forward_s, sprint_s, removed, ratio) -> str:
        return (f"| {calibration} | {_num(forward_s, '.4g')} | {_num(sprint_s, '.4g')} | {removed} "
                f"| {_num(ratio, '.3f')} | ≤ {FLOOR_MAX:g} | {_verdict(None if ratio is None else ratio <= FLOOR_MAX)} |")

    if "forward_pass_s" in b:
        s, cal = methods.get("sprint", {}), b.get("calibration", {})
        lines += ["## 2. The floor: one dense decoder forward over the calibration set", "",
                  "| calibration | forward s | sprint s | removed | floor ratio | target | verdict |",
                  "|---|---|---|---|---|---|---|",
                  floor_row(f"{cal.get('n')}x{cal.get('seq_len')}", b.get("forward_pass_s"), s.get("wall_time_s"),
                            s.get("n_removed", "—"), b.get("floor_ratio")), ""]
    if b.get("floor_by_tokens"):
        lines += ["The same ratio at every calibration size of sprint's token-scaling runs (item 3):", "",
                  "| calibration | forward s | sprint s | removed | floor ratio | target | verdict |",
                  "|---|---|---|---|---|---|---|"]
        lines += [floor_row(r["calibration"], r["forward_pass_s"], r["sprint_s"], r["n_removed"], r["floor_ratio"])
                  for r in b["floor_by_tokens"]] + [""]
    if b.get("scaling"):
        lines += ["## 3. Scaling (time against calibration tokens and model depth)", "",
                  "| method | axis | sizes | times s | basis | exponent | target | verdict |",
                  "|---|---|---|---|---|---|---|---|"]
        for m, e in b["scaling"].items():
            for axis in ("tokens", "depth"):
                if axis in e:
                    sizes = ", ".join(str(v) for v in e[axis]["sizes"])
                    times = ", ".join(_num(v, ".3g") for v in e[axis]["times_s"])
                    lines.append(f"| {m} | {axis} | {sizes} | {times} | {e[axis]['basis']} | "
                                 f"{_num(e.get(f'exponent_{axis}'), '.2f')} | — (reported) | — |")
        lines.append("")
    if b.get("latency_check"):
        lines += ["## 4. Latency model: estimated vs measured speedup", "",
                  "| method | removed attn/mlp | estimated | measured [95% CI] | error | target | verdict |",
                  "|---|---|---|---|---|---|---|"]
        for m, c in b["latency_check"].items():
            ci = "[{:.3f}, {:.3f}]".format(*c["ci95"]) if c.get("ci95") else ""
            lines.append(f"| {m} | {c['n_attn']}/{c['n_mlp']} | {c['estimated_speedup']:.3f} "
                         f"| {c['measured_speedup']:.3f} {ci} | {100 * c['error']:.1f} % "
                         f"| ≤ {100 * SPEEDUP_TOLERANCE:.0f} % | {_verdict(c['error'] <= SPEEDUP_TOLERANCE)} |")
        lines.append("")
    lines += ["## 5. Memory of sprint at 128x512 calibration", "", "| peak RSS MB | status | target | verdict |",
              "|---|---|---|---|"]
    if "sprint_peak_rss_mb_128x512" in b:
        rss, mc = b["sprint_peak_rss_mb_128x512"], b.get("memory_check", {})
        if rss is not None and rss >= MEMORY_LIMIT_MB:
            verdict = _verdict(False)
        elif mc.get("status") == "ok":
            verdict = _verdict(True)
        else:
            verdict = f"INCONCLUSIVE ({mc.get('status')} after {len(mc.get('step_times_s') or [])} steps)"
        lines.append(f"| {_num(rss, '.0f')} | {mc.get('status')} | < {MEMORY_LIMIT_MB} | {verdict} |")
    else:
        lines.append(f"| — | not run (use --memory-check) | < {MEMORY_LIMIT_MB} | N/A |")
    return "\n".join(lines) + "\n"


# -- CLI -------------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sprint.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = DEFAULTS
    p.add_argument("--model", default=None,
                   help=f"HF model folder (default {d['model']}; --quick: a tiny random model)")
    p.add_argument("--output", default="results/bench", help="output folder (default results/bench)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods (default: all 7)")
    p.add_argument("--target", type=float, default=1.3, help="target speedup of every run (default 1.3)")
    p.add_argument("--calibration-n", type=int, default=None,
                   help=f"calibration windows (default {d['calibration_n']})")
    p.add_argument("--seq-len", type=int, default=None, help=f"tokens per window (default {d['seq_len']})")
    p.add_argument("--calibration-source", choices=("wikitext2", "random"), default=None,
                   help="WikiText-2 windows (mirror validation split offline) or random ids (default wikitext2)")
    p.add_argument("--mirror", default=None, help="offline data mirror (default $SPRINT_DATA_MIRROR)")
    p.add_argument("--batch-size", type=int, default=8, help="calibration windows per forward batch (default 8)")
    p.add_argument("--token-sizes", default=None, help=f"NxSEQ sizes of the token scaling (default {d['token_sizes']})")
    p.add_argument("--depths", default=None, help=f"tiny-model depths of the depth scaling (default {d['depths']})")
    p.add_argument("--depth-calibration", default=None,
                   help=f"NxSEQ random calibration of the tiny models (default {d['depth_calibration']})")
    p.add_argument("--scaling-methods", default="sprint,blockpruner", help="methods of the scaling runs")
    p.add_argument("--scaling-greedy-steps", type=int, default=0,
                   help="time only the first N greedy steps of sleb / blockpruner token-scaling runs whose size "
                        "differs from item 1's (0 = full runs; default 0); their series is then fitted on the first step")
    p.add_argument("--skip-scaling", action="store_true", help="skip item 3")
    p.add_argument("--skip-latency-check", action="store_true", help="skip item 4")
    p.add_argument("--memory-check", action="store_true", help="item 5: sprint alone at 128x512, peak RSS")
    p.add_argument("--greedy-baseline-time", type=float, default=None,
                   help="time cap of sleb and blockpruner runs (item 1 and scaling; default: --max-method-time)")
    p.add_argument("--baseline-cap-ratio", type=float, default=None,
                   help="stop sleb / blockpruner once their pruning has run this many times sprint's time of the "
                        "same run: enough to show a ratio as a lower bound without waiting for the end")
    p.add_argument("--memory-check-time", type=float, default=None,
                   help="time cap of the memory check's child (default: --max-method-time)")
    p.add_argument("--latency", default=None, help="use this latency.json instead of profiling")
    p.add_argument("--prompt-len", type=int, default=None, help=f"latency profiling prompt (default {d['prompt_len']})")
    p.add_argument("--gen-len", type=int, default=None, help=f"latency profiling new tokens (default {d['gen_len']})")
    p.add_argument("--latency-rounds", type=int, default=None,
                   help=f"interleaved rounds of the profile and of each latency check, at least; the pipeline's "
                        f"protocol (default {d['latency_rounds']})")
    p.add_argument("--max-spread", type=float, default=None,
                   help=f"noise bound of the protocol, 95%% CI half-width / dense time (default {d['max_spread']})")
    p.add_argument("--sprint-repeats", type=int, default=None,
                   help=f"fresh-process runs of sprint in item 1, median reported (default {d['sprint_repeats']})")
    p.add_argument("--forward-repeats", type=int, default=None,
                   help=f"floor forward repeats (default {d['forward_repeats']})")
    p.add_argument("--max-method-time", type=float, default=None,
                   help=f"seconds before a child run is killed, 0 = none (default {d['max_method_time']:g})")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads of the runs on --model and of the latency measurements, 0 = torch's default "
                        "(default 0; --quick: 1); tiny depth-scaling models always run on 1 thread")
    p.add_argument("--device", default="cpu", help="device of every run (default cpu)")
    p.add_argument("--dtype", default="auto", help="dtype of every run (default auto: fp32 on CPU)")
    p.add_argument("--resume", action="store_true", help="reuse finished runs and the latency table in --output")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test; tiny model unless --model)")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: child mode
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            datefmt="%H:%M:%S")
    if args.one:
        return run_jobs(args.one)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if key != "model" and getattr(args, key) is None:
            setattr(args, key, value)
    if args.model is None and not args.quick:
        args.model = DEFAULTS["model"]
    args.argv = argv
    import torch

    threads = torch.get_num_threads()
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        bench = run_bench(args)
    except SprintError as err:
        print(f"sprint.bench: error: {err}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)
    log.info("benchmark written to %s", Path(args.output) / "bench.json")
    print(render_markdown(bench))
    return 0


if __name__ == "__main__":
    sys.exit(main())
