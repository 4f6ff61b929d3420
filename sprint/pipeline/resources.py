"""Cluster resources of the pipeline's jobs, from the plan (issue 28): memory, GPUs and run time of each prune,
profile and evaluate job per model, instead of numbers typed into the Slurm profile; and a check, before anything is
submitted, that every job fits some partition of the cluster.

The Slurm profile turns this on (``config: [executor=slurm]``); the rules then ask :func:`job_resources` per model
when Snakemake builds its DAG (on the submitting node; a job running on its node does not ask again), so a model
that cannot fit fails before its first job is submitted, with one line naming the job, the resource and the limit.

- prune: :func:`sprint.methods.plan.plan_resources` (host peak x margin; the first step's time x the steps to the
  largest target x margin, from FLOPs at ``cluster.throughput``).
- profile and evaluate: an inference job's host memory (runtime, the weights when they are loaded in host memory:
  always once, by from_pretrained, and the logits of one batch), and a run time from the tokens it runs at
  ``cluster.throughput`` (decode steps bounded by ``cluster.bandwidth``, bytes/s of reading the weights), with the
  margin, plus 10 minutes of start-up.  These are estimates for a scheduler, deliberately generous; the prune plan's
  terms are the measured model of docs/memory.md.

Partition limits come from ``cluster.partitions`` in the configuration ({name, mem_mb, runtime_min, gpus}) when
given, else from ``sinfo`` where it runs (the node memory, time limit and GPUs of each partition); with neither,
nothing is checked.  ``cluster.throughput`` / ``bandwidth`` / ``margin`` override the defaults below.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from sprint.errors import SprintError

log = logging.getLogger("sprint")

GiB = 2**30
DEFAULTS = {"throughput": 1e14, "bandwidth": 1e12, "margin": 1.5}  # an A100's bf16 FLOP/s and HBM bytes/s, roughly
CPU_DEFAULTS = {"throughput": 5e10, "bandwidth": 1e10}  # one CPU node's FLOP/s and memory bytes/s, roughly
START_MIN = 10  # minutes of start-up: Python, imports, loading the weights


@dataclass(frozen=True)
class Partition:
    name: str
    mem_mb: int | None  # per node; None = unlimited
    runtime_min: int | None  # None = unlimited
    gpus: int  # per node

    def misses(self, res: dict[str, int]) -> list[str]:
        out = []
        if self.mem_mb is not None and res.get("mem_mb", 0) > self.mem_mb:
            out.append(f"mem_mb {res['mem_mb']} > {self.mem_mb}")
        if self.runtime_min is not None and res.get("runtime", 0) > self.runtime_min:
            out.append(f"runtime {res['runtime']} min > {self.runtime_min}")
        if res.get("gpu", 0) > self.gpus:
            out.append(f"gpu {res['gpu']} > {self.gpus}")
        return out


def _minutes(text: str) -> int | None:
    """sinfo's time limit ([days-]hours:minutes:seconds, minutes, or infinite) in minutes."""
    text = text.strip()
    if text in ("infinite", "UNLIMITED", "n/a", ""):
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    h, m, s = ([0] * (3 - len(parts)) + parts) if len(parts) > 1 else (0, parts[0], 0)
    return (int(days or 0) * 24 + h) * 60 + m + (1 if s else 0)


def _gres_gpus(text: str) -> int:
    """GPUs per node in sinfo's GRES column (gpu:4, gpu:a100:8(S:0-1), (null))."""
    total = 0
    for item in text.split(","):
        match = re.match(r"gpu(?::[^:(]+)?:(\d+)", item.strip())
        if match:
            total += int(match.group(1))
    return total


def parse_sinfo(text: str) -> list[Partition]:
    """Partitions from ``sinfo -h -o '%R|%m|%l|%G'`` (one line per partition and node kind: the largest kept)."""
    best: dict[str, Partition] = {}
    for line in text.splitlines():
        if line.count("|") != 3:
            continue
        name, mem, limit, gres = (f.strip() for f in line.split("|"))
        mem_mb = int(re.sub(r"\D", "", mem)) if re.sub(r"\D", "", mem) else None
        part = Partition(name.rstrip("*"), mem_mb, _minutes(limit), _gres_gpus(gres))
        old = best.get(part.name)
        if old is None or (part.mem_mb or 0, part.gpus) > (old.mem_mb or 0, old.gpus):
            best[part.name] = part
    return list(best.values())


@functools.cache
def cluster_partitions(configured: tuple = ()) -> tuple[Partition, ...]:
    """The cluster's partitions: ``configured`` (cluster.partitions as tuples) when given, else sinfo's."""
    if configured:
        return tuple(Partition(*p) for p in configured)
    if shutil.which("sinfo"):
        proc = subprocess.run(["sinfo", "-h", "-o", "%R|%m|%l|%G"], capture_output=True, text=True, timeout=60)
        if proc.returncode == 0 and proc.stdout.strip():
            return tuple(parse_sinfo(proc.stdout))
        log.warning("sinfo failed (%s): partition limits not checked", proc.stderr.strip()[:200])
    return ()


def check_fits(job: str, res: dict[str, int], partitions: tuple[Partition, ...] | list[Partition]) -> None:
    """A one-line SprintError when no partition fits the job (no partitions known: nothing to check)."""
    if not partitions or any(not p.misses(res) for p in partitions):
        return
    why = "; ".join(f"{p.name}: {', '.join(p.misses(res))}" for p in partitions)
    raise SprintError(f"{job} needs mem_mb={res.get('mem_mb')}, runtime={res.get('runtime')} min, "
                      f"gpu={res.get('gpu', 0)}, which no partition of the cluster offers ({why})")


