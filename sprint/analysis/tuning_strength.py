"""SPRINT's tuning strength against held-out text (issue 25, item 4): does a weaker least-squares tuning keep the
in-domain perplexity gain without the loss on another domain?

SPRINT's tuning fits d's output projection to the calibration set (WikiText-2 here): on SmolLM2 6,144 tokens for an
MLP 1,536 wide, against the paper's 262,144 for Llama-3-8B's 14,336.  Each *setting* changes one thing of the default
SPRINT run, prunes to the target under the same latency table, and scores the pruned model's perplexity on WikiText-2
test windows (in-domain: the calibration's corpus, another split) and on the held-out corpus (another domain, never
calibrated on), the same windows for every setting, so each setting is paired against the default window by window:

* ``tune_ratio=c``: tune only the share c of the output projection's rows (the paper's c; the authors use 0.75 at 70B);
* ``ridge=r``: a ridge λ = r·mean(diag G) always added to the least squares (``PruneConfig.ridge``);
* ``calibration=PATH``: another calibration set (more tokens per MLP width; from ``sprint calibrate``, never from the
  evaluation data);
* ``method=sprint-t``: no tuning at all (ζ̃ as the sensitivity), the zero of the tuning's strength.

The JSON is rewritten after every setting; a rerun with the same inputs resumes.  No setting touches the evaluation
windows: the calibration sets come from WikiText-2's validation split (``sprint calibrate``), the evaluation from its
test split and from the held-out corpus.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from sprint.errors import SprintError
from sprint.io import atomic_write_json
from sprint.measure import stats
from sprint.measure.table import load_latency

log = logging.getLogger("sprint")

KNOBS = {"tune_ratio": float, "ridge": float, "beta": int, "method": str, "calibration": str}


def parse_setting(text: str) -> tuple[str, dict[str, Any]]:
    """``"default"`` or ``"key=value[,key=value]"`` (keys: :data:`KNOBS`) -> (its name, the changes)."""
    if text == "default":
        return text, {}
    changes: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key not in KNOBS:
            raise SprintError(f"setting {text!r}: expected 'default' or key=value with key one of {', '.join(KNOBS)}")
        try:
            changes[key] = KNOBS[key](value)
        except ValueError:
            raise SprintError(f"setting {text!r}: {key} must be a {KNOBS[key].__name__}, got {value!r}") from None
    if changes.get("method", "sprint") not in ("sprint", "sprint-t"):
        raise SprintError(f"setting {text!r}: method must be sprint or sprint-t")
    return text, changes


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _compare(result: dict) -> None:
    """Each setting against the default, window by window on both corpora (paired bootstrap, 95% CI)."""
    base = result["settings"].get("default")
    if base is None:
        return
    for name, row in result["settings"].items():
        row["vs_default"] = {}
        for corpus in ("wikitext2", result["heldout"]):
            a, b = row["ppl"][corpus]["window_nll"], base["ppl"][corpus]["window_nll"]
            d = stats.paired_bootstrap({corpus: (range(len(a)), a)}, {corpus: (range(len(b)), b)}, stats.perplexity)
            row["vs_default"][corpus] = {"diff": d.estimate, "lo": d.lo, "hi": d.hi}


def run_tuning_strength(
    model_path: str, calibration_path: str, table_path: str, output: str | Path, *, settings: list[str],
    target: float = 1.2, heldout: str = "hellaswag_gold", mirror: Path | None = None, ppl_seq_len: int = 256,
    ppl_windows: int = 32, eval_batch_size: int = 8, prune_settings: dict | None = None,
) -> dict:
    """Prune with SPRINT under each setting (one change against ``prune_settings`` each; "default" first), score
    both corpora, compare each setting with the default, and write ``output`` (JSON); returns its content."""
    from sprint.data.calibration import load_calibration
    from sprint.data.sources import check_heldout
    from sprint.measure.perplexity import perplexity_record
    from sprint.methods import PruneConfig
    from sprint.methods.driver import prune_model
    from sprint.model.loading import load_model

    parsed = dict(parse_setting(s) for s in dict.fromkeys(["default", *settings]))
    check_heldout([heldout], mirror)
    output = Path(output)
    table = load_latency(table_path)
    base = {k: v for k, v in (prune_settings or {}).items() if k not in ("method", "target_speedup")}
    header = {"analysis": "tuning-strength", "model": model_path, "target": target, "heldout": heldout,
              "table": {"path": str(table_path), "sha256": _sha256(table_path)},
              "calibration": {"path": str(calibration_path), "sha256": _sha256(calibration_path)},
              "evaluation": {"seq_len": ppl_seq_len, "windows": ppl_windows}, "prune_settings": base}
    result: dict[str, Any] = {**header, "settings": {}}
    if output.is_file():  # resume
        old = json.loads(output.read_text(encoding="utf-8"))
        if {key: old.get(key) for key in header} == header:
            result["settings"] = {k: v for k, v in old.get("settings", {}).items() if k in parsed}
            log.info("resuming %s: %d settings done", output, len(result["settings"]))
    model, tokenizer = None, None
    for name, changes in parsed.items():
        if name in result["settings"]:
            continue
        cal_path = changes.get("calibration", calibration_path)
        calibration = load_calibration(cal_path)
        options = {**base, **{k: v for k, v in changes.items() if k not in ("method", "calibration")}}
        cfg = PruneConfig(method=changes.get("method", "sprint"), target_speedup=[target], **options)
        model, tokenizer = load_model(model_path, device="cpu", dtype="float32")
        t0 = time.perf_counter()
        pruner = prune_model(model, calibration, table, cfg, progress=False)
        seconds = time.perf_counter() - t0
        getattr(pruner, "close", lambda: None)()
        ppl = {}
        for corpus in ("wikitext2", heldout):
            rec = perplexity_record(model, tokenizer, mirror, ppl_seq_len, ppl_windows, eval_batch_size, corpus)
            ppl[corpus] = {"ppl": rec[f"{corpus}_ppl"], "ci": rec[f"{corpus}_ppl_ci"],
                           "window_nll": rec[f"{corpus}_window_nll"]}
        removed = [(r.layer, r.kind) for r in pruner.removed]
        result["settings"][name] = {
            "changes": changes, "calibration": {"path": str(cal_path), "n": int(calibration.shape[0]),
                                                "seq_len": int(calibration.shape[1])},
            "removed": [list(r) for r in removed], "n_attn": sum(k == "attn" for _, k in removed),
            "n_mlp": sum(k == "mlp" for _, k in removed), "tunings": pruner.num_tunings, "seconds": seconds,
            "ppl": ppl}
        log.info("%s: %s removed in %.0f s; wikitext2 ppl %.2f, %s ppl %.2f", name, removed, seconds,
                 ppl["wikitext2"]["ppl"], heldout, ppl[heldout]["ppl"])
        _compare(result)
        atomic_write_json(output, result)
    _compare(result)
    atomic_write_json(output, result)
    return result
