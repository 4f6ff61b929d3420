"""Data sources: the Hugging Face hub when online, or an offline mirror folder (``$SPRINT_DATA_MIRROR``).

A mirror holds ``wikitext2/wiki.{valid,test}.tokens`` (WikiText-2 v1, word-tokenized) and
``benchmarks/<task>.jsonl``; see ``shared/data/README.md`` for the layout.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

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
    with ``wikitext2/`` and ``benchmarks/<task>.jsonl`` for every task (SprintError naming what is missing)."""
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
    if missing:
        raise SprintError(f"the data mirror {mirror} has no benchmarks/<task>.jsonl for {', '.join(missing)}")


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
