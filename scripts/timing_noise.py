"""How noisy is latency timing on this machine?  The dense model against a second copy of itself, by the latency
protocol, for each timing mode and thread count: the per-round ratio's standard deviation, the Hodges-Lehmann ratio and its
95% CI.  What params.yaml's choice of `timing: step, threads: 1` for the CPU default rests on
(docs/latency-protocol.md).

    python scripts/timing_noise.py --model data/models/smollm2-135m --rounds 12
"""

from __future__ import annotations

import argparse
import statistics
import time

from sprint.measure.protocol import Protocol

from sprint.measure.speedup import measure_speedup
from sprint.model.loading import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="data/models/smollm2-135m")
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--gen-len", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--timings", nargs="+", default=["generate", "step"])
    args = parser.parse_args()
    first, _ = load_model(args.model, device="cpu", dtype="float32")
    second, _ = load_model(args.model, device="cpu", dtype="float32")
    print("| timing | threads | rounds | ratio sd | speedup (Hodges-Lehmann) [95% CI] | seconds |")
    print("|---|---|---|---|---|---|")
    for timing in args.timings:
        for threads in args.threads:
            proto = Protocol(prompt_len=args.prompt_len, gen_len=args.gen_len, timing=timing, threads=threads,
                             min_rounds=args.rounds, max_rounds=args.rounds, max_spread=0.99)
            t0 = time.perf_counter()
            r = measure_speedup(lambda: first, lambda: second, proto, desc=f"{timing}/{threads}")
            print(f"| {timing} | {threads} | {r['rounds']} | {statistics.stdev(r['ratios']):.3f} | "
                  f"{r['estimate']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] | {time.perf_counter() - t0:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
