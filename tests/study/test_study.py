"""sprint.study: cells in order, each committed as it finishes, latency tables measured once, resumption, the
strongest baseline chosen from the cells done; the pipeline itself is replaced by a stand-in that writes what its
jobs would (the pipeline has its own tests)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from sprint.errors import SprintError
from sprint.study import runner
from sprint.study.page import write_page
from sprint.study.runner import plan, run
from sprint.study.spec import load_study

from helpers import metrics_record, pruning_record

SHIPPED = Path(__file__).resolve().parents[2]
ACCURACY = {"sprint": 0.45, "shortgpt": 0.40, "sleb": 0.43, "blockpruner": 0.38, "dense": 0.50}


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "repo"
    (root / "workflow/config").mkdir(parents=True)
    config = yaml.safe_load((SHIPPED / "workflow/config/cpu-study.yaml").read_text())
    config["base"]["models"] = {
        "m": {"source": "embedded", "latency_table": "out/latency/m.json"},
        "m-cal": {"source": "embedded", "calibration": {"n": 96}, "latency_table": "out/latency/m.json"}}
    (root / "workflow/config/study.yaml").write_text(yaml.safe_dump(config))
    (root / "study.yaml").write_text(yaml.safe_dump({"config": "workflow/config/study.yaml", "output": "out", "cells": [
        {"model": "m", "methods": ["dense"]},
        {"model": "m", "methods": ["sprint", "shortgpt", "sleb"], "seeds": [0], "points": ["x1.2"]},
        {"model": "m", "methods": ["sprint", "strongest-baseline"], "seeds": [1], "points": ["x1.2"]},
        {"model": "m-cal", "methods": ["sprint"], "seeds": [0], "points": ["x1.2"]},
        {"model": "m-cal", "methods": ["strongest-baseline"], "seeds": [0], "points": ["x1.2"]}]}))
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-qm", "init")
    monkeypatch.setattr(runner, "run_pipeline", fake_pipeline)
    fake_pipeline.calls = []
    return root


def fake_pipeline(root: Path, config: Path, targets: list[str]) -> None:
    """Write what the pipeline's jobs would for ``targets`` (a latency table, or a metrics file and its records)."""
    fake_pipeline.calls.append(targets)
    models = yaml.safe_load(config.read_text())["base"]["models"]
    for name, entry in models.items():  # the real pipeline refuses a configuration naming a table that is not there
        assert "latency_table" not in entry or (root / entry["latency_table"]).is_file(), name
    for target in targets:
        parts = Path(target).parts  # results/<model>/...
        model = parts[1]
        latency = root / "results" / model / "latency.json"
        latency.parent.mkdir(parents=True, exist_ok=True)
        latency.write_text(json.dumps({"dense_s": 1.0, "t_attn_s": 0.01, "t_mlp_s": 0.02}))
        bench = root / "results/benchmarks/profile" / f"{model}.tsv"
        bench.parent.mkdir(parents=True, exist_ok=True)
        bench.write_text("s\tmax_rss\n" + ("60.0" if target.endswith("latency.json") else "9.0") + "\t100\n")
        if target.endswith("latency.json"):
            continue
        method = "dense" if parts[-1] == "dense.json" else parts[3]
        metrics = {"method": method, "mean_accuracy": ACCURACY[method], "wikitext2_ppl": 30.0}
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        (root / target).write_text(json.dumps(metrics))
        if method != "dense":
            seed, point = parts[4], Path(parts[5]).stem
            pruned = root / "results" / model / "pruned" / method / seed / point
            pruned.mkdir(parents=True, exist_ok=True)
            (pruned / "pruning.json").write_text(json.dumps({"method": method}))
            (pruned / "model.safetensors").write_bytes(b"\0" * 1000)  # large files stay out of the study


