"""The benchmark's items (see :mod:`sprint.bench`): every method to one target, the forward-pass floor, the
latency model's accuracy, the memory check and the scaling series, and ``run_bench`` that runs them in order."""

from __future__ import annotations

import logging
import math
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sprint.bench.render import render_markdown, time_of
from sprint.bench.runner import Runner, load1, machine_info
from sprint.errors import SprintError
from sprint.io import atomic_write_json, atomic_write_text
from sprint.methods import ONE_SHOT, REGISTRY, SUBLAYER_METHODS, setting_options
from sprint.model.tiny import save_tiny_model

log = logging.getLogger("sprint")

MEMORY_SHAPE = (128, 512)
SYNTHETIC_SHARE = 0.9  # share of the dense latency spent in sublayers, in synthetic latency tables
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


def synthetic_latency(num_layers: int, model: str, prompt_len: int, gen_len: int):
    """Uniform table: dense 1 s, every sublayer saves SYNTHETIC_SHARE / (2L) s."""
    from sprint.measure.table import LatencyTable

    t = SYNTHETIC_SHARE / (2 * num_layers)
    return LatencyTable(device="synthetic", model=model, prompt_len=prompt_len, gen_len=gen_len, dense_s=1.0,
                        t_attn_s=t, t_mlp_s=t, extra={"synthetic": True, "share": SYNTHETIC_SHARE})


def extrapolate(result: dict, table, method: str, num_layers: int, target: float) -> float | None:
    """Rough total time of a killed greedy run (see the module docstring); None without a completed step.

    A step of a greedy sweep over m live sublayers costs ~ m^2 / 2 sublayer passes (each candidate runs to the top)
    plus m perplexity heads; both are folded into the (m / m_now)^2 scaling of the last step's time.
    """
    from sprint.methods.driver import admissible_sublayers
    from sprint.model.sublayers import sublayer_name

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


class Calibrations:
    """Calibration files of one model: seeded windows of its calibration source (tokenized once, by
    :func:`sprint.data.calibration.source_ids`) or, for ``source="random"``, random token ids."""

    def __init__(self, model: str, source: str, work: Path, tag: str, seed: int = 0, mirror: str | None = None):
        self.model, self.source, self.work, self.tag, self.seed, self.mirror = model, source, work, tag, seed, mirror
        self._source = None  # (tokenizer, ids, label), read on first use

    def get(self, n: int, seq_len: int) -> str:
        import torch

        from sprint.data.calibration import calibration_meta, sample_windows, save_calibration, source_ids
        from sprint.model.loading import load_config, load_tokenizer

        path = self.work / f"calib-{self.tag}-{self.source}-{n}x{seq_len}-s{self.seed}.pt"
        if path.is_file():
            return str(path)
        if self.source == "random":
            gen = torch.Generator().manual_seed(self.seed)
            tokens = torch.randint(3, load_config(self.model).vocab_size, (n, seq_len), generator=gen)
            meta = {"source": "random", "seed": self.seed}
        else:
            if self._source is None:
                tokenizer = load_tokenizer(self.model)
                self._source = (tokenizer, *source_ids(tokenizer, self.source, self.mirror))
            tokenizer, ids, label = self._source
            tokens = sample_windows(ids, n, seq_len, self.seed)
            meta = calibration_meta(tokenizer, label, ids, self.seed)
        save_calibration(tokens, path, meta)
        return str(path)


def parse_one_shot(text: str) -> list[tuple[str, str]]:
    """'wanda:2of4,slicegpt:s25' -> [(method, setting), ...], each setting checked against its method's kind."""
    out = []
    for item in (t.strip() for t in (text or "").split(",") if t.strip()):
        m, _, setting = item.partition(":")
        if m not in REGISTRY or REGISTRY[m].kind not in ONE_SHOT:
            one_shot = ", ".join(n for n, e in REGISTRY.items() if e.kind in ONE_SHOT)
            raise SprintError(f"--one-shot {item!r}: {m!r} is not a one-shot method (one of {one_shot})")
        try:
            setting_options(setting, REGISTRY[m].kind)
        except ValueError as err:
            raise SprintError(f"--one-shot {item!r}: {err}") from None
        out.append((m, setting))
    return out


def _check_reachable(method: str, num_layers: int, table, target: float) -> str | None:
    from sprint.methods.driver import check_reachable

    try:
        check_reachable(method, num_layers, table, [target])
    except SprintError as err:
        return str(err)
    return None


def get_latency_table(args, model_path: str, out: Path, methods: list[str]) -> tuple[Any, dict]:
    """Profiled once (or --latency FILE, or reused with --resume); quick mode falls back to a synthetic table."""
    from sprint.measure.table import load_latency, save_latency
    from sprint.measure.profile import profile_latency
    from sprint.model.loading import load_config, load_model

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
    """The pipeline's latency protocol (sprint.measure.protocol.Protocol) at the bench's settings."""
    from sprint.measure.protocol import Protocol

    return Protocol(prompt_len=prompt_len or args.prompt_len, gen_len=gen_len or args.gen_len, warmup=1,
                    min_rounds=args.latency_rounds, max_rounds=max(args.latency_rounds, 3 * args.latency_rounds),
                    max_spread=args.max_spread)


def latency_check(args, model_path: str, table, results: dict[str, dict]) -> dict[str, dict]:
    """Estimated vs measured speedup of every pruned model by the pipeline's protocol (``measure_speedup``: dense
    and pruned interleaved per round, the protocol's estimate of the ratio with its 95% CI), the sublayers skipped on
    one loaded model."""
    from sprint.measure.speedup import measure_speedup, with_removed
    from sprint.model.loading import load_model

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


