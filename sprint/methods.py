"""The registry of pruning methods: one entry per method, read by the pruning code, the CLI, the workflow (its rules
and schema check) and the report.  Importing it loads no pruner: each entry names its pruner class, imported on
use, so the CLI and the Snakefile read the names without torch.

Adding a method: write its pruner (a :class:`sprint.pruner.Pruner` with ``from_config`` and ``allowed``) and add
one entry here; the CLI's ``--method``, the workflow's method wildcard, the configuration check and the report's
names follow.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

# PruneConfig fields every method reads.
COMMON_OPTIONS = ("method", "target_speedup", "seed", "batch_size")
SPRINT_OPTIONS = ("alpha", "beta", "tune_ratio", "reference", "distance", "store_dtype")


@dataclass(frozen=True)
class Method:
    name: str  # as the CLI and params.yaml spell it
    label: str  # as the report names it
    pruner: str  # "module:Class" of its Pruner, imported on use
    summary: str
    settings: dict[str, Any] = field(default_factory=dict)  # fixed arguments of the pruner's from_config
    options: tuple[str, ...] = ()  # the PruneConfig fields it reads beyond COMMON_OPTIONS

    def pruner_class(self) -> type:
        module, cls = self.pruner.split(":")
        return getattr(importlib.import_module(module), cls)

    def admissible(self, num_layers: int) -> list[int]:
        """The sublayers (indices 2*layer + {0: attention, 1: MLP}) this method may ever remove."""
        return self.pruner_class().allowed(2 * num_layers, **self.settings)


REGISTRY: dict[str, Method] = {m.name: m for m in (
    Method("sprint", "SPRINT", "sprint.algorithm:SprintPruner",
           "latency-aware importance of tunability-aware sensitivities (Park et al., IJCAI 2025)",
           {"variant": "sprint"}, SPRINT_OPTIONS),
    Method("sprint-l", "SPRINT-l", "sprint.algorithm:SprintPruner",
           "ablation: without latency information (importance = sensitivity)", {"variant": "sprint-l"},
           SPRINT_OPTIONS),
    Method("sprint-t", "SPRINT-t", "sprint.algorithm:SprintPruner",
           "ablation: without tunability (untuned sensitivity)", {"variant": "sprint-t"}, SPRINT_OPTIONS),
    Method("sprint-e", "SPRINT-e", "sprint.algorithm:SprintPruner",
           "ablation: no activation checkpointing / fast candidate selection", {"variant": "sprint-e"},
           SPRINT_OPTIONS),
    Method("shortgpt", "ShortGPT", "sprint.baselines:ShortGPTPruner",
           "layers by block influence, 1 - cos(input, output) (Men et al. 2024)"),
    Method("sleb", "SLEB", "sprint.baselines:PerplexityGreedyPruner",
           "greedy layer removal by calibration perplexity (Song et al., ICML 2024)", {"unit": "layer"},
           ("ppl_windows",)),
    Method("blockpruner", "BlockPruner", "sprint.baselines:PerplexityGreedyPruner",
           "greedy sublayer removal by calibration perplexity (Zhong et al. 2024)", {"unit": "sublayer"},
           ("ppl_windows",)),
)}
METHODS = tuple(REGISTRY)


def method(name: str) -> Method:
    """The registry entry of ``name``; KeyError naming the known methods otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}: expected one of {', '.join(METHODS)}") from None
