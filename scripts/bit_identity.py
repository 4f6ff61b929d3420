"""SPRINT's bit-identity and timing reference on a real model (issue 26): prune once, print what must not change.

    .venv/bin/python scripts/bit_identity.py --model data/models/smollm2-135m --calibration cal.pt \
        [--target 1.2] [--output ref.json] [-- extra PruneConfig settings as key=value]

Prunes ``--model`` (fp32, CPU) with SPRINT to ``--target`` under a fixed hand-written latency table
(dense_s 1.0, t_attn_s 0.008, t_mlp_s 0.02: any table works, this one only has to stay the same), and writes a
JSON with the removal order (layer, kind, tuned layer, importance and sensitivity as exact float hex), a sha256
of the pruned state_dict (every tensor's name, dtype, shape and bytes, in name order), the pruning wall time (model
loading excluded), its CPU time (process time: steadier than wall time on a shared machine) and the process's peak
RSS.  Two runs are bit-identical when ``removed`` and ``sha256`` agree.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import time

import torch

from sprint.data.calibration import load_calibration
from sprint.measure.table import LatencyTable
from sprint.methods.driver import PruneConfig, prune_model
from sprint.model.loading import load_model

TABLE = LatencyTable(device="hand-written", model="any", prompt_len=0, gen_len=0, dense_s=1.0, t_attn_s=0.008,
                     t_mlp_s=0.02)


def state_sha256(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--calibration", required=True)
    p.add_argument("--target", type=float, default=1.2)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--output", default=None)
    p.add_argument("settings", nargs="*", help="PruneConfig overrides, key=value (ints, floats, strings)")
    args = p.parse_args(argv)
    extra = {}
    for kv in args.settings:
        k, v = kv.split("=", 1)
        for cast in (int, float):
            try:
                v = cast(v)
                break
            except ValueError:
                pass
        extra[k] = v
    tokens = load_calibration(args.calibration)
    model, _ = load_model(args.model, device="cpu", dtype=args.dtype)
    cfg = PruneConfig(method="sprint", target_speedup=args.target, **extra)
    t0, c0 = time.perf_counter(), time.process_time()
    pruner = prune_model(model, tokens, TABLE, cfg, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {
        "model": args.model, "calibration": list(tokens.shape), "target": args.target, "settings": extra,
        "removed": [[r.layer, r.kind, r.tuned_layer, float(r.importance).hex(), float(r.sensitivity).hex()]
                    for r in pruner.removed],
        "num_tunings": pruner.num_tunings,
        "sha256": state_sha256(model),
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    text = json.dumps(out, indent=1)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
