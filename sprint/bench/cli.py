"""The benchmark's command line: ``python -m sprint.bench [options]`` (see :mod:`sprint.bench`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import sprint.bench
from sprint.bench.cases import run_bench
from sprint.bench.render import render_markdown
from sprint.bench.runner import run_jobs
from sprint.errors import SprintError
from sprint.methods import SUBLAYER_METHODS

ONE_SHOT_DEFAULT = "wanda:2of4,sparsegpt:2of4,slicegpt:s25,llm-pruner:c20"

log = logging.getLogger("sprint")

DEFAULTS = dict(model="data/models/smollm2-135m", calibration_n=32, seq_len=256, token_sizes="8x256,16x256,32x256",
                depths="4,8,16", depth_calibration="16x64", calibration_source="wikitext2", prompt_len=64, gen_len=32,
                latency_rounds=8, max_spread=0.03, forward_repeats=3, sprint_repeats=3, max_method_time=1800.0, threads=0)
QUICK = dict(calibration_n=8, seq_len=32, token_sizes="4x32,8x32,16x32", depths="2,3,4", depth_calibration="8x32",
             calibration_source="random", prompt_len=8, gen_len=8, latency_rounds=6, max_spread=0.5,
             forward_repeats=2, sprint_repeats=1, max_method_time=300.0, threads=1)




# -- CLI -------------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sprint.bench", description=sprint.bench.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = DEFAULTS
    p.add_argument("--model", default=None,
                   help=f"HF model folder (default {d['model']}; --quick: a tiny random model)")
    p.add_argument("--output", default="results/bench", help="output folder (default results/bench)")
    p.add_argument("--methods", default=",".join(SUBLAYER_METHODS),
                   help=f"comma-separated sublayer methods (default: all {len(SUBLAYER_METHODS)})")
    p.add_argument("--target", type=float, default=1.3, help="target speedup of every run (default 1.3)")
    p.add_argument("--one-shot", default=ONE_SHOT_DEFAULT,
                   help="one-shot methods at a setting, METHOD:SETTING comma-separated, timed like the others (their "
                        f"speedups are measured by the pipeline's evaluate); '' for none (default {ONE_SHOT_DEFAULT})")
    p.add_argument("--calibration-n", type=int, default=None,
                   help=f"calibration windows (default {d['calibration_n']})")
    p.add_argument("--seq-len", type=int, default=None, help=f"tokens per window (default {d['seq_len']})")
    p.add_argument("--calibration-source", choices=("wikitext2", "random"), default=None,
                   help="WikiText-2 windows (mirror validation split offline) or random ids (default wikitext2)")
    p.add_argument("--mirror", default=None, help="offline data mirror (default $SPRINT_DATA_MIRROR)")
    p.add_argument("--batch-size", type=int, default=8, help="calibration windows per forward batch (default 8)")
    p.add_argument("--token-sizes", default=None, help=f"NxSEQ sizes of the token scaling (default {d['token_sizes']})")
    p.add_argument("--depths", default=None, help=f"tiny-model depths of the depth scaling (default {d['depths']})")
    p.add_argument("--depth-calibration", default=None,
                   help=f"NxSEQ random calibration of the tiny models (default {d['depth_calibration']})")
    p.add_argument("--scaling-methods", default="sprint,blockpruner", help="methods of the scaling runs")
    p.add_argument("--scaling-greedy-steps", type=int, default=0,
                   help="time only the first N greedy steps of sleb / blockpruner token-scaling runs whose size "
                        "differs from item 1's (0 = full runs; default 0); their series is then fitted on the first step")
    p.add_argument("--skip-scaling", action="store_true", help="skip item 3")
    p.add_argument("--skip-latency-check", action="store_true", help="skip item 4")
    p.add_argument("--memory-check", action="store_true", help="item 5: sprint alone at 128x512, peak RSS")
    p.add_argument("--greedy-baseline-time", type=float, default=None,
                   help="time cap of sleb and blockpruner runs (item 1 and scaling; default: --max-method-time)")
    p.add_argument("--baseline-cap-ratio", type=float, default=None,
                   help="stop sleb / blockpruner once their pruning has run this many times sprint's time of the "
                        "same run: enough to show a ratio as a lower bound without waiting for the end")
    p.add_argument("--memory-check-time", type=float, default=None,
                   help="time cap of the memory check's child (default: --max-method-time)")
    p.add_argument("--latency", default=None, help="use this latency.json instead of profiling")
    p.add_argument("--prompt-len", type=int, default=None, help=f"latency profiling prompt (default {d['prompt_len']})")
    p.add_argument("--gen-len", type=int, default=None, help=f"latency profiling new tokens (default {d['gen_len']})")
    p.add_argument("--latency-rounds", type=int, default=None,
                   help=f"interleaved rounds of the profile and of each latency check, at least; the pipeline's "
                        f"protocol (default {d['latency_rounds']})")
    p.add_argument("--max-spread", type=float, default=None,
                   help=f"noise bound of the protocol, 95%% CI half-width / dense time (default {d['max_spread']})")
    p.add_argument("--sprint-repeats", type=int, default=None,
                   help=f"fresh-process runs of sprint in item 1, median reported (default {d['sprint_repeats']})")
    p.add_argument("--forward-repeats", type=int, default=None,
                   help=f"floor forward repeats (default {d['forward_repeats']})")
    p.add_argument("--max-method-time", type=float, default=None,
                   help=f"seconds before a child run is killed, 0 = none (default {d['max_method_time']:g})")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads of the runs on --model and of the latency measurements, 0 = torch's default "
                        "(default 0; --quick: 1); tiny depth-scaling models always run on 1 thread")
    p.add_argument("--device", default="cpu", help="device of every run (default cpu)")
    p.add_argument("--dtype", default="auto", help="dtype of every run (default auto: fp32 on CPU)")
    p.add_argument("--resume", action="store_true", help="reuse finished runs and the latency table in --output")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test; tiny model unless --model)")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: child mode
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            datefmt="%H:%M:%S")
    if args.one:
        return run_jobs(args.one)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if key != "model" and getattr(args, key) is None:
            setattr(args, key, value)
    if args.model is None and not args.quick:
        args.model = DEFAULTS["model"]
    args.argv = argv
    import torch

    threads = torch.get_num_threads()
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        bench = run_bench(args)
    except SprintError as err:
        print(f"sprint.bench: error: {err}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)
    log.info("benchmark written to %s", Path(args.output) / "bench.json")
    print(render_markdown(bench))
    return 0

