"""Pruning methods: the registry (:mod:`sprint.methods.registry`, re-exported here, so ``sprint.methods.Method``
and the ``sprint.methods`` entry-point group are the public interface), the pruner base classes, the driver that
prunes a model to checkpoints, SPRINT with its tuning, and each baseline in a module of its own.
Importing the package loads no pruner and no torch."""

from sprint.methods.method import Method  # noqa: F401 - first: a plugin the registry loads imports it from here
from sprint.methods.registry import (  # noqa: F401 - the registry is this package's interface
    COMMON_OPTIONS, ENTRY_POINT_GROUP, KINDS, METHODS, ONE_SHOT, REGISTRY, SETTING_FORMS, SLICING_OPTIONS,
    SPRINT_OPTIONS, STRUCTURED_OPTIONS, SUBLAYER_METHODS, WEIGHT_OPTIONS, WEIGHT_PATTERNS, PruneConfig,
    method, point_label, point_name, setting_options,
)
