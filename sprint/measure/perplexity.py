"""WikiText-2 perplexity over fixed non-overlapping windows of the test split, with each window's NLL kept so
that two models are compared paired, window by window (the report's CIs).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sprint.data import sources
from sprint.errors import SprintError
from sprint.measure import stats

log = logging.getLogger("sprint")


def perplexity_record(
    model: Any, tokenizer: Any, mirror: Path | None, seq_len: int, max_windows: int | None, batch_size: int,
) -> dict[str, Any]:
    """WikiText-2 test perplexity with its 95% CI, the tokens it scored and each window's mean token NLL.

    ``{"wikitext2_ppl", "wikitext2_ppl_ci": [lo, hi], "wikitext2_tokens", "wikitext2_window_nll": [...]}``.
    Every window scores ``seq_len − 1`` tokens, so the perplexity is exp(mean of the window NLLs); the CI is a
    seeded bootstrap over windows.  The windows depend only on the tokenizer and ``seq_len``: every model of a
    family scores the same ones, so the window lists of two models pair up (:mod:`sprint.measure.stats`).
    """
    if seq_len < 2 or batch_size < 1 or (max_windows is not None and max_windows < 1):
        raise SprintError(f"perplexity: need seq_len >= 2, batch_size >= 1, max_windows >= 1 or None "
                          f"(got {seq_len}, {batch_size}, {max_windows})")
    ids = tokenizer(sources.wikitext2_text("test", mirror), return_tensors="pt", add_special_tokens=False,
                    verbose=False).input_ids[0]
    n = ids.numel() // seq_len if max_windows is None else min(ids.numel() // seq_len, max_windows)
    if n == 0:
        raise SprintError(f"perplexity: WikiText-2 test has {ids.numel()} tokens, fewer than ppl_seq_len = {seq_len}")
    windows = ids[: n * seq_len].view(n, seq_len)
    device = next(model.parameters()).device
    nll = []  # mean token NLL per window
    with torch.inference_mode():
        for start in tqdm(range(0, n, batch_size), desc="wikitext2 ppl", unit="batch", leave=False):
            batch = windows[start : start + batch_size].to(device)
            logits = model(input_ids=batch, use_cache=False).logits
            for row_logits, row_ids in zip(logits, batch):  # one window at a time: fp32 logits of one row only
                nll.append(torch.nn.functional.cross_entropy(row_logits[:-1].float(), row_ids[1:]).item())
    sample = {"wikitext2": (range(n), nll)}
    return {"wikitext2_ppl": math.exp(sum(nll) / n),
            "wikitext2_ppl_ci": list(stats.bootstrap_ci(sample, stats.perplexity)),
            "wikitext2_tokens": n * (seq_len - 1), "wikitext2_window_nll": nll}



def wikitext2_perplexity(
    model: Any, tokenizer: Any, mirror: Path | None, seq_len: int, max_windows: int | None, batch_size: int,
) -> float:
    """exp(mean token NLL) over non-overlapping ``seq_len`` windows of the WikiText-2 test split.

    The split is tokenized once; the first ``max_windows`` windows are used (None = all), the tail is dropped.
    """
    return perplexity_record(model, tokenizer, mirror, seq_len, max_windows, batch_size)["wikitext2_ppl"]

