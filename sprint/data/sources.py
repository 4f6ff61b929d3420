"""Data sources: the Hugging Face hub when online, or an offline mirror folder (``$SPRINT_DATA_MIRROR``).

A mirror holds ``wikitext2/wiki.{valid,test}.tokens`` (WikiText-2 v1, word-tokenized) and
``benchmarks/<task>.jsonl``; see ``shared/data/README.md`` for the layout.

Perplexity corpora (:data:`PPL_CORPORA`): ``wikitext2`` (the test split; calibration samples the train split, or
the validation split offline) and the *held-out* corpus ``hellaswag_gold``, text of another domain that no
calibration may use (:data:`HELDOUT_CORPORA`; :mod:`sprint.data.calibration` refuses it), so that a perplexity lead
that survives on it is not the least squares fitting the calibration text.

``hellaswag_gold`` is the HellaSwag validation split's documents as running text: each document's context (the
preprocessing of lm-eval's built-in task, without the activity label) followed by its *correct* ending, one
document per paragraph.  Its text is ActivityNet video captions ("A man is sitting on a roof. He starts pulling
up roofing on a roof.") and WikiHow how-to steps ("Find a ring suitable for his lifestyle. ..."): narrated
everyday actions and second-person instructions, where WikiText is third-person encyclopedic prose from Wikipedia's
Good and Featured articles (history, biographies, species, storms, games).  It is the largest body of natural text
the mirror holds besides WikiText (10,042 documents, 762k SmolLM2 tokens) and needs no new download.  The
documents are taken in a fixed seeded order (:data:`HELDOUT_SEED`, not the evaluation's seed), so that the first
windows mix both sources and every model and configuration scores the same windows; each document is tokenized on
its own, so the first N windows do not depend on how many are scored.  The accuracy evaluation draws its own
seeded subset of the same documents: at 20 of 10,042 per task the expected overlap with the ~100 documents of 32
windows of 256 tokens is 0.2 documents; larger subsets overlap more, which does not matter here: nothing is fitted
on either, and the two measure different things (the log-likelihood of the gold text as language, and the choice
among four endings).
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Iterator

from sprint.errors import SprintError

MIRROR_ENV = "SPRINT_DATA_MIRROR"
SPLITS = ("train", "validation", "test")
_MIRROR_FILES = {"validation": "wiki.valid.tokens", "test": "wiki.test.tokens"}

# v1 tokenization artefacts, undone in this order (plain substring replacements first, then regexes).
_REPLACEMENTS = (
    (" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."),
    (" , ", ", "), (" . ", ". "), (" : ", ": "), (" ; ", "; "), (" ! ", "! "), (" ? ", "? "),
    ("s ' ", "s' "),
    (" \N{DEGREE SIGN} ", "\N{DEGREE SIGN}"), (" %", "%"),
)
_REGEXES = (
    (re.compile(r" '(s|t|re|ve|ll|m|d)\b"), r"'\1"),  # contractions: "it 's", "don 't"
    (re.compile(r"= = = ="), "===="),  # section headings: " = = Title = = " -> " == Title == "
    (re.compile(r"= = ="), "==="),
    (re.compile(r"= ="), "=="),
    (re.compile(r"\( ([^()]*?) \)"), r"(\1)"),  # inner padding of brackets
    (re.compile(r"\[ ([^\[\]]*?) \]"), r"[\1]"),
    (re.compile(r'" ([^"\n]*?) "'), r'"\1"'),  # paired double quotes on one line
    (re.compile(r" +\n"), "\n"),
    (re.compile(r"\n +"), "\n"),
)


def detokenize_wikitext(text: str) -> str:
    """Undo WikiText v1 word tokenization (``3 @.@ 5`` -> ``3.5``, ``word , word`` -> ``word, word``, ...)."""
    for old, new in _REPLACEMENTS:
        text = text.replace(old, new)
    for pattern, new in _REGEXES:
        text = pattern.sub(new, text)
    return text


def hellaswag_clean(text: str) -> str:
    """HellaSwag's WikiHow artefacts, as lm-eval's ``hellaswag/utils.py`` ``preprocess``: ``" [title]"`` becomes a
    sentence break, other ``[...]`` markup goes."""
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def hellaswag_query(query: str) -> str:
    """Clean a mirror query ``"<activity>: <ctx_a> <ctx_b>"`` and capitalise its trailing fragment ``ctx_b``.

    The mirror joins ``ctx_a`` and ``ctx_b``; an unfinished last sentence (no closing ``.!?``) is ``ctx_b``,
    which lm-eval's built-in task capitalises.
    """
    head, _, ctx = query.partition(": ")
    if ctx and ctx.rstrip()[-1:] not in ".!?":
        match = re.search(r"^(.*[.!?]\s+)?(.+)$", ctx, flags=re.S)
        ctx = (match.group(1) or "") + match.group(2).capitalize()
    return hellaswag_clean(f"{head}: {ctx}" if ctx else head)


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` is set to a truthy value."""
    truthy = {"1", "true", "yes", "on"}
    return any(os.environ.get(k, "").strip().lower() in truthy for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def resolve_mirror(mirror: str | os.PathLike | None) -> Path | None:
    """The mirror folder given, else ``$SPRINT_DATA_MIRROR``, else None (= use the hub)."""
    origin = "--mirror"
    if mirror is None or str(mirror) == "":
        mirror, origin = os.environ.get(MIRROR_ENV) or None, f"${MIRROR_ENV}"
    if mirror is None:
        return None
    path = Path(mirror).expanduser()
    if not path.is_dir():
        raise SprintError(f"data mirror {path} (set by {origin}) does not exist or is not a folder")
    if not (path / "wikitext2").is_dir():
        raise SprintError(f"data mirror {path} (set by {origin}) has no wikitext2/ folder: expected a mirror layout")
    return path


def wikitext2_text(split: str, mirror: Path | None) -> str:
    """The raw text of a WikiText-2 split: from the mirror (detokenized v1) or the hub (``wikitext-2-raw-v1``)."""
    if split not in SPLITS:
        raise SprintError(f"WikiText-2 split must be one of {', '.join(SPLITS)}, got {split!r}")
    if mirror is not None:
        if split not in _MIRROR_FILES:
            raise SprintError(
                f"data mirror {mirror} has no WikiText-2 {split} split (not carried offline): use 'validation'"
            )
        path = Path(mirror) / "wikitext2" / _MIRROR_FILES[split]
        if not path.is_file():
            raise SprintError(f"data mirror file {path} is missing")
        return detokenize_wikitext(path.read_text(encoding="utf-8"))
    if hub_offline():
        raise SprintError(f"no data mirror and the hub is offline: set {MIRROR_ENV} or --mirror")
    import datasets

    return "".join(datasets.load_dataset("wikitext", "wikitext-2-raw-v1", split=split)["text"])


def benchmark_file(task: str, mirror: Path) -> Path:
    """The mirror's ``benchmarks/<task>.jsonl``."""
    path = Path(mirror) / "benchmarks" / f"{task}.jsonl"
    if not path.is_file():
        raise SprintError(f"data mirror {mirror} has no benchmark file benchmarks/{task}.jsonl")
    return path


def check_source(mirror: Path | None, tasks: list[str] | tuple[str, ...] = ()) -> None:
    """Fail fast when a data source cannot serve: without a mirror the hub must be online; a mirror must be a folder
    with ``wikitext2/``, and with the hub offline it must hold ``benchmarks/<task>.jsonl`` for every task
    (SprintError naming what is missing).  With the hub online, a task the mirror does not hold is lm-eval's own
    (:func:`sprint.measure.accuracy.resolve_tasks` checks its name against lm-eval's registry)."""
    if mirror is None:
        if hub_offline():
            raise SprintError("no data mirror is set and the Hugging Face hub is offline (HF_HUB_OFFLINE / "
                              "HF_DATASETS_OFFLINE)")
        return
    if not Path(mirror).is_dir():
        raise SprintError(f"the data mirror {mirror} does not exist or is not a folder")
    if not (Path(mirror) / "wikitext2").is_dir():
        raise SprintError(f"{mirror} has no wikitext2/ folder, so it is not a data mirror")
    missing = [t for t in tasks if not (Path(mirror) / "benchmarks" / f"{t}.jsonl").is_file()]
    if missing and hub_offline():
        held = sorted(p.stem for p in (Path(mirror) / "benchmarks").glob("*.jsonl"))
        raise SprintError(f"unknown task {missing[0]!r} offline: the data mirror {mirror} holds "
                          f"{', '.join(held) or 'no benchmarks'}")


def snapshot(mirror: Path | None, out: str | os.PathLike) -> dict:
    """Copy the mirror's WikiText-2, benchmark and README files into ``out`` (written whole, then renamed into
    place) with a ``SOURCE.json`` naming the mirror; without a mirror ``out`` only records that the hub is used."""
    import json
    import shutil

    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    record: dict = {"source": "hub"}
    if mirror is not None:
        mirror = Path(mirror)
        files = sorted([*mirror.glob("wikitext2/*.tokens"), *mirror.glob("benchmarks/*.jsonl"), *mirror.glob("*.md")])
        for src in files:
            dst = tmp / src.relative_to(mirror)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)  # contents only: the mirror's read-only modes would block later deletion
        record = {"source": "mirror", "mirror": str(mirror), "files": [str(f.relative_to(mirror)) for f in files]}
    (tmp / "SOURCE.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return record



PPL_CORPORA = ("wikitext2", "hellaswag_gold")  # perplexity corpora (sprint.measure.perplexity)
HELDOUT_CORPORA = ("hellaswag_gold",)  # never calibrated on: sprint.data.calibration refuses them
HELDOUT_SEED = 0  # the fixed document order of a held-out corpus (independent of evaluate.seed)


def check_corpus(corpus: str) -> None:
    if corpus not in PPL_CORPORA:
        raise SprintError(f"unknown perplexity corpus {corpus!r}; choose from {', '.join(PPL_CORPORA)}")


def check_heldout(corpora: list[str] | tuple[str, ...], mirror: Path | None) -> None:
    """Fail fast unless ``corpora`` are distinct held-out corpora the data source can serve (a mirror: the
    benchmark file each is built from)."""
    for corpus in corpora:
        check_corpus(corpus)
        if corpus not in HELDOUT_CORPORA:
            raise SprintError(f"held-out perplexity: {corpus} is not a held-out corpus (choose from "
                              f"{', '.join(HELDOUT_CORPORA)}; WikiText-2 is always scored)")
        if mirror is not None:
            benchmark_file("hellaswag", mirror)  # hellaswag_gold's documents
    if len(set(corpora)) != len(corpora):
        raise SprintError(f"held-out perplexity: {','.join(corpora)} names a corpus twice")


def _hellaswag_gold_docs(mirror: Path | None) -> list[str]:
    """The HellaSwag validation documents as text: cleaned context + " " + cleaned gold ending, in file order."""
    if mirror is not None:
        rows = [json.loads(line) for line in benchmark_file("hellaswag", mirror).read_text(encoding="utf-8")
                .splitlines() if line.strip()]
        queries = [(r["activity_label"], hellaswag_query(r["query"]), r["choices"][int(r["label"])]) for r in rows]
    else:
        if hub_offline():
            raise SprintError(f"no data mirror and the hub is offline: set {MIRROR_ENV} or --mirror")
        import datasets

        data = datasets.load_dataset("Rowan/hellaswag", split="validation")  # lm-eval's hellaswag dataset
        queries = [(d["activity_label"],
                    hellaswag_clean(d["activity_label"] + ": " + d["ctx_a"] + " " + d["ctx_b"].capitalize()),
                    d["endings"][int(d["label"])]) for d in data]
    docs = []
    for label, query, ending in queries:
        head = hellaswag_clean(label) + ": "
        context = query[len(head):] if query.startswith(head) else query
        docs.append(f"{context} {hellaswag_clean(ending)}".strip())
    return docs


def corpus_documents(corpus: str, mirror: Path | None) -> list[str]:
    """A held-out perplexity corpus as its documents in their fixed (seeded) order, each ending in a paragraph
    break: every document is tokenized on its own and the ids concatenated (:func:`sprint.measure.perplexity`)."""
    check_corpus(corpus)
    if corpus not in HELDOUT_CORPORA:
        raise SprintError(f"{corpus} is not a held-out corpus (it is read whole: wikitext2_text)")
    docs = _hellaswag_gold_docs(mirror)
    order = list(range(len(docs)))
    random.Random(HELDOUT_SEED).shuffle(order)
    return [docs[i] + "\n\n" for i in order]


def iter_corpus_chunks(corpus: str, mirror: Path | None, chunk: int = 256) -> Iterator[list[str]]:
    """:func:`corpus_documents` in chunks of ``chunk`` documents (tokenize only as many as the windows need)."""
    docs = corpus_documents(corpus, mirror)
    for start in range(0, len(docs), chunk):
        yield docs[start : start + chunk]
