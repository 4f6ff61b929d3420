"""sprint.pipeline.codedeps: each stage's library files are the import closure of its command, read from the source."""

from __future__ import annotations

import shutil

import pytest

import sprint.pipeline.codedeps as codedeps


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    copy = tmp_path / "sprint"
    shutil.copytree(codedeps.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(codedeps, "PACKAGE", copy)
    codedeps._tree.cache_clear()
    yield copy
    codedeps._tree.cache_clear()


def test_closures_follow_imports_transitively():
    prune = codedeps.module_closure("prune")
    assert {"methods.driver", "methods.sprint", "methods.tuning", "model.sublayers", "methods.shortgpt",
            "methods.perplexity_greedy", "methods.base", "data.calibration"} <= set(prune)
    report = codedeps.module_closure("report")
    assert "report" in report and "measure.stats" in report
    assert not {"methods.driver", "methods.sprint", "methods.tuning", "model.modeling_sprint"} & set(report)
    assert not {m for m in report if m.startswith(("model", "data"))}  # the report loads no model and no data
    assert {"__init__", "pipeline.cli", "pipeline.commands"} <= set(report)  # every command runs the entry modules
    assert {"methods", "measure"} <= set(report)  # importing methods.registry runs methods/__init__ first
    assert codedeps.stage_files("evaluate_dense") == codedeps.stage_files("evaluate")


def test_a_new_import_is_picked_up_without_editing_a_list(package_copy):
    assert "measure.latency_sweep" not in codedeps.module_closure("calibrate")
    calibration = package_copy / "data" / "calibration.py"
    calibration.write_text(calibration.read_text() + "\n\ndef _later():\n    from sprint.measure import latency_sweep\n")
    codedeps._tree.cache_clear()  # sources are read once per process
    assert "measure.latency_sweep" in codedeps.module_closure("calibrate")


def test_a_commands_own_imports_count_not_its_neighbours(package_copy):
    commands = package_copy / "pipeline" / "commands.py"
    commands.write_text(commands.read_text().replace(
        "def report(args: argparse.Namespace) -> None:\n",
        "def report(args: argparse.Namespace) -> None:\n    from sprint.methods.tuning import tune_rows  # noqa\n"))
    assert "methods.tuning" in codedeps.module_closure("report")
    assert "methods.tuning" not in codedeps.module_closure("calibrate")


def test_unknown_command_is_an_error():
    with pytest.raises(KeyError, match="no command function"):
        codedeps.module_closure("nope")
