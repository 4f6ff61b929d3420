"""The export stage in the pipeline: off by default, planned per model of export.models with the sublayer methods'
checkpoints at export.targets, a DVC stage that runs exactly that Snakemake job, configuration errors that name
the key.  Works on a copy of the workflow files (the user's results/ is never touched)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MIRROR = Path(os.environ.get("SPRINT_DATA_MIRROR", REPO.parent / "shared" / "data"))
pytestmark = pytest.mark.skipif(not (MIRROR / "wikitext2").is_dir(), reason="no offline data mirror")


def _workdir(tmp_path: Path, export: dict | None) -> Path:
    work = tmp_path / "w"
    work.mkdir(parents=True)
    for name in ("Snakefile", "workflow", "params.yaml", "dvc.yaml", ".dvcignore", "sprint"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, work / name)
    params = yaml.safe_load((work / "params.yaml").read_text())
    if export is not None:
        params["export"] = {**params["export"], **export}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return work


def _run(argv: list[str], work: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPRINT_", "MLFLOW_"))}
    env.update(SPRINT_MLFLOW="0", SPRINT_DATA_MIRROR=str(MIRROR),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)


def _snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "snakemake", "--cores", "2", *args], work)


def test_export_is_off_by_default_and_planned_per_model_when_listed(tmp_path):
    work = _workdir(tmp_path, {"models": ["smollm2-135m"], "outtypes": ["q8_0"], "threads": [1]})
    proc = _snakemake(work, "-n", "-p", "all", "export_all")
    assert proc.returncode == 0, proc.stderr[-3000:]
    shell = next(line for line in proc.stdout.splitlines() if "sprint export --format gguf" in line)
    argv = shlex.split(shell.split("sprint export", 1)[1].split(">")[0])
    checkpoints = argv[argv.index("--checkpoints") + 1: argv.index("--gguf-dir")]
    methods = yaml.safe_load((work / "params.yaml").read_text())["prune"]["methods"]
    assert checkpoints == [f"results/smollm2-135m/pruned/{m}/seed0/x1.2" for m in methods]
    assert argv[argv.index("--dense-model") + 1] == "data/models/smollm2-135m"
    assert "--outtypes q8_0 --threads 1" in shell and "--output results/smollm2-135m/llamacpp.json" in shell

    # the DVC stage runs exactly that job: its outputs, its benchmark, the export section as its parameters
    assert _run(["git", "init", "-q"], work).returncode == 0
    assert _run([sys.executable, "-m", "dvc", "init", "-q"], work).returncode == 0
    from dvc.repo import Repo

    with Repo(str(work)) as repo:
        stage = next(st for st in repo.index.stages if st.name == "export@smollm2-135m")
        assert stage.cmd.endswith("--allowed-rules export -- results/smollm2-135m/llamacpp.json")
        assert {o.def_path for o in stage.outs} == {"results/smollm2-135m/llamacpp.json", "results/smollm2-135m/gguf",
                                                   "results/benchmarks/export/smollm2-135m.tsv"}

    # the report takes the file, for its llama.cpp column: the default target exports the listed model
    everything = _snakemake(work, "-n", "-p")
    assert everything.returncode == 0 and "rule export:" in everything.stdout, everything.stderr[-3000:]
    report = next(line for line in everything.stdout.splitlines() if "sprint report" in line)
    assert report.split(">")[0].rstrip().endswith(
        "--output results/report.md --llamacpp results/smollm2-135m/llamacpp.json"), report

    default = _workdir(tmp_path / "default", None)
    plain = _snakemake(default, "-n", "-p", "all", "export_all")
    assert plain.returncode == 0 and "rule export:" not in plain.stdout, plain.stderr[-3000:]
    report = next(line for line in plain.stdout.splitlines() if "sprint report" in line)
    assert "--llamacpp" not in report and "llamacpp.json" not in plain.stdout, report


@pytest.mark.parametrize("export, key", [({"models": ["nosuch"]}, "export.models"),
                                         ({"models": ["smollm2-135m"], "targets": [1.7]}, "export.targets"),
                                         ({"outtypes": ["q4_k"]}, "export.outtypes")])
def test_configuration_errors_name_the_key(tmp_path, export, key):
    proc = _snakemake(_workdir(tmp_path, export), "-n")
    assert proc.returncode != 0 and key in proc.stderr + proc.stdout, (proc.stdout + proc.stderr)[-3000:]
