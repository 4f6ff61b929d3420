"""The export stage of the pipeline: a model's dense and pruned checkpoints as GGUFs at each output type, each
checked against PyTorch, and their llama.cpp serving speedups, in one JSON document (``results/{model}/llamacpp.json``).

The document (every field documented in docs/export.md)::

    {"format": "gguf", "engine": "llama-cpp-python 0.3.36", "cpu": ..., "protocol": {...}, "check": {...},
     "models": {"dense" | "<checkpoint folder>": {
         "checkpoint", "method", "point", "prune_seed", "label",
         "gguf": {"f16": {"path", "bytes", "blocks", "zero_mlp_blocks", "zero_attn_blocks",
                          "check": {"greedy_match", "ppl_rel_diff", ...}}, "q8_0": {...}},
         "llamacpp": {"f16": {"t1": {"pp_speedup": {"value", "ci95", "spread"}, "tg_speedup": {...},
                                     "e2e_speedup": {...}, "pp_tok_s", "tg_tok_s", "rounds"}, "t2": ...}, ...},
         "llamacpp_speedup", "llamacpp_speedup_ci"}}}

``llamacpp_speedup`` is the headline (the "llama.cpp speedup" column): the end-to-end speedup (prompt, then its
generation) of the first output type at the first thread count (f16 and 1 thread by default, as the pipeline's
PyTorch speedup is timed on one thread).
"""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path
from typing import Any

from sprint.errors import SprintError
from sprint.export.gguf import OUTTYPES, export_gguf
from sprint.export.llamacpp import KV_CACHE, ServingProtocol, compare, llamacpp_run, serving_speedups, speedup_table, torch_run
from sprint.io import atomic_write_json
from sprint.model.checkpoint import pruning_summary

log = logging.getLogger("sprint")


def check_text(tokenizer, mirror: Path | None, prompt_len: int = 64, window: int = 256, windows: int = 4
               ) -> tuple[list[int], list[list[int]]]:
    """(prompt, perplexity windows) from the WikiText-2 test split: the prompt is its first ``prompt_len`` tokens,
    the windows the ``windows`` x ``window`` tokens after them."""
    from sprint.data.sources import wikitext2_text

    text = wikitext2_text("test", mirror)[: 8 * (prompt_len + window * windows) + 10_000]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    need = prompt_len + window * windows
    if len(ids) < need:
        raise SprintError(f"WikiText-2 test has {len(ids)} tokens here, fewer than the {need} the check needs")
    return ids[:prompt_len], [ids[prompt_len + i * window: prompt_len + (i + 1) * window] for i in range(windows)]


def check_ggufs(checkpoint: str | os.PathLike, ggufs: dict[str, str | os.PathLike], mirror: Path | None,
                n_new: int = 32, threads: int = 1, **text) -> dict[str, dict[str, Any]]:
    """outtype -> :func:`sprint.export.llamacpp.compare` of each GGUF against the checkpoint in PyTorch (float32)."""
    from sprint.model.loading import load_model

    model, tokenizer = load_model(str(checkpoint), device="cpu", dtype="float32")
    prompt, windows = check_text(tokenizer, mirror, **text)
    reference = torch_run(model, prompt, windows, n_new)
    del model
    out = {}
    for outtype, path in ggufs.items():
        out[outtype] = compare(reference, llamacpp_run(path, prompt, windows, n_new, threads, KV_CACHE[outtype]))
        out[outtype]["kv_cache"] = KV_CACHE[outtype]
        r = out[outtype]
        log.info("check %s: greedy %s, perplexity %.4f vs %.4f (%+.3f%%), max |logit diff| %.2e", path,
                 "match" if r["greedy_match"] else f"differs from step {r['greedy_first_difference']}",
                 r["ppl_llamacpp"], r["ppl_torch"], 100 * r["ppl_rel_diff"], r["max_abs_logit_diff"])
    return out


def _label(summary: dict[str, Any]) -> str:
    if summary["method"] == "dense":
        return "dense"
    seed = summary.get("prune_seed")
    return f"{summary['method']}/{summary['point']}" + (f"/seed{seed}" if seed is not None else "")


def gguf_path(folder: Path, summary: dict[str, Any], outtype: str) -> Path:
    if summary["method"] == "dense":
        return folder / f"dense.{outtype}.gguf"
    seed = summary.get("prune_seed")
    return folder / summary["method"] / (f"seed{seed}" if seed is not None else "") / f"{summary['point']}.{outtype}.gguf"


