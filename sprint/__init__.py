"""SPRINT: sublayer pruning of decoder LLMs with latency and tunability information (IJCAI 2025).

Library entry points::

    from sprint import load_model, load_pruned, prune_model, PruneConfig, LatencyTable
    model, tok = load_model("HuggingFaceTB/SmolLM2-135M")
    pruner = prune_model(model, calibration_ids, LatencyTable(...), PruneConfig("sprint", 1.4))
    save_pruned(model, tok, "out/", record)          # or the CLI: sprint prune ...
    model, tok = load_pruned("out/")                  # or AutoModelForCausalLM.from_pretrained("out/", trust_remote_code=True)
"""

from sprint.checkpoint import load_pruned, save_pruned
from sprint.latency import LatencyTable, load_latency
from sprint.models import load_model
from sprint.modeling_sprint import set_removed
from sprint.prune import METHODS, PruneConfig, prune_model, prune_to_checkpoint

__all__ = [
    "METHODS", "LatencyTable", "PruneConfig", "load_latency", "load_model", "load_pruned", "prune_model",
    "prune_to_checkpoint", "save_pruned", "set_removed",
]
__version__ = "0.1.0"
