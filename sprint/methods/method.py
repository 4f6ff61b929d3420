"""A method's entry in the registry (:class:`Method`): its names, its pruner class (imported on use), its kind and
the settings it reads.  A module of its own so that a plugin registered through the ``sprint.methods`` entry point
can ``from sprint.methods import Method`` while the registry is still loading it."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Method:
    name: str  # as the CLI and params.yaml spell it
    label: str  # as the report names it
    pruner: str  # "module:Class" of its Pruner, imported on use
    summary: str
    settings: dict[str, Any] = field(default_factory=dict)  # fixed arguments of the pruner's from_config
    options: tuple[str, ...] = ()  # the PruneConfig fields it reads beyond COMMON_OPTIONS
    kind: str = "sublayer"  # one of KINDS

    def pruner_class(self) -> type:
        module, cls = self.pruner.split(":")
        return getattr(importlib.import_module(module), cls)

    def admissible(self, num_layers: int) -> list[int]:
        """The sublayers (indices 2*layer + {0: attention, 1: MLP}) this method may ever remove."""
        return self.pruner_class().allowed(2 * num_layers, **self.settings)