def test_cells_run_in_order_commit_and_resume(repo: Path) -> None:
    s = load_study(repo / "study.yaml", repo)
    assert "to do  strongest-baseline" not in "\n".join(plan(s))
    assert [str(c) for c in s.cells()][:2] == ["m/dense", "m/sprint/seed0/x1.2"]
    assert str(s.cells()[5]) == "m/strongest-baseline/seed1/x1.2"  # not resolvable before the baselines ran
    (repo / "unrelated.txt").write_text("mine")
    git(repo, "add", "unrelated.txt")  # someone's staged work: the study's commits leave it staged

    ran = run(s, max_cells=2)
    assert [str(c) for c in ran] == ["m/dense", "m/sprint/seed0/x1.2"]
    assert fake_pipeline.calls[0] == ["results/m/latency.json"]  # the shared table, measured once, first
    assert (repo / "out/latency/m.json").is_file()
    log = git(repo, "log", "--format=%s")
    assert "latency table of m, measured once" in log and "m/sprint/seed0/x1.2" in log
    assert git(repo, "diff", "--cached", "--name-only").split() == ["unrelated.txt"]
    assert (repo / "out/results/m/pruned/sprint/seed0/x1.2/pruning.json").is_file()
    assert (repo / "out/results/benchmarks/profile/m.tsv").read_text() == "s\tmax_rss\n60.0\t100\n"  # not the copy's
    assert not list((repo / "out").rglob("*.safetensors"))
    assert not (repo / "results/m/pruned/sprint/seed0").exists()  # every cell of that pruning job done: freed

    calls = len(fake_pipeline.calls)
    ran = run(load_study(repo / "study.yaml", repo))  # resumes: the done cells are skipped
    assert [str(c) for c in ran] == ["m/shortgpt/seed0/x1.2", "m/sleb/seed0/x1.2", "m/sprint/seed1/x1.2",
                                     "m/sleb/seed1/x1.2", "m-cal/sprint/seed0/x1.2",
                                     "m-cal/sleb/seed0/x1.2"]  # SLEB: the best baseline of the main comparison
    assert all(t != ["results/m/latency.json"] for t in fake_pipeline.calls[calls:])  # no second profile
    assert all(load_study(repo / "study.yaml", repo).done(c) for c in s.cells())
    assert run(load_study(repo / "study.yaml", repo)) == []
    assert "to do" not in "\n".join(plan(load_study(repo / "study.yaml", repo)))