def summary(res: dict) -> dict:
    """The per-run numbers reported in bench.json."""
    keys = ("status", "wall_time_s", "load_time_s", "load_peak_rss_mb", "n_removed", "counts", "estimated_speedup",
            "num_tunings", "setup_s", "step_times_s", "elapsed_s", "returncode", "load1_before", "load1_after",
            "child_wall_s", "child_cpu_s", "torch_threads", "reused", "error", "wall_time_samples_s")
    out = {k: res[k] for k in keys if k in res}
    out["peak_rss_mb"] = res.get("child_peak_rss_mb")
    out["calibration"] = f"{res['job'].get('n')}x{res['job'].get('seq_len')}"
    if res.get("status") == "timed_out":
        from sprint.measure.table import load_latency

        job = res["job"]
        out["wall_time_lower_bound_s"] = res.get("elapsed_s")  # None: killed before pruning started
        out["extrapolated_wall_time_s"] = extrapolate(res, load_latency(job["latency"]), job["method"],
                                                      job["num_layers"], job["target"])
    return out


def run_bench(args) -> dict:
    """The whole benchmark (parent side); returns the bench.json dict (also written, after every item)."""
    from sprint.measure.table import save_latency
    from sprint.model.loading import load_config

    out = Path(args.output)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    model_path = args.model or str(save_tiny_model(work / "tiny-quick", "llama", layers=4))
    model_tag = Path(model_path).name
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in SUBLAYER_METHODS:  # one-shot methods have no target: --one-shot times them at a setting
            raise SprintError(f"method {m!r}: --methods takes the sublayer methods, some of "
                              f"{', '.join(SUBLAYER_METHODS)} (one-shot methods go to --one-shot METHOD:SETTING)")
    methods = ["sprint"] + [m for m in methods if m != "sprint"]  # ratios need sprint
    one_shot = parse_one_shot(args.one_shot)
    num_layers = load_config(model_path).num_hidden_layers
    runner = Runner(out, args.max_method_time, args.resume)
    bench: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, "-m", "sprint.bench", *args.argv]),
        "machine": machine_info(), "load1_start": load1(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("argv", "one")},
        "model": model_path, "num_layers": num_layers, "target_speedup": args.target,
    }

    def save() -> None:
        bench["load1_end"] = load1()
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
        log.info("%s: %s %s s", m, runs[m]["status"], runs[m].get("wall_time_s"))
    summaries = {m: summary(r) for m, r in runs.items()}
    base, _ = time_of(summaries["sprint"])
    for m, s in summaries.items():
        t, lower = time_of(s)
        s["ratio_to_sprint"] = t / base if t is not None and base and summaries["sprint"]["status"] == "ok" else None
        s["ratio_is_lower_bound"] = lower
        if s.get("extrapolated_wall_time_s") and base:
            s["extrapolated_ratio_to_sprint"] = s["extrapolated_wall_time_s"] / base
    bench["methods"] = summaries
    save()

    # 1b. the one-shot methods at their settings, one fresh child each (no target, no latency table)
    if one_shot:
        timed = {}
        for m, setting in tqdm(one_shot, desc="one-shot methods", unit="method"):
            job = runner.job("prune", f"{m}-{model_tag}-{n}x{seq}-{setting}", method=m, setting=setting,
                             model=model_path, calibration=main_calib, n=n, seq_len=seq, num_layers=num_layers,
                             **common)
            s = summary(runner.run([job], job["key"])[0])
            t, _ = time_of(s)
            s["ratio_to_sprint"] = t / base if t is not None and base and summaries["sprint"]["status"] == "ok" else None
            timed[f"{m}:{setting}"] = s
        bench["one_shot"] = timed
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
        bench["memory_check"] = summary(res)
        save()

    # 3. scaling (quick mode: the whole batch and the floor in this process, to stay fast)
    scale_jobs: dict[str, list[tuple[str, int, dict]]] = {}
    if not args.skip_scaling:
        sizes = [parse_shape(s) for s in args.token_sizes.split(",") if s.strip()]
        depths = [int(d) for d in args.depths.split(",") if d.strip()]
        dn, dseq = parse_shape(args.depth_calibration)
        for m in args.scaling_methods.split(","):
            for d in depths:  # cheap tiny models first
                path = save_tiny_model(work / f"tiny-llama-L{d}", "llama", layers=d)
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
                bench["scaling"] = scalingsummary(scale_jobs, runner, partial=True)
                save()
        bench["scaling"] = scalingsummary(scale_jobs, runner)
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
        res = runner.done.get(job["key"]) or runner.result(job)
        if axis != "tokens" or not res:
            continue
        fwd_job = forward_job(job["n"], job["seq_len"], job["calibration"])
        fwd = runner.done.get(fwd_job["key"]) or runner.run([fwd_job], fwd_job["key"], in_process=in_process)[0]
        f = fwd.get("forward_pass_s")
        rows.append({"calibration": f"{job['n']}x{job['seq_len']}", "forward_pass_s": f,
                     "sprint_s": res.get("wall_time_s"), "n_removed": res.get("n_removed"),
                     "floor_ratio": floor_ratio(res, f)})
    return rows


def scalingsummary(scale_jobs: dict, runner: Runner, partial: bool = False) -> dict:
    """Per method and axis: sizes, times, fitted exponent (partial: only the runs finished so far)."""
    out: dict[str, dict] = {}
    for m, series in scale_jobs.items():
        entry: dict[str, Any] = {}
        for axis in ("depth", "tokens"):
            pts = [(size, runner.done.get(j["key"]) or runner.result(j)) for a, size, j in series if a == axis]
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
                           "runs": [{"size": size, **summary(r)} for size, r in pts]}
        out[m] = entry
    return out
