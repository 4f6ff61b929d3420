"""How the report names and orders what it shows: methods by their paper names in paper order, points (target
speedups, then one-shot settings) in ascending order."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from sprint.methods import ONE_SHOT, REGISTRY

NAMES = {"dense": "Dense", **{m.name: m.label for m in REGISTRY.values()}}  # also the paper order of methods


def method_name(method: str) -> str:
    """The display name of a method (SPRINT, ShortGPT, ..., as in the paper)."""
    return NAMES.get(method, method)


def at_setting(method: str) -> bool:
    """A method pruned once at a setting (the one-shot kinds of sprint.methods) rather than to a target."""
    return method in REGISTRY and REGISTRY[method].kind in ONE_SHOT


def target_of(point: str) -> float:
    """The target speedup of a point (NaN for a one-shot setting)."""
    return float(point[1:]) if point.startswith("x") else math.nan


def target_label(target: float) -> str:
    """A target speedup as shown: 1.2 -> "1.2×"."""
    return f"{target:g}×"


def order_methods(methods: Iterable[str]) -> list[str]:
    """Methods in paper order (dense, SPRINT variants, baselines), unknown ones last by name."""
    rank = list(NAMES)
    return sorted(set(methods), key=lambda m: (rank.index(m) if m in rank else len(rank), m))


def order_points(points: Iterable[str]) -> list[str]:
    """Points in order: target speedups ascending, then weight settings (N:M, then unstructured by sparsity)."""
    return sorted(set(points), key=lambda p: (0, target_of(p), p) if p.startswith("x") else (1, p.startswith("u"),
                                                                                            len(p), p))


def point_header(points: Iterable[str]) -> str:
    """The column that names points: "target", or "target / setting" once weight settings are among them."""
    return "target" if all(p.startswith("x") for p in points) else "target / setting"


def sort_rows(df: pd.DataFrame, keys: tuple[str, ...] = ("method", "point", "seed")) -> pd.DataFrame:
    """Rows sorted by ``keys`` (those present), methods in paper order, points by :func:`order_points`."""
    rank = {"method": {m: i for i, m in enumerate(order_methods(df["method"]))},
            "point": {p: i for i, p in enumerate(order_points(df["point"]))} if "point" in df else {}}
    return df.sort_values([k for k in keys if k in df],
                          key=lambda s: s.map(rank[s.name]) if s.name in rank else s).reset_index(drop=True)