def test_the_strongest_baseline_needs_its_cells_first(repo: Path) -> None:
    spec = yaml.safe_load((repo / "study.yaml").read_text())
    spec["cells"] = [{"model": "m", "methods": ["strongest-baseline"], "seeds": [1], "points": ["x1.2"]}]
    (repo / "study.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(SprintError, match="no baseline has been evaluated at x1.2"):
        run(load_study(repo / "study.yaml", repo))


@pytest.mark.parametrize(("cells", "message"), [
    ([{"model": "other", "methods": ["dense"]}], r"cells\[0\]: model 'other' is not in base.models"),
    ([{"model": "m", "methods": ["magic"], "points": ["x1.2"]}], r"cells\[0\]: unknown method\(s\) magic"),
    ([{"model": "m", "methods": ["sprint"]}], r"cells\[0\]: pruned models need points"),
    ([{"model": "m", "methods": ["dense"], "seed": [0]}], r"cells\[0\]: expected model, methods"),
])
def test_study_file_errors_name_the_cell(repo: Path, cells, message) -> None:
    spec = yaml.safe_load((repo / "study.yaml").read_text())
    spec["cells"] = cells
    (repo / "study.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(SprintError, match=message):
        load_study(repo / "study.yaml", repo)


def test_the_shipped_study_reads(tmp_path: Path) -> None:
    """workflow/study/smollm2-cpu.yaml and its configuration load, and every cell names a configured point."""
    s = load_study(SHIPPED / "workflow/study/smollm2-cpu.yaml", SHIPPED)
    config = s.config
    targets = {f"x{t}" for t in config["prune"]["target_speedups"]}
    settings = {s for k in ("weights", "slicing", "structured") for s in config["prune"][k]["settings"]}
    for cell in s.cells(resolve=False):
        assert cell.method == "dense" or cell.point in (targets | settings), cell
    assert set(s.tables()) == {"smollm2-135m", "smollm2-135m-long"}  # cal4x shares the default's table


def realistic_pipeline(shift=lambda method, model, seed: 0.05 if model == "m-cal" else 0.0):
    """fake_pipeline with metrics files the report reads (per-document results): ACCURACY[method] + shift(...)."""

    def realistic(root: Path, config: Path, targets: list[str]) -> None:
        fake_pipeline(root, config, targets)
        for target in targets:
            parts = Path(target).parts
            if target.endswith("latency.json"):
                continue
            method = "dense" if parts[-1] == "dense.json" else parts[3]
            seed = int(parts[4].removeprefix("seed")) if method != "dense" else 0
            acc = ACCURACY[method] + shift(method, parts[1], seed)
            (root / target).write_text(json.dumps(metrics_record(method, 1.2, seed, acc, 1.15)))
            if method != "dense":
                (root / "results" / parts[1] / "pruned" / method / parts[4] / "x1.2" / "pruning.json").write_text(
                    json.dumps(pruning_record(method, 1.2, seed, [(2, "attn"), (3, "mlp")])))
    return realistic


def test_the_page_reads_the_cells_done(repo: Path, monkeypatch) -> None:
    """The page from committed cells: the main table, one verdict per point and measure, the controlled change
    (paired against the default setting), the cells left."""
    realistic = realistic_pipeline()
    monkeypatch.setattr(runner, "run_pipeline", realistic)
    s = load_study(repo / "study.yaml", repo)
    run(s, max_cells=4)
    text = write_page(s).read_text()
    assert (repo / "out.md").is_file() and (repo / "out/report.md").is_file()
    assert "from the 4 of 8 cells done" in text and "[out/report.md](out/report.md)" in text
    assert "![Accuracy vs measured speedup, `m`](out/report/m_accuracy_speedup.png)" in text
    assert (repo / "out/report/m_accuracy_speedup.png").is_file()
    main = text.split("## Main comparison (`m`)")[1].split("\n## ")[0]
    assert "| SPRINT | 1.2× | 1 | 1.150 [1.140, 1.160] | 45.00 ± 0.71 |" in main
    assert "- **1.2×, accuracy** (1 seed): SPRINT is best" in main and "(SPRINT 45.00%, next SLEB 43.00%" in main
    assert "- done: `m/sleb/seed0/x1.2`" in text and "- to do: `m/sprint/seed1/x1.2`" in text
    assert re.search(r"What the paired test can detect here .* SPRINT's 2 pair\(s\) .* a difference in mean accuracy of "
                     r"\d+\.\d pp \(range", main), main
    run(s)
    text = write_page(s).read_text()
    control = text.split("## Controlled change: calibration n=96 (`m-cal`)")[1]
    assert "| 1.2× | 0 | default | 2 attn + 0 MLP |" not in control  # the removal list is read as recorded
    assert "| 1.2× | 0 | m-cal | 1 attn + 1 MLP | 1.150 [1.140, 1.160] | 50.00 |" in control
    assert "| +6.00 [+2.00, +11.00] |" in control  # 3 more documents right of 50 in each task, paired
    assert "SPRINT's marks by seed: best in 2" in text
    assert "| SLEB | 1.2× | 0 | m-cal |" in control  # the rival under the changed setting, from the main comparison
    assert re.search(r"- SPRINT − SLEB at 1\.2×, seed 0 \(paired, 95% CI;.*\): under `m-cal`: accuracy \+2\.00 \[.*\] pp "
                     r"\((better|≈)\), perplexity .*; under `default`: accuracy \+0\.00 \[.*\] pp \(≈\)", control), control
    # 22 of 50 right each by default (round(21.5)); the reading of each difference, then in words
    assert "So SPRINT is not separable in accuracy from SLEB in the default setting" in control
    short = text.split("## In short")[1].split("\n## ")[0]  # the answer first, from the same tests
    assert ("- **The paper's claim, SPRINT the most accurate at every speedup, holds here**: SPRINT has the best mean "
            "accuracy at 1 of 1 targets and the lowest WikiText-2 perplexity at 1 of 1;") in short
    assert "- SPRINT's perplexity among the methods at its targets: at 1.2× (2 seeds), best, every other method worse" in short
    assert ("- Under `m-cal` (calibration n=96, one change): SPRINT is not separable in accuracy from SLEB in the "
            "default setting and") in short
    assert re.search(r"- Under `m-cal` \(calibration n=96, one change\), SPRINT against itself .*: accuracy \+6\.00 "
                     r"\[\+2\.00, \+11\.00\] pp \(better\), perplexity", short), short


def test_a_verdict_split_by_seeds_says_so(repo: Path, monkeypatch) -> None:
    """SPRINT far worse than SLEB on one calibration seed and better on the other: the page must not call the point
    'worse' outright, but count the seeds, and test the seeds pooled."""
    monkeypatch.setattr(runner, "run_pipeline", realistic_pipeline(
        lambda method, model, seed: -0.10 if (method, seed) == ("sprint", 0) else 0.0))
    s = load_study(repo / "study.yaml", repo)
    run(s, max_cells=6)  # dense; SPRINT, ShortGPT, SLEB at seed 0; SPRINT and SLEB at seed 1
    text = write_page(s).read_text()
    assert ("- **1.2×, accuracy** (2 seeds): SLEB is best by the mean; SPRINT is worse than it in the paired test in 1 "
            "of 2 seeds; over the 2 seeds pooled, SPRINT − SLEB -4.00 [") in text, text
    # per document: 18 and 22 of 50 right (round(17.5), round(22.5)) against SLEB's 22 (round(21.5)): (36 + 44) / 2 - 44
    assert "(SPRINT 40.00%, SLEB 43.00%; SPRINT's marks by seed: best in 1, worse in 1)." in text
    assert ("- **The paper's claim, SPRINT the most accurate at every speedup, is not shown here**: SPRINT has the "
            "best mean accuracy at 0 of 1 targets (the best: SLEB at 1.2×)") in text  # worse in 1 of 2 seeds only
    assert re.search(r"at 1\.2× \(2 seeds\), worse than SLEB in 1 of 2 seeds \(paired\); 2 seeds pooled: SPRINT − SLEB "
                     r"-4\.00 \[.*\] pp \((≈|worse)\)", text)


def test_a_controlled_change_pools_its_seeds(repo: Path, monkeypatch) -> None:
    """SPRINT under the changed setting better than by default on one calibration seed and equal on the other: the
    short answer reads each seed and the seeds pooled (each document's mean over the seeds, paired)."""
    spec = yaml.safe_load((repo / "study.yaml").read_text())
    spec["cells"] = [{"model": "m", "methods": ["dense"]},
                     {"model": "m", "methods": ["sprint", "sleb"], "seeds": [0, 1], "points": ["x1.2"]},
                     {"model": "m-cal", "methods": ["sprint", "sleb"], "seeds": [0, 1], "points": ["x1.2"]}]
    (repo / "study.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setattr(runner, "run_pipeline", realistic_pipeline(
        lambda method, model, seed: 0.05 if (method, model, seed) == ("sprint", "m-cal", 0) else 0.0))
    s = load_study(repo / "study.yaml", repo)
    run(s)
    text = write_page(s).read_text()
    short = text.split("## In short")[1].split("\n## ")[0]
    # 25 and 22 of 50 right per task under the change, 22 and 22 by default: +6 pp, +0 pp, pooled +3 pp
    assert re.search(r"SPRINT against itself in the default setting .*: at 1\.2× \(2 seeds pooled; accuracy by seed: "
                     r"better / ≈\): accuracy \+3\.00 \[\+\d\.\d\d, \+\d\.\d\d\] pp \(better\), perplexity", short), short
    control = text.split("## Controlled change: calibration n=96 (`m-cal`)")[1]
    assert "| +6.00 [+2.00, +11.00] |" in control and "| +0.00 [+0.00, +0.00] |" in control
    assert "2 seeds pooled" in control  # the section says it too
    # SLEB 22 of 50 right per task everywhere (round(21.5)): SPRINT ties it by default, beats it pooled under m-cal
    assert re.search(r"- SPRINT − SLEB at 1\.2×, 2 seeds pooled: under `m-cal`: accuracy \+3\.00 \[.*\] pp \(better\), "
                     r"perplexity .*; under `default`: accuracy \+0\.00 \[\+0\.00, \+0\.00\] pp \(≈\)", control), control
    assert ("- Under `m-cal` (calibration n=96, one change): SPRINT is not separable in accuracy from SLEB in the default "
            "setting and more accurate than it under the change (1.2×, 2 seeds pooled; SPRINT − SLEB: +0.00 [+0.00, "
            "+0.00] pp (≈) by default, +3.00 [") in short


def test_the_page_shows_the_llamacpp_speedup_the_export_stage_measured(repo: Path, monkeypatch) -> None:
    """A model whose export stage ran (llamacpp.json written after its checkpoints): the runner commits the file and
    the page's main table has the llama.cpp speedup of its 1.2x cells beside the measured one; a file older than a
    checkpoint it names (a leftover) is not taken; without one, no column."""
    import os

    from helpers import llamacpp_record

    realistic = realistic_pipeline()

    def with_export(root: Path, config: Path, targets: list[str]) -> None:
        realistic(root, config, targets)
        done = {(p.parts[-3], int(p.parts[-2].removeprefix("seed")), "x1.2") for p in
                (root / "results/m/pruned").glob("*/seed*/x1.2") if p.is_dir()}
        models = {(m, p, s): {"sprint": (1.23, 1.21, 1.25), "shortgpt": (1.21, 1.20, 1.23)}.get(m, (1.2, 1.19, 1.21))
                  for m, s, p in done}
        path = root / "results/m/llamacpp.json"
        path.write_text(json.dumps(llamacpp_record(models, control=(1.004, 0.990, 1.020), model="m")))

    s = load_study(repo / "study.yaml", repo)
    monkeypatch.setattr(runner, "run_pipeline", realistic)
    run(s, max_cells=2)  # dense, SPRINT seed 0: no export
    assert "llama.cpp" not in write_page(s).read_text()

    monkeypatch.setattr(runner, "run_pipeline", with_export)
    run(s, max_cells=1)  # ShortGPT seed 0, exported (SPRINT's checkpoint was freed after its cell: not in the file)
    assert "out/results/m/llamacpp.json" in git(repo, "ls-files", "out")
    text = write_page(s).read_text()
    main = text.split("## Main comparison (`m`)")[1].split("\n## ")[0]
    assert "llama.cpp speedup: the end-to-end (a prompt, then its generation) speedup" in main
    assert "with f16 weights on 1 thread" in main
    header = next(line for line in main.splitlines() if line.startswith("| method"))
    assert "| measured speedup (×) | llama.cpp speedup (×) |" in header
    assert "| ShortGPT | 1.2× | 1 | 1.150 [1.140, 1.160] | 1.210 [1.200, 1.230] |" in main
    assert "| Dense | 1× | 1 | 1.150 [1.140, 1.160] | 1.004 [0.990, 1.020] |" in main

    # a leftover: written before the checkpoint SLEB's cell prunes next, which it names
    def leftover(root: Path, config: Path, targets: list[str]) -> None:
        path = root / "results/m/llamacpp.json"
        record = json.loads(path.read_text())
        record["models"]["dense"]["llamacpp_control"]["f16"]["t1"]["e2e_speedup"]["value"] = 7.0
        record["models"]["results/m/pruned/sleb/seed0/x1.2"] = {**record["models"]["results/m/pruned/shortgpt/seed0/x1.2"],
                                                              "checkpoint": "results/m/pruned/sleb/seed0/x1.2"}
        path.write_text(json.dumps(record))
        os.utime(path, (1_000_000, 1_000_000))
        realistic(root, config, targets)

    monkeypatch.setattr(runner, "run_pipeline", leftover)
    run(s, max_cells=1)  # SLEB seed 0
    committed = json.loads((repo / "out/results/m/llamacpp.json").read_text())
    assert committed["models"]["dense"]["llamacpp_control"]["f16"]["t1"]["e2e_speedup"]["value"] == 1.004

    # an export run after the cells (export_all, the checkpoints pruned again and freed since): the next `study run`
    # commits it before any cell
    (repo / "results/m/llamacpp.json").write_text(json.dumps(llamacpp_record(
        {("shortgpt", "x1.2", 0): (1.21, 1.20, 1.23), ("sleb", "x1.2", 0): (1.2, 1.19, 1.21)}, (1.004, 0.990, 1.020),
        model="m")))
    assert run(s, max_cells=0) == []
    assert "SLEB | 1.2× | 1 | 1.150 [1.140, 1.160] | 1.200 [1.190, 1.210] |" in write_page(s).read_text()
    assert "llama.cpp serving speedups of m" in git(repo, "log", "-1", "--format=%s")


def test_a_controlled_change_is_named_by_what_it_changes() -> None:
    """Every SPRINT setting a model entry may override (PER_MODEL_PRUNE) names its change on the page: a
    tie-break entry once read "the default setting"."""
    from types import SimpleNamespace

    from sprint.study.page import _variant

    models = {"tiebreak": {"source": "embedded", "tie_break": "sensitivity"}, "plain": {"source": "embedded"},
              "authors": {"reference": "current", "distance": "l1"}}
    study = SimpleNamespace(config={"base": {"models": models}})
    assert _variant(study, "tiebreak") == "tie_break sensitivity"
    assert _variant(study, "authors") == "reference current; distance l1"
    assert _variant(study, "plain") == "the default setting"