def export_stage(dense: str, checkpoints: list[str], gguf_dir: str | os.PathLike, output: str | os.PathLike,
                 outtypes: list[str] | tuple[str, ...] = ("f16", "q8_0"), protocol: ServingProtocol = ServingProtocol(),
                 mirror: Path | None = None, check: bool = True) -> dict[str, Any]:
    """Export ``dense`` and every checkpoint at every output type into ``gguf_dir``, check each against PyTorch
    (``check``), time the serving speedups, write the document to ``output`` (atomically) and return it."""
    import llama_cpp

    bad = [t for t in outtypes if t not in OUTTYPES]
    if bad or not outtypes:
        raise SprintError(f"--outtypes {' '.join(bad) or '(none)'}: expected some of {', '.join(OUTTYPES)}")
    protocol.validate()
    folder = Path(gguf_dir)
    models: dict[str, dict[str, Any]] = {}
    for source in [dense, *checkpoints]:
        summary = pruning_summary(source)
        key = "dense" if source == dense else str(source)
        entry = {"checkpoint": str(source), "method": summary["method"], "point": summary["point"],
                 "prune_seed": summary["prune_seed"], "label": _label(summary), "gguf": {}}
        for outtype in outtypes:
            info = export_gguf(source, gguf_path(folder, summary, outtype), outtype)
            entry["gguf"][outtype] = {k: info[k] for k in ("bytes", "blocks", "zero_mlp_blocks", "zero_attn_blocks")}
            entry["gguf"][outtype]["path"] = info["gguf"]
        if check:
            checks = check_ggufs(source, {t: entry["gguf"][t]["path"] for t in outtypes}, mirror)
            for outtype, result in checks.items():
                entry["gguf"][outtype]["check"] = result
        models[key] = entry
    labels = {entry["label"]: key for key, entry in models.items()}
    if len(labels) != len(models):
        raise SprintError("two checkpoints have the same method, point and seed: their speedups would collide")
    for outtype in outtypes:
        timed = serving_speedups({e["label"]: e["gguf"][outtype]["path"] for e in models.values()}, "dense", protocol)
        for label, result in timed.items():
            if label in labels:
                models[labels[label]].setdefault("llamacpp", {})[outtype] = result
            else:  # the dense model's second copy: the protocol's control
                models["dense"].setdefault("llamacpp_control", {})[outtype] = result
        sizes = {e["label"]: e["gguf"][outtype]["bytes"] for e in models.values()}
        log.info("llama.cpp serving speedup, %s:\n%s", outtype, speedup_table(timed, sizes, outtype))
    head_type, head_threads = outtypes[0], f"t{protocol.threads[0]}"
    for entry in models.values():
        e2e = entry["llamacpp"][head_type][head_threads]["e2e_speedup"]
        entry["llamacpp_speedup"], entry["llamacpp_speedup_ci"] = e2e["value"], e2e["ci95"]
    document = {
        "format": "gguf", "engine": f"llama-cpp-python {llama_cpp.__version__}", "cpu": _cpu_name(),
        "protocol": {**protocol.__dict__, "threads": list(protocol.threads)},
        "headline": {"outtype": head_type, "threads": protocol.threads[0], "phase": "e2e"},
        "check": {"corpus": "wikitext2 test", "prompt_len": 64, "greedy_tokens": 32, "window": 256, "windows": 4}
        if check else None,
        "models": models,
    }
    atomic_write_json(output, document)
    return document


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mlflow_metrics(document: dict[str, Any]) -> dict[str, float]:
    """Flat MLflow metrics of an export document: per model label, the headline speedup and its CI, every
    speedup by output type / threads / phase with its CI, GGUF sizes (MB) and the checks' perplexity differences
    and greedy matches (1 / 0)."""
    out: dict[str, float] = {}
    for entry in document["models"].values():
        tag = entry["label"]
        out[f"{tag}/llamacpp_speedup"] = entry["llamacpp_speedup"]
        out[f"{tag}/llamacpp_speedup_lo"], out[f"{tag}/llamacpp_speedup_hi"] = entry["llamacpp_speedup_ci"]
        for outtype, by_threads in entry.get("llamacpp", {}).items():
            for threads, row in by_threads.items():
                for phase in ("pp", "tg", "e2e"):
                    e = row[f"{phase}_speedup"]
                    base = f"{tag}/llamacpp/{outtype}/{threads}/{phase}_speedup"
                    out[base], out[base + "_lo"], out[base + "_hi"] = e["value"], *e["ci95"]
                out[f"{tag}/llamacpp/{outtype}/{threads}/pp_tok_s"] = row["pp_tok_s"]
                out[f"{tag}/llamacpp/{outtype}/{threads}/tg_tok_s"] = row["tg_tok_s"]
        for outtype, info in entry["gguf"].items():
            out[f"{tag}/gguf_mb/{outtype}"] = info["bytes"] / 1e6
            if info.get("check"):
                out[f"{tag}/check/{outtype}/ppl_rel_diff"] = info["check"]["ppl_rel_diff"]
                out[f"{tag}/check/{outtype}/greedy_match"] = float(info["check"]["greedy_match"])
    return out
