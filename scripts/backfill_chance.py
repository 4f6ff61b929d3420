"""One-off backfill (issue 24): add the chance-aware fields of a task record to metrics files written before they
existed, from the data mirror's labels, and record that they were backfilled.

    python scripts/backfill_chance.py docs/results/smollm2-cpu/results [--mirror /work/shared/data] [--check]

For each metrics JSON under the folder and each of its tasks held by the mirror (a record without ``chance``):

- ``n_choices`` and ``gold`` per evaluated document, read from ``benchmarks/<task>.jsonl`` at the record's
  ``doc_ids`` (lm-eval's index into the task's documents: the mirror's line order, which the local task keeps);
- ``chance``, and for binary tasks ``answers``, ``majority_answer``, ``majority_rate``, ``majority_rate_all``,
  ``gold_shares`` and ``answer_shares``, computed by :func:`sprint.measure.accuracy.answer_record`, the function the
  evaluation uses;
- ``predicted`` only for binary tasks, where it follows from ``gold`` and ``correct`` (a wrong answer is the other
  choice); on tasks with more choices the wrong answer is not recorded, so ``predicted`` is left out;
- ``backfill``: what was added, by this script, from which mirror file (its sha256).

Nothing else in the file changes.  ``--check`` only says which files would change.  The records' ``correct`` are
checked to line up with the mirror (same number of documents, ids inside the task).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from sprint.measure.accuracy import MIRROR_TASKS, answer_record

SCRIPT = "scripts/backfill_chance.py"


def _mirror_task(mirror: Path, task: str, cache: dict) -> tuple[list[int], list[int], str]:
    """(gold per document, number of choices per document, sha256 of the file) of a mirror task."""
    if task not in cache:
        path = mirror / "benchmarks" / f"{task}.jsonl"
        raw = path.read_bytes()
        gold, k = [], []
        for line in raw.decode("utf-8").splitlines():
            if not line.strip():
                continue
            d = json.loads(line)
            if task == "boolq":
                choices = ["no", "yes"]
            elif task in ("piqa",):
                choices = [d["sol1"], d["sol2"]]
            elif task in ("copa",):
                choices = [d["choice1"], d["choice2"]]
            elif task == "winogrande":
                choices = [d["option1"], d["option2"]]
            else:
                choices = d["choices"]
            gold.append(int(d["label"]))
            k.append(len(choices))
        cache[task] = (gold, k, hashlib.sha256(raw).hexdigest())
    return cache[task]


def backfill(path: Path, mirror: Path, cache: dict) -> bool:
    d = json.loads(path.read_text(encoding="utf-8"))
    changed = False
    for task, t in (d.get("tasks") or {}).items():
        if "chance" in t or task not in MIRROR_TASKS or not (mirror / "benchmarks" / f"{task}.jsonl").is_file():
            continue
        all_gold, all_k, sha = _mirror_task(mirror, task, cache)
        ids, correct = t["doc_ids"], t["correct"]
        if len(ids) != len(correct) or any(not 0 <= i < len(all_gold) for i in ids) or t["total"] != len(all_gold):
            raise SystemExit(f"{path}: {task} does not line up with {mirror}/benchmarks/{task}.jsonl")
        gold, k = [all_gold[i] for i in ids], [all_k[i] for i in ids]
        binary = set(k) == {2}
        predicted = [g if c else 1 - g for g, c in zip(gold, correct)] if binary else []
        names = None
        if binary:
            names = ["no", "yes"] if task == "boolq" else MIRROR_TASKS[task].get("answers")
        record = answer_record(gold, predicted, k, all_gold if binary else [], names)
        if not binary:
            record.pop("predicted")
        t.update(record)
        t["backfill"] = {"by": SCRIPT, "from": f"benchmarks/{task}.jsonl", "sha256": sha,
                         "fields": sorted(record),
                         "note": "added after evaluation from the mirror's labels"
                                 + ("; predicted = gold if correct else the other answer" if binary else "")}
        changed = True
    if changed:
        path.write_text(json.dumps(d, indent=2) + "\n", encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path)
    p.add_argument("--mirror", type=Path, default=Path("/work/shared/data"))
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    cache: dict = {}
    files = sorted(args.results.glob("*/metrics/**/*.json"))
    n = 0
    for path in files:
        if args.check:
            d = json.loads(path.read_text(encoding="utf-8"))
            todo = [t for t, r in d.get("tasks", {}).items() if "chance" not in r]
            if todo:
                print(f"would backfill {path}: {', '.join(todo)}")
                n += 1
        elif backfill(path, args.mirror, cache):
            print(f"backfilled {path}")
            n += 1
    print(f"{n} of {len(files)} metrics files {'to backfill' if args.check else 'backfilled'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
