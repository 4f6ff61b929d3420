"""The registry of pruning methods and their settings (:class:`PruneConfig`): read by the pruning code, the CLI
(``sprint prune``'s flags and defaults are PruneConfig's fields), the workflow (its rules and configuration check)
and the report.  Importing it loads no pruner and no torch: each entry names its pruner class, imported on use.

Adding a method: write its pruner (a :class:`sprint.methods.base.Pruner` with ``from_config`` and ``allowed``) and add
one entry to :data:`REGISTRY`, or, from another package, point an entry point of group ``sprint.methods`` at a
:class:`Method`; the CLI's ``--method``, the workflow's method wildcard, the configuration check and the report's
names follow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sprint.errors import SprintError
from sprint.layout import (  # noqa: F401 - re-exported
    SETTING_FORMS,
    WEIGHT_PATTERNS,
    point_label,
    point_name,
    setting_options,
)
from sprint.methods.method import Method

# PruneConfig fields every method reads.
COMMON_OPTIONS = ("method", "target_speedup", "seed", "batch_size")
SPRINT_OPTIONS = ("alpha", "beta", "tune_ratio", "ridge", "reference", "distance", "tie_break", "store_dtype")
WEIGHT_OPTIONS = ("sparsity", "pattern")
SLICING_OPTIONS = ("slicing",)
STRUCTURED_OPTIONS = ("structured_ratio", "importance")


KINDS = {
    "sublayer": "removes whole attention / MLP sublayers, greedily, until the latency table's estimate meets each "
                "target speedup (a sprint.methods.base.Pruner)",
    "weights": "zeroes weights inside every decoder linear at --sparsity / --pattern in one shot (dense shapes; no "
               "speedup target: its speed is measured; a sprint.methods.layerwise.WeightPruner)",
    "slicing": "rotates the residual stream and deletes --slicing of its width in one shot (smaller shapes; no "
               "speedup target: its speed is measured)",
    "structured": "removes --structured-ratio of the query heads and MLP channels of the middle layers in one shot "
                  "(smaller shapes; no speedup target: its speed is measured)",
}
ONE_SHOT = ("weights", "slicing", "structured")  # kinds pruned once at a setting, with no target speedup


REGISTRY: dict[str, Method] = {m.name: m for m in (
    Method("sprint", "SPRINT", "sprint.methods.sprint:SprintPruner",
           "latency-aware importance of tunability-aware sensitivities (Park et al., IJCAI 2025)",
           {"variant": "sprint"}, SPRINT_OPTIONS),
    Method("sprint-l", "SPRINT-l", "sprint.methods.sprint:SprintPruner",
           "ablation: without latency information (importance = sensitivity)", {"variant": "sprint-l"},
           SPRINT_OPTIONS),
    Method("sprint-t", "SPRINT-t", "sprint.methods.sprint:SprintPruner",
           "ablation: without tunability (untuned sensitivity)", {"variant": "sprint-t"}, SPRINT_OPTIONS),
    Method("sprint-e", "SPRINT-e", "sprint.methods.sprint:SprintPruner",
           "ablation: no activation checkpointing / fast candidate selection", {"variant": "sprint-e"},
           SPRINT_OPTIONS),
    Method("shortgpt", "ShortGPT", "sprint.methods.shortgpt:ShortGPTPruner",
           "layers by block influence, 1 - cos(input, output) (Men et al. 2024)"),
    Method("sleb", "SLEB", "sprint.methods.perplexity_greedy:PerplexityGreedyPruner",
           "greedy layer removal by calibration perplexity (Song et al., ICML 2024)", {"unit": "layer"},
           ("ppl_windows",)),
    Method("blockpruner", "BlockPruner", "sprint.methods.perplexity_greedy:PerplexityGreedyPruner",
           "greedy sublayer removal by calibration perplexity (Zhong et al. 2024)", {"unit": "sublayer"},
           ("ppl_windows",)),
    Method("wanda", "Wanda", "sprint.methods.wanda:WandaPruner",
           "weights by |W|·‖X‖ per output row, unstructured or N:M (Sun et al., ICLR 2024)",
           options=WEIGHT_OPTIONS, kind="weights"),
    Method("sparsegpt", "SparseGPT", "sprint.methods.sparsegpt:SparseGPTPruner",
           "layer-wise OBS reconstruction, unstructured or N:M (Frantar & Alistarh, ICML 2023)",
           options=WEIGHT_OPTIONS, kind="weights"),
    Method("slicegpt", "SliceGPT", "sprint.methods.slicegpt:SliceGPTPruner",
           "PCA rotation of the residual stream, then deletion of its least significant directions (Ashkboos et al., "
           "ICLR 2024)", options=SLICING_OPTIONS, kind="slicing"),
    Method("llm-pruner", "LLM-Pruner", "sprint.methods.llm_pruner:LLMPrunerPruner",
           "query heads and MLP channels by first-order Taylor importance, without LoRA recovery (Ma et al., NeurIPS "
           "2023)", options=STRUCTURED_OPTIONS, kind="structured"),
)}
ENTRY_POINT_GROUP = "sprint.methods"


def _registered_elsewhere() -> list[Method]:
    """Methods other packages register: entry points of group ``sprint.methods``, each naming a :class:`Method`."""
    from importlib.metadata import entry_points

    found = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        entry = point.load()
        if not isinstance(entry, Method):
            raise TypeError(f"entry point {point.name} = {point.value} (group {ENTRY_POINT_GROUP}) is not a "
                            f"sprint.methods.Method but a {type(entry).__name__}")
        if entry.name in REGISTRY:
            raise ValueError(f"entry point {point.name} = {point.value} registers method {entry.name!r} again")
        found.append(entry)
    return found


REGISTRY.update({m.name: m for m in _registered_elsewhere()})
METHODS = tuple(REGISTRY)
SUBLAYER_METHODS = tuple(name for name, m in REGISTRY.items() if m.kind == "sublayer")


def method(name: str) -> Method:
    """The registry entry of ``name``; KeyError naming the known methods otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}: expected one of {', '.join(METHODS)}") from None


