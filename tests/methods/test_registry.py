"""The registry of methods (sprint.methods) is the one list the pruning code, CLI, workflow and report read."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sprint.errors import SprintError

from sprint.model.tiny import tiny_model
from sprint.pipeline.cli import build_parser
from sprint.pipeline.options import prune_settings
from sprint.measure.table import LatencyTable
from sprint.methods import METHODS, REGISTRY, method, point_label, point_name, setting_options
from sprint.methods.driver import PruneConfig, build_pruner
from sprint.methods.layerwise import WeightPruner
from sprint.methods.base import Pruner
from sprint.methods.slicegpt import SliceGPTPruner
from sprint.methods.llm_pruner import LLMPrunerPruner
from sprint.model.sublayers import SublayerView

REPO = Path(__file__).resolve().parents[2]


def test_every_entry_builds_its_pruner_from_a_config():
    import torch

    model = tiny_model("llama", layers=4)
    ids = torch.randint(0, model.config.vocab_size, (2, 8))
    table = LatencyTable("cpu", "tiny", 8, 8, dense_s=1.0, t_attn_s=0.01, t_mlp_s=0.02)
    for name, entry in REGISTRY.items():
        cfg = PruneConfig(name, 1.1, ppl_windows=1) if entry.kind == "sublayer" else PruneConfig(name, pattern="2:4")
        pruner = build_pruner(SublayerView(model, batch_size=2), ids, table, cfg, progress=False)
        assert isinstance(pruner, {"sublayer": Pruner, "weights": WeightPruner, "slicing": SliceGPTPruner,
                                   "structured": LLMPrunerPruner}[entry.kind])
        assert isinstance(pruner, entry.pruner_class())
        assert pruner.admissible() == entry.admissible(4), name  # the instance and the registry agree


def test_admissible_sublayers_are_the_papers():
    assert method("sprint").admissible(4) == list(range(7))  # every sublayer but the last MLP
    assert method("sleb").admissible(4) == [2, 3, 4, 5]  # SLEB keeps the first and the last layer
    assert method("blockpruner").admissible(4) == list(range(8)) == method("shortgpt").admissible(4)
    assert method("wanda").admissible(4) == [] == method("sparsegpt").admissible(4)  # weights only
    assert method("slicegpt").admissible(4) == [] == method("llm-pruner").admissible(4)  # shrinks shapes instead
    with pytest.raises(KeyError, match="expected one of sprint"):
        method("magnitude")


def test_weight_methods_take_a_sparsity_not_a_target():
    with pytest.raises(SprintError, match="takes no target speedup"):
        PruneConfig("wanda", 1.2).validate()
    with pytest.raises(SprintError, match="needs --target-speedup"):
        PruneConfig("sprint").validate()
    with pytest.raises(SprintError, match="sparsity"):
        PruneConfig("sparsegpt", sparsity=1.0).validate()


def test_points_name_targets_and_settings_both_ways():
    """A point is what paths, metrics and the report call a pruned model: x1.2, or a one-shot method's setting."""
    assert point_name(1.2) == "x1.2" and point_name(2) == "x2" and point_label("x1.2") == "1.2×"
    for name, setting, kind in (("2of4", {"pattern": "2:4", "sparsity": 0.5}, "weights"),
                                ("4of8", {"pattern": "4:8", "sparsity": 0.5}, "weights"),
                                ("u60", {"pattern": "unstructured", "sparsity": 0.6}, "weights"),
                                ("s25", {"slicing": 0.25}, "slicing"), ("c20", {"structured_ratio": 0.2}, "structured")):
        assert setting_options(name) == setting == setting_options(name, kind) and point_name(**setting) == name
        PruneConfig({"weights": "wanda", "slicing": "slicegpt", "structured": "llm-pruner"}[kind], **setting).validate()
    assert point_label("2of4") == "2:4" and point_label("u60") == "60% unstr." and point_label("s25") == "25% sliced"
    assert point_label("c20") == "20% heads/channels"
    for bad in ("1of4", "3of4", "2:4", "u0", "u100", "s0", "x1.2", "half"):
        with pytest.raises(ValueError, match="expected 2of4 or 4of8"):
            setting_options(bad)
    with pytest.raises(ValueError, match=r"slicing setting 'u50': expected sP"):
        setting_options("u50", "slicing")
    with pytest.raises(ValueError, match=r"weights setting 's25': expected 2of4"):
        setting_options("s25", "weights")


def test_the_cli_and_the_workflow_read_the_registry():
    prune = next(a for a in build_parser()._subparsers._group_actions[0].choices["prune"]._actions
                 if a.dest == "method")
    assert tuple(prune.choices) == METHODS
    schema = yaml.safe_load((REPO / "workflow/schemas/params.schema.yaml").read_text())
    assert "enum" not in schema["properties"]["prune"]["properties"]["methods"]["items"]  # no second list
    assert "from sprint.methods import METHODS" in (REPO / "workflow/rules/common.smk").read_text()


def test_the_prune_flags_are_prune_config_fields():
    """Every PruneConfig field is a `sprint prune` flag with the field's default, and back."""
    args = build_parser().parse_args(["prune", "--model", "m", "--calibration", "c", "--latency", "l", "--method",
                                      "sprint", "--target-speedup", "1.2", "--output", "o"])
    assert PruneConfig(**prune_settings(args)) == PruneConfig("sprint", [1.2])
    args = build_parser().parse_args(["prune", "--model", "m", "--calibration", "c", "--latency", "l", "--method",
                                      "sleb", "--target-speedup", "1.2", "1.4", "--output", "o", "p", "--ppl-windows",
                                      "3", "--tune-ratio", "0.5", "--store-dtype", "bfloat16"])
    assert PruneConfig(**prune_settings(args)) == PruneConfig("sleb", [1.2, 1.4], ppl_windows=3, tune_ratio=0.5,
                                                              store_dtype="bfloat16")
