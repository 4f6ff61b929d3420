"""Perplexity over fixed non-overlapping windows of a corpus, with each window's NLL kept so that two models are
compared paired, window by window (the report's CIs).

Two corpora (:data:`sprint.data.sources.PPL_CORPORA`): ``wikitext2``, the WikiText-2 test split tokenized whole;
and the held-out ``hellaswag_gold`` (HellaSwag's contexts with their correct endings: ActivityNet captions and
WikiHow steps, another domain than Wikipedia, which no calibration may use; :mod:`sprint.data.sources` says why
and how it is built), its documents tokenized one by one in a fixed order and concatenated, only as many as the
windows need.  Both go through the same windowing and scoring code and are recorded under the same field names,
``<corpus>_ppl``, ``<corpus>_ppl_ci``, ``<corpus>_tokens``, ``<corpus>_window_nll``.
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


def corpus_ids(tokenizer: Any, corpus: str, mirror: Path | None, tokens: int | None) -> torch.Tensor:
    """A corpus as one 1-D LongTensor of token ids: at least ``tokens`` of them where the corpus has that many
    (None = all).  WikiText-2 test is tokenized whole; a held-out corpus document by document (each ending in a
    paragraph break) until enough tokens are there, so its first windows do not depend on ``tokens``."""
    sources.check_corpus(corpus)
    if corpus == "wikitext2":
        return tokenizer(sources.wikitext2_text("test", mirror), return_tensors="pt", add_special_tokens=False,
                         verbose=False).input_ids[0]
    ids: list[int] = []
    for chunk in sources.iter_corpus_chunks(corpus, mirror):
        for row in tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"]:
            ids.extend(row)
        if tokens is not None and len(ids) >= tokens:
            break
    return torch.tensor(ids, dtype=torch.long)


def perplexity_record(
    model: Any, tokenizer: Any, mirror: Path | None, seq_len: int, max_windows: int | None, batch_size: int,
    corpus: str = "wikitext2",
) -> dict[str, Any]:
    """A corpus's perplexity with its 95% CI, the tokens it scored and each window's mean token NLL.

    ``{"<corpus>_ppl", "<corpus>_ppl_ci": [lo, hi], "<corpus>_tokens", "<corpus>_window_nll": [...]}``
    (``corpus``: ``wikitext2``, the test split, or ``hellaswag_gold``, the held-out corpus).
    Every window scores ``seq_len − 1`` tokens, so the perplexity is exp(mean of the window NLLs); the CI is a
    seeded bootstrap over windows.  The windows depend only on the tokenizer and ``seq_len``: every model of a
    family scores the same ones, so the window lists of two models pair up (:mod:`sprint.measure.stats`).
    """
    if seq_len < 2 or batch_size < 1 or (max_windows is not None and max_windows < 1):
        raise SprintError(f"perplexity: need seq_len >= 2, batch_size >= 1, max_windows >= 1 or None "
                          f"(got {seq_len}, {batch_size}, {max_windows})")
    ids = corpus_ids(tokenizer, corpus, mirror, None if max_windows is None else max_windows * seq_len)
    n = ids.numel() // seq_len if max_windows is None else min(ids.numel() // seq_len, max_windows)
    if n == 0:
        raise SprintError(f"perplexity: {corpus} has {ids.numel()} tokens, fewer than ppl_seq_len = {seq_len}")
    windows = ids[: n * seq_len].view(n, seq_len)
    device = next(model.parameters()).device
    nll = []  # mean token NLL per window
    with torch.inference_mode():
        for start in tqdm(range(0, n, batch_size), desc=f"{corpus} ppl", unit="batch", leave=False):
            batch = windows[start : start + batch_size].to(device)
            logits = model(input_ids=batch, use_cache=False).logits
            for row_logits, row_ids in zip(logits, batch):  # one window at a time: fp32 logits of one row only
                nll.append(torch.nn.functional.cross_entropy(row_logits[:-1].float(), row_ids[1:]).item())
    sample = {corpus: (range(n), nll)}
    return {f"{corpus}_ppl": math.exp(sum(nll) / n),
            f"{corpus}_ppl_ci": list(stats.bootstrap_ci(sample, stats.perplexity)),
            f"{corpus}_tokens": n * (seq_len - 1), f"{corpus}_window_nll": nll}



def wikitext2_perplexity(
    model: Any, tokenizer: Any, mirror: Path | None, seq_len: int, max_windows: int | None, batch_size: int,
) -> float:
    """exp(mean token NLL) over non-overlapping ``seq_len`` windows of the WikiText-2 test split.

    The split is tokenized once; the first ``max_windows`` windows are used (None = all), the tail is dropped.
    """
    return perplexity_record(model, tokenizer, mirror, seq_len, max_windows, batch_size)["wikitext2_ppl"]