@functools.cache
def _shapes(source: str, local: str | None):
    """The model's shapes from its config.json (a local folder, a hub id: config.json only, or the embedded GGUF's
    metadata); None where it cannot be read (offline and not cached)."""
    from sprint.methods.plan import load_model_config, shapes_from_config

    try:
        if source == "embedded":
            from transformers import AutoConfig

            from sprint.model.embedded import embedded_gguf_path

            gguf = embedded_gguf_path()
            config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
        else:
            config = load_model_config(local or source)
        return shapes_from_config(config)
    except Exception as err:  # noqa: BLE001 - any failure to read a config: the profile's defaults stand
        log.warning("resources of %s: its config could not be read (%s); the profile's defaults stand", source,
                    str(err).splitlines()[0][:200])
        return None


def _settings(cluster: dict, device: str) -> dict[str, float]:
    base = {**DEFAULTS, **(CPU_DEFAULTS if device == "cpu" else {})}
    return {k: float(cluster.get(k, v)) for k, v in base.items()}


def job_resources(stage: str, model: dict[str, Any], config: dict[str, Any]) -> dict[str, int] | None:
    """{"mem_mb", "runtime" (minutes), "gpu"} of one ``stage`` job ("prune", "profile", "evaluate") on ``model``
    (an entry of :func:`sprint.pipeline.config.model_table`); None where the model's config cannot be read."""
    shapes = _shapes(model["source"], model.get("local"))
    if shapes is None:
        return None
    cluster = config.get("cluster") or {}
    device = model["device"]
    s = _settings(cluster, device)
    dtype = model["dtype"] if model["dtype"] != "auto" else ("float32" if device == "cpu" else "bfloat16")
    gpus = model["gpus"]
    if stage == "prune":
        from sprint.methods.plan import plan_resources

        prune = config["prune"]
        entry = {"n": model["calibration"]["n"], "seq_len": model["calibration"]["seq_len"],
                 "method": "sprint", "target_speedup": max(prune["target_speedups"]),
                 "device": "cpu" if device == "cpu" else "cuda", "gpus": gpus, "dtype": dtype,
                 "alpha": prune["alpha"], "beta": prune["beta"], "tune_ratio": model["tune_ratio"],
                 "reference": model["reference"], "distance": model["distance"],
                 "tie_break": model.get("tie_break", "none"), "batch_size": prune["batch_size"],
                 "model": model["source"]}
        res = plan_resources(entry, shapes=shapes, throughput=s["throughput"], margin=s["margin"])
        return {"mem_mb": res["mem_mb"], "runtime": res["runtime_min"], "gpu": gpus}
    from sprint.methods.plan import BYTES, RUNTIME_HOST

    weights = shapes.params * BYTES.get(dtype, 4)
    flops_per_token = 2.0 * shapes.params
    if stage == "profile":
        lat = model["latency"]
        prompt, gen = lat["prompt_len"], lat["gen_len"]
        one = prompt * flops_per_token / s["throughput"] + gen * max(flops_per_token / s["throughput"],
                                                                    weights / s["bandwidth"])
        runs = 3 * (lat["max_rounds"] + lat["warmup"]) * lat["attempts"]  # dense, MLPs removed, attentions removed
        seconds, batch_tokens = runs * one, prompt
    elif stage == "evaluate":
        ev = config["evaluate"]
        docs = (ev.get("limit") or 5000) * len(ev["tasks"])  # no limit: ~5000 documents a task, a generous bound
        tokens = docs * 4 * 256 + 400_000  # ~4 choices of ~256 tokens each, and the perplexity corpora
        seconds, batch_tokens = tokens * flops_per_token / s["throughput"], ev["batch_size"] * ev["ppl_seq_len"]
    else:
        raise SprintError(f"job_resources: no model of stage {stage!r} (prune, profile, evaluate)")
    logits = batch_tokens * shapes.vocab * 4 * 2
    host = RUNTIME_HOST + weights + (logits if device == "cpu" else 0)
    return {"mem_mb": math.ceil(host * s["margin"] / 2**20),
            "runtime": math.ceil(seconds * s["margin"] / 60) + START_MIN, "gpu": gpus}


def cluster_check(models: dict[str, dict], config: dict[str, Any], stages: tuple[str, ...]) -> dict[tuple, dict]:
    """Every (stage, model)'s resources, checked against the partitions before any job is submitted."""
    cluster = config.get("cluster") or {}
    partitions = cluster_partitions(tuple((p["name"], p.get("mem_mb"), p.get("runtime_min"), p.get("gpus", 0))
                                          for p in cluster.get("partitions", [])))
    out = {}
    for name, model in models.items():
        for stage in stages:
            res = job_resources(stage, model, config)
            if res is None:
                continue
            check_fits(f"the {stage} job of model {name!r}", res, partitions)
            out[stage, name] = res
    return out


def describe(resources: dict[tuple, dict]) -> str:
    return "; ".join(f"{stage}/{name}: {r['mem_mb']} MB, {r['runtime']} min, {r['gpu']} GPU"
                     for (stage, name), r in sorted(resources.items()))


