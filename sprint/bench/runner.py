"""The benchmark's jobs and the processes that run them.

A job is a JSON dict (``kind`` "prune" or "forward", its inputs, where its result and progress files go).  The
parent (:class:`Runner`) writes a list of jobs, starts ``python -m sprint.bench --one JOBS.json`` and watches it:
the child's wall time and peak RSS (``ru_maxrss`` from ``os.wait4``) belong to those jobs alone; a child past its
time cap is stopped (SIGTERM: it writes how far it got; SIGKILL 30 s later) and its jobs are marked ``timed_out``.
With ``resume`` a finished result of an identical job is reused.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sprint.io import atomic_write_json

log = logging.getLogger("sprint")

REPO = Path(__file__).resolve().parents[2]


def load1() -> float | None:
    """The 1-minute load average (other work on the machine inflates every time measured)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    import torch
    import transformers

    from sprint.measure.timing import device_name

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": device_name(torch.device("cpu")), "cores": cores, "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "cuda": torch.cuda.is_available()}


# -- child side: one process runs the jobs of one JSON file ----------------------------------------------------------
class StepLimit(Exception):
    """Raised after a job's ``max_steps`` greedy steps (scaling runs of the slow baselines)."""


def _run_prune(job: dict) -> dict:
    """Prune once; step times go to the progress file every few seconds (read back if the run is killed)."""
    import torch

    from sprint.data.calibration import load_calibration
    from sprint.measure.table import load_latency
    from sprint.model.loading import load_model
    from sprint.methods import method, setting_options
    from sprint.methods.driver import PruneConfig, peak_rss_mb, prune_model

    one_shot = job.get("setting")  # a one-shot method at a setting (no target, no latency table)
    tokens = load_calibration(job["calibration"])
    table = None if one_shot else load_latency(job["latency"])
    t0 = time.perf_counter()
    model, _ = load_model(job["model"], device=job["device"], dtype=job["dtype"])
    prog: dict[str, Any] = {"step_times_s": [], "counts": [0, 0], "load_time_s": time.perf_counter() - t0,
                            "load_peak_rss_mb": peak_rss_mb()}
    clock = {"start": 0.0, "flushed": time.perf_counter()}

    def flush(force: bool = False) -> None:
        if force or time.perf_counter() - clock["flushed"] > 5.0:
            prog["elapsed_s"] = time.perf_counter() - clock["start"]
            atomic_write_json(job["progress"], prog)
            clock["flushed"] = time.perf_counter()

    def on_step(pruner, step_s: float | None, elapsed_s: float) -> None:
        if step_s is None:  # the pruner is built
            prog["setup_s"] = elapsed_s
            flush(force=True)
            return
        prog["step_times_s"].append(step_s)
        prog["counts"] = list(pruner.counts())
        flush()
        if job.get("max_steps") and len(prog["step_times_s"]) >= job["max_steps"]:
            raise StepLimit

    def on_term(signum, frame) -> None:  # the parent's time cap: leave an exact elapsed time behind
        if clock["start"]:
            flush(force=True)
        os._exit(124)

    old_handler = signal.signal(signal.SIGTERM, on_term)
    try:
        cfg = (PruneConfig(method=job["method"], batch_size=job["batch_size"],
                           **setting_options(one_shot, method(job["method"]).kind)) if one_shot else
               PruneConfig(method=job["method"], target_speedup=job["target"], batch_size=job["batch_size"]))
        clock["start"] = time.perf_counter()
        pruner = prune_model(model, tokens, table, cfg, progress=False, on_step=on_step)
        wall = time.perf_counter() - clock["start"]
    except StepLimit:
        return {**prog, "status": "partial", "elapsed_s": time.perf_counter() - clock["start"],
                "peak_rss_mb_self": peak_rss_mb(), "torch_threads": torch.get_num_threads()}
    finally:
        signal.signal(signal.SIGTERM, old_handler)
    removed = [r.to_dict() for r in pruner.removed]
    return {**prog, "status": "ok", "wall_time_s": wall, "elapsed_s": wall, "peak_rss_mb_self": peak_rss_mb(),
            "removed": removed, "n_removed": len(removed), "counts": list(pruner.counts()),
            "estimated_speedup": table.speedup(*pruner.counts()) if table else None, "num_tunings": pruner.num_tunings,
            "num_layers": pruner.view.num_layers, "tokens": int(tokens.numel()),
            "torch_threads": torch.get_num_threads()}


def _run_forward(job: dict) -> dict:
    """Dense decoder forward over the calibration set: embed, then every sublayer (no final norm / LM head)."""
    import torch

    from sprint.data.calibration import load_calibration
    from sprint.model.loading import load_model
    from sprint.methods.driver import peak_rss_mb
    from sprint.model.sublayers import SublayerView

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

    def result(self, job: dict, cap: float | None = None) -> dict | None:
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
        todo = [j for j in jobs if self.result(j, cap) is None]
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
        return [self.result(j) or self.done[j["key"]] for j in jobs]

    def _spawn(self, jobs: list[dict], name: str, spec: Path, cap: float) -> None:
        path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env = {**os.environ, "PYTHONPATH": path, "SPRINT_MLFLOW": "0"}
        cmd = [sys.executable, "-m", "sprint.bench", "--one", str(spec)]
        limit = cap * len(jobs) if cap > 0 else None
        load_before, t0, timed_out = load1(), time.monotonic(), False
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
                 "load1_before": load_before, "load1_after": load1(), "jobs_in_child": len(jobs)}
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