def _option(default: Any, help: str, **cli: Any) -> Any:
    """A PruneConfig field with its ``sprint prune`` help (and argparse extras such as ``choices``)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class PruneConfig:
    """Every setting of a pruning run; ``sprint prune`` has one flag per field (``--tune-ratio`` for tune_ratio) with
    the field's default and help, and each method reads the fields its registry entry names."""

    method: str
    target_speedup: float | list[float] | None = None  # required by sublayer methods, refused by weight methods
    seed: int = _option(0, "torch seed set before pruning")
    alpha: int = _option(8, "number of activation checkpoints (SPRINT)")
    beta: int = _option(5, "number of candidates tuned per iteration (SPRINT)")
    tune_ratio: float = _option(1.0, "c: share of down_proj rows tuned (SPRINT)")
    reference: str = _option("dense", "reference activations: the dense model (paper) or the current pruned model "
                             "(authors' code)", choices=("dense", "current"))
    distance: str = _option("frobenius", "sensitivity distance: relative Frobenius (paper Eq. 5) or per-sample "
                            "relative L1 (authors' code)", choices=("frobenius", "l1"))
    ridge: float = _option(0.0, "SPRINT: relative ridge r always added to the tuning's least squares, λ = r·mean(diag G) "
                           "(0: the paper's undamped solve; this project's option, issue 25)")
    tie_break: str = _option("none", "SPRINT: 'none' removes the lowest importance (paper); 'sensitivity' removes the "
                             "less sensitive of the best attention and MLP when the latency table's own uncertainty "
                             "could flip the pick between them (this project's option, issue 25)",
                             choices=("none", "sensitivity"))
    batch_size: int = _option(8, "calibration windows per forward batch")
    store_dtype: str | None = _option(None, "dtype of activation checkpoints and dense reference (default: the "
                                      "model's)", choices=("float32", "float16", "bfloat16"))
    # SLEB / BlockPruner only: score candidates' perplexity on the first N calibration windows (None = all, as in
    # their papers).  A budget option for small machines: their greedy search costs ~S²/2 sublayer passes per step.
    ppl_windows: int | None = _option(None, "sleb/blockpruner: score perplexity on the first N calibration windows "
                                      "(default: all)")
    sparsity: float = _option(0.5, "wanda/sparsegpt: share of the weights of every decoder linear set to zero (an N:M "
                              "pattern fixes it at (M - N) / M)")
    pattern: str = _option("unstructured", "wanda/sparsegpt: 'unstructured' (per output row for wanda, per column "
                           "block for sparsegpt) or N:M, N kept of every M consecutive weights of a row",
                           choices=("unstructured", *WEIGHT_PATTERNS))
    slicing: float = _option(0.25, "slicegpt: share of the hidden width deleted after the rotation (0: the rotation "
                             "alone, which computes the same function)")
    structured_ratio: float = _option(0.2, "llm-pruner: share of the query heads (of every KV group) and of the MLP "
                                      "channels removed in each pruned layer (layers 4 to L-3, as its scripts)")
    importance: str = _option("element", "llm-pruner: first-order Taylor importance per weight summed over a group "
                              "(element) or of the group as a whole (vector)", choices=("element", "vector"))

    @property
    def targets(self) -> list[float]:
        t = self.target_speedup
        return [] if t is None else sorted(t) if isinstance(t, (list, tuple)) else [float(t)]

    def validate(self) -> None:
        if self.method not in METHODS:
            raise SprintError(f"unknown method {self.method!r}: expected one of {', '.join(METHODS)}")
        if method(self.method).kind in ONE_SHOT:
            if self.targets:
                how = {"weights": "--sparsity / --pattern", "slicing": "--slicing",
                       "structured": "--structured-ratio"}[method(self.method).kind]
                raise SprintError(f"{self.method} takes no target speedup: it prunes once at {how}, and its speedup is "
                                  "measured afterwards (sprint evaluate --latency)")
        elif not self.targets:
            raise SprintError(f"{self.method} needs --target-speedup: it removes sublayers until the estimate meets it")
        if not 0.0 < self.sparsity < 1.0:
            raise SprintError(f"sparsity must be in (0, 1), got {self.sparsity}")
        if not 0.0 <= self.slicing < 1.0:
            raise SprintError(f"slicing must be in [0, 1), got {self.slicing}")
        if not 0.0 <= self.structured_ratio < 1.0:
            raise SprintError(f"structured_ratio must be in [0, 1), got {self.structured_ratio}")
        for t in self.targets:
            if not t > 1.0:
                raise SprintError(f"target speedup {t} must be > 1 (it divides the dense latency)")
        if self.ppl_windows is not None and self.ppl_windows < 1:
            raise SprintError(f"ppl_windows must be >= 1 (or unset for all windows), got {self.ppl_windows}")
        for key in ("alpha", "beta", "batch_size"):
            if getattr(self, key) < 1:
                raise SprintError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not 0.0 < self.tune_ratio <= 1.0:
            raise SprintError(f"tune_ratio must be in (0, 1], got {self.tune_ratio}")
        if self.reference not in ("dense", "current"):
            raise SprintError(f"reference must be 'dense' or 'current', got {self.reference!r}")
        if self.distance not in ("frobenius", "l1"):
            raise SprintError(f"distance must be 'frobenius' or 'l1', got {self.distance!r}")
        if not self.ridge >= 0.0:
            raise SprintError(f"ridge must be >= 0, got {self.ridge}")
        if self.tie_break not in ("none", "sensitivity"):
            raise SprintError(f"tie_break must be 'none' or 'sensitivity', got {self.tie_break!r}")

    def as_params(self) -> dict:
        d = asdict(self)
        d["target_speedup"] = ",".join(f"{t:g}" for t in self.targets)
        return d

