"""bench.md: the benchmark's record (bench.json) as Markdown, one table per item with a verdict against its target."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

TARGET_RATIO = {"sprint-e": 2.0, "blockpruner": 15.0}  # method time / sprint time must be at least this
FLOOR_MAX = 1.5
SPEEDUP_TOLERANCE = 0.10
MEMORY_LIMIT_MB = 8 * 1024


def num(x: Any, fmt: str = ".3g") -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def verdict(ok: bool | None, note: str = "") -> str:
    word = "N/A" if ok is None else ("PASS" if ok else "FAIL")
    return f"{word} {note}".strip()


def time_of(s: dict) -> tuple[float | None, bool]:
    """(time, is_lower_bound) of a run summary."""
    if s.get("status") == "ok":
        return s["wall_time_s"], False
    if s.get("status") == "timed_out":
        return s.get("wall_time_lower_bound_s"), True
    return None, False


def table(rows: list[dict]) -> list[str]:
    """A pipe table of ``rows`` (dicts of already formatted cells), then a blank line."""
    return [pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), ""]


def _method_row(m: str, s: dict) -> dict:
    ratio, lower = s.get("ratio_to_sprint"), s.get("ratio_is_lower_bound")
    rtxt = ("≥ " if lower and ratio is not None else "") + num(ratio, ".3g")
    if s.get("extrapolated_ratio_to_sprint"):
        rtxt += f" (extrap. ~{s['extrapolated_ratio_to_sprint']:.3g})"
    t, _ = time_of(s)
    goal = TARGET_RATIO.get(m)
    if goal is None:
        judged, gtxt = "—", "—"
    else:
        gtxt = f"≥ {goal:g}x"
        if ratio is None:
            judged = verdict(None)
        elif ratio >= goal:
            judged = verdict(True, "(lower bound)" if lower else "")
        else:
            judged = "INCONCLUSIVE (timed out)" if lower else verdict(False)
    if "n_removed" in s:
        removed = str(s["n_removed"])
    else:
        removed = f"{sum(s['counts'])} (partial)" if s.get("counts") else "—"
    return {"method": m, "status": f"{s.get('status')}{' (reused)' if s.get('reused') else ''}",
            "pruning s": ("≥ " if s.get("status") == "timed_out" and t is not None else "") + num(t, ".4g"),
            "load s": num(s.get("load_time_s"), ".3g"), "peak RSS MB": num(s.get("peak_rss_mb"), ".0f"),
            "removed": removed, "est. speedup": num(s.get("estimated_speedup"), ".3f"), "ratio to sprint": rtxt,
            "target": gtxt, "verdict": judged}


def _floor_row(calibration: str, forward_s, sprint_s, removed, ratio) -> dict:
    return {"calibration": calibration, "forward s": num(forward_s, ".4g"), "sprint s": num(sprint_s, ".4g"),
            "removed": str(removed), "floor ratio": num(ratio, ".3f"), "target": f"≤ {FLOOR_MAX:g}",
            "verdict": verdict(None if ratio is None else ratio <= FLOOR_MAX)}


def render_markdown(b: dict) -> str:
    mach, lat, cal = b.get("machine", {}), b.get("latency", {}), b.get("calibration", {})
    lines = [
        "# SPRINT benchmark", "",
        f"- date: {b.get('date')}; command: `{b.get('command')}`",
        f"- machine: {mach.get('cpu')}, {mach.get('cores')} cores, torch threads {mach.get('torch_threads')}; "
        f"torch {mach.get('torch')}, transformers {mach.get('transformers')}, python {mach.get('python')}",
        f"- 1-minute load average: start {b.get('load1_start')}, end {b.get('load1_end')} (other work inflates times)",
        f"- model: `{b.get('model')}` ({b.get('num_layers')} layers); target speedup {b.get('target_speedup')}x; "
        f"calibration {cal.get('n')}x{cal.get('seq_len')} ({cal.get('source')})",
        f"- latency table ({lat.get('source')}): dense {num(lat.get('dense_s'), '.4g')} s, t_attn "
        f"{num(lat.get('t_attn_s'), '.3g')} s, t_mlp {num(lat.get('t_mlp_s'), '.3g')} s "
        f"(prompt {lat.get('prompt_len')}, gen {lat.get('gen_len')})", "",
    ]
    methods = b.get("methods", {})
    if methods:
        lines += ["## 1. Pruning time and peak memory (one fresh process per method)", ""]
        lines += table([_method_row(m, s) for m, s in methods.items()])
        samples = methods.get("sprint", {}).get("wall_time_samples_s") or []
        if len(samples) > 1:
            lines += [f"sprint's time is the median of {len(samples)} fresh-process runs: "
                      f"{', '.join(num(t, '.4g') for t in samples)} s.", ""]
    if b.get("one_shot"):
        lines += ["## 1b. One-shot methods at a setting (one fresh process each; no target: their speedups are "
                  "measured by the pipeline's evaluate)", ""]
        lines += table([{"method:setting": k, "status": s.get("status"), "pruning s": num(time_of(s)[0], ".4g"),
                         "load s": num(s.get("load_time_s"), ".3g"), "peak RSS MB": num(s.get("peak_rss_mb"), ".0f"),
                         "ratio to sprint": num(s.get("ratio_to_sprint"), ".3g")} for k, s in b["one_shot"].items()])
    if "forward_pass_s" in b:
        s = methods.get("sprint", {})
        lines += ["## 2. The floor: one dense decoder forward over the calibration set", ""]
        lines += table([_floor_row(f"{cal.get('n')}x{cal.get('seq_len')}", b.get("forward_pass_s"),
                                   s.get("wall_time_s"), s.get("n_removed", "—"), b.get("floor_ratio"))])
    if b.get("floor_by_tokens"):
        lines += ["The same ratio at every calibration size of sprint's token-scaling runs (item 3):", ""]
        lines += table([_floor_row(r["calibration"], r["forward_pass_s"], r["sprint_s"], r["n_removed"],
                                   r["floor_ratio"]) for r in b["floor_by_tokens"]])
    if b.get("scaling"):
        lines += ["## 3. Scaling (time against calibration tokens and model depth)", ""]
        lines += table([{"method": m, "axis": axis, "sizes": ", ".join(str(v) for v in e[axis]["sizes"]),
                         "times s": ", ".join(num(v, ".3g") for v in e[axis]["times_s"]), "basis": e[axis]["basis"],
                         "exponent": num(e.get(f"exponent_{axis}"), ".2f"), "target": "— (reported)", "verdict": "—"}
                        for m, e in b["scaling"].items() for axis in ("tokens", "depth") if axis in e])
    if b.get("latency_check"):
        lines += ["## 4. Latency model: estimated vs measured speedup", ""]
        lines += table([{"method": m, "removed attn/mlp": f"{c['n_attn']}/{c['n_mlp']}",
                         "estimated": f"{c['estimated_speedup']:.3f}",
                         "measured [95% CI]": f"{c['measured_speedup']:.3f}"
                                              + (" [{:.3f}, {:.3f}]".format(*c["ci95"]) if c.get("ci95") else ""),
                         "error": f"{100 * c['error']:.1f} %", "target": f"≤ {100 * SPEEDUP_TOLERANCE:.0f} %",
                         "verdict": verdict(c["error"] <= SPEEDUP_TOLERANCE)}
                        for m, c in b["latency_check"].items()])
    lines += ["## 5. Memory of sprint at 128x512 calibration", ""]
    if "sprint_peak_rss_mb_128x512" in b:
        rss, mc = b["sprint_peak_rss_mb_128x512"], b.get("memory_check", {})
        if rss is not None and rss >= MEMORY_LIMIT_MB:
            judged = verdict(False)
        elif mc.get("status") == "ok":
            judged = verdict(True)
        else:
            judged = f"INCONCLUSIVE ({mc.get('status')} after {len(mc.get('step_times_s') or [])} steps)"
        rss, status = num(rss, ".0f"), str(mc.get("status"))
    else:
        rss, status, judged = "—", "not run (use --memory-check)", "N/A"
    lines += table([{"peak RSS MB": rss, "status": status, "target": f"< {MEMORY_LIMIT_MB}", "verdict": judged}])
    return "\n".join(lines).rstrip() + "\n"
