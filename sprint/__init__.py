"""SPRINT: sublayer pruning of decoder LLMs with latency and tunability information (IJCAI 2025).

Library entry points::

    from sprint import load_model, load_pruned, prune_model, PruneConfig, LatencyTable
    model, tok = load_model("HuggingFaceTB/SmolLM2-135M")
    pruner = prune_model(model, calibration_ids, LatencyTable(...), PruneConfig("sprint", 1.4))
    save_pruned(model, tok, "out/", record)          # or the CLI: sprint prune ...
    model, tok = load_pruned("out/")                  # or AutoModelForCausalLM.from_pretrained("out/", trust_remote_code=True)
"""

import importlib

# Public names, imported on first use (PEP 562): `import sprint.report` need not load the pruners, so each pipeline
# stage depends on the modules it runs only (sprint.pipeline.codedeps).
_EXPORTS = {
    "METHODS": "sprint.methods", "LatencyTable": "sprint.measure.table", "load_latency": "sprint.measure.table",
    "load_model": "sprint.model.loading", "load_pruned": "sprint.model.checkpoint", "save_pruned": "sprint.model.checkpoint",
    "set_removed": "sprint.model.modeling_sprint", "PruneConfig": "sprint.methods", "prune_model": "sprint.methods.driver",
    "prune_to_checkpoint": "sprint.methods.driver",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sprint' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
