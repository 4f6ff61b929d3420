"""Chance-aware accuracy in the report: chance and majority per task, informative tasks, the informative-task mean
(the verdicts' measure), retained accuracy above chance, the answer-bias flag and answer shares; Fig. 3a."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from sprint.report import write_report
from sprint.report.load import load_results
from sprint.report.tables import bias_flags, chance_table, retained

from helpers import MODEL, metrics_record, pruning_record, write_json

N = 100


def _record(method: str, target: float | None, seed: int, arc: int, boolq_yes: int) -> dict:
    """arc_easy (4 choices): ``arc`` of 100 right; boolq (binary, gold 'yes' on 65 of 100): the model answers 'yes'
    on the first ``boolq_yes`` documents."""
    r = metrics_record(method, target, seed, 0.5, 1.0 if target is None else target)
    ids = list(range(N))
    gold = [1] * 65 + [0] * 35
    predicted = [1] * boolq_yes + [0] * (N - boolq_yes)
    correct = [int(p == g) for p, g in zip(predicted, gold)]
    yes = boolq_yes / N
    r["tasks"] = {
        "arc_easy": {"metric": "acc_norm", "value": arc / N, "stderr": 0.05, "n": N, "total": 1000, "doc_ids": ids,
                     "correct": [1] * arc + [0] * (N - arc), "n_choices": [4] * N, "chance": 0.25},
        "boolq": {"metric": "acc", "value": sum(correct) / N, "stderr": 0.05, "n": N, "total": 1000, "doc_ids": ids,
                  "correct": correct, "n_choices": [2] * N, "gold": gold, "predicted": predicted, "chance": 0.5,
                  "answers": ["no", "yes"], "majority_answer": "yes", "majority_rate": 0.65,
                  "answer_shares": {"no": 1 - yes, "yes": yes}, "gold_shares": {"no": 0.35, "yes": 0.65}}}
    r["mean_accuracy"] = (r["tasks"]["arc_easy"]["value"] + r["tasks"]["boolq"]["value"]) / 2
    return r


def _tree(root: Path) -> Path:
    m = root / MODEL
    write_json(m / "metrics" / "dense.json", _record("dense", None, 0, arc=60, boolq_yes=2))  # boolq: 'no' nearly always
    for method, arc, yes in (("sprint", 50, 5), ("shortgpt", 45, 60)):
        write_json(m / "pruned" / method / "seed0" / "x1.2" / "pruning.json",
                   pruning_record(method, 1.2, 0, [(2, "attn")]))
        write_json(m / "metrics" / method / "seed0" / "x1.2.json", _record(method, 1.2, 0, arc, yes))
    return root


def test_informative_tasks_and_bias(tmp_path: Path) -> None:
    m = load_results(_tree(tmp_path / "results"), MODEL)
    shown = chance_table(m).set_index("task")
    assert shown.loc["arc_easy", "chance (%)"] == "25.0" and shown.loc["arc_easy", "informative"] == "yes"
    # boolq: dense 37% (answers 'no' to 98%), below chance 50% and majority 65%: not informative
    assert shown.loc["boolq", "majority (%)"] == "65.0" and shown.loc["boolq", "informative"] == "no"
    assert m.informative == ["arc_easy"]
    assert m.runs.set_index("method").loc["shortgpt", "informative_accuracy"] == 45.0  # arc_easy alone
    assert retained(50.0, 60.0, 25.0) == 100 * 25 / 35
    flags = bias_flags(m).set_index(["method", "task"])
    # ShortGPT answers 'yes' to 60%: +58 pp on boolq against the dense model, beyond the paired noise
    assert flags.loc[("shortgpt", "boolq"), "flag"] and flags.loc[("shortgpt", "boolq"), "shifted"]
    assert flags.loc[("shortgpt", "boolq"), "shares"] == "no 98 / yes 2 → no 40 / yes 60"
    assert not flags.loc[("sprint", "boolq"), "flag"] and not flags.loc[("shortgpt", "arc_easy"), "flag"]


def test_report_shows_chance_and_the_sweep(tmp_path: Path) -> None:
    root = _tree(tmp_path / "results")
    sweep = {"model": f"data/models/{MODEL}", "device": "cpu", "num_layers": 4, "prompt_len": 64, "gen_len": 16,
             "dense_s": {"value": 1.0, "ci95": [0.9, 1.1]},
             "points": [{"kind": "none", "removed": 0, "ratio": {"value": 1.0, "ci95": [1.0, 1.0]},
                         "predicted": {"profile": {"ratio": 1.0}, "table": {"ratio": 1.0}}}]
             + [{"kind": kind, "removed": n, "ratio": {"value": 1 - 0.1 * n, "ci95": [0.98 - 0.1 * n, 1.02 - 0.1 * n]},
                 "predicted": {"profile": {"ratio": 1 - 0.1 * n}, "table": {"ratio": 1 - 0.08 * n}}}
                for kind in ("attn", "mlp") for n in (1, 2, 3)],
             "linearity": {k: {"fitted_share_per_sublayer": 0.1,
                               "profile": {"max_abs_gap": 0.0, "inside_ci": [True] * 4},
                               "table": {"max_abs_gap": 0.06, "inside_ci": [True, False, False, False]}}
                           for k in ("attn", "mlp")}}
    write_json(root / MODEL / "latency_sweep_64+16.json", sweep)
    written = write_report(root, root / "report.md")
    text = (root / "report.md").read_text()
    assert "### Chance-aware accuracy" in text and "_Informative tasks_: arc_easy of 2." in text
    assert "| boolq | 50.0 | 65.0 |" in text and "⚑ ↔ ShortGPT 1.2× seed 0 on boolq" in text
    assert "informative-task acc. (%)" in text and "all-task acc. (%) (paper's figure)" in text
    assert "| Dense | no 98 / yes 2 |" in text
    png = root / "report" / f"{MODEL}_latency_sweep_64+16.png"
    assert png in written and Image.open(png).size[0] > 500
    assert "(paper Fig. 3a)" in text and "table's line off by at most 6.0 pp" in text
    bias = (root / "report" / f"{MODEL}_bias.csv").read_text()
    assert bias.splitlines()[0].startswith("method,point,seed,task,diff,lo,hi,flag")
    assert json.loads((root / MODEL / "latency_sweep_64+16.json").read_text())["num_layers"] == 4
