# Stage 7 (export.models; off in params.yaml, on in workflow/config/paper.yaml), GGUF export for llama.cpp: one
# job per model writes the dense model and every sublayer method's checkpoint at export.targets as GGUFs of
# llama.cpp's deci architecture at each export.outtypes, checks each against the checkpoint in PyTorch, and times
# llama.cpp's prompt-processing and decode speedups over the dense GGUF (a second copy of it as the control) in
# interleaved rounds at each export.threads (sprint export; sprint.export; docs/export.md).  Runs alone (all local
# cores), like the other timed stages.  The report (rule all's target) takes each llamacpp.json as an input, for its
# "llama.cpp speedup" column, so a model listed in export.models is exported by the default target too; the target
# export_all runs the export alone (with what it needs),
#   snakemake --profile workflow/profiles/slurm --configfile workflow/config/paper.yaml export_all
# and `dvc repro` runs one export stage per model of export.models (dvc.yaml).
# -> results/{model}/llamacpp.json, results/{model}/gguf/

EXPORT = {"models": [], "targets": [1.2], "outtypes": ["f16", "q8_0"], "threads": [1, 2], "prompt_len": 64,
          "gen_len": 16, "rounds": 8, "max_rounds": 30, "max_spread": 0.03, "timing": "step", "check": True,
          **(config.get("export") or {})}
EXPORT_MODELS = list(EXPORT["models"])
EXPORT_POINTS = [f"x{t}" for t in EXPORT["targets"]]
EXPORT_SEEDS = [int(s) for s in EXPORT.get("seeds") or SEEDS]

for _name in EXPORT_MODELS:
    if _name not in MODELS:
        raise WorkflowError(f"invalid configuration at export.models: {_name!r} is not a model of base.models "
                            f"({', '.join(MODELS)})")
for _point in EXPORT_POINTS:
    if _point not in {f"x{t}" for t in TARGET_NAMES}:
        raise WorkflowError(f"invalid configuration at export.targets: {_point[1:]} is not among "
                            f"prune.target_speedups ({', '.join(TARGET_NAMES)})")
for _seed in EXPORT_SEEDS:
    if _seed not in SEEDS:
        raise WorkflowError(f"invalid configuration at export.seeds: {_seed} is not among base.seeds")


def export_checkpoints(model: str) -> list:
    """The sublayer methods' checkpoints the export job of ``model`` takes."""
    return [RESULTS.pruned(model, m, s, p) for m in METHODS for s in EXPORT_SEEDS for p in EXPORT_POINTS]


def export_opts() -> str:
    e = EXPORT
    opts = [f"--outtypes {' '.join(e['outtypes'])}", f"--threads {' '.join(map(str, e['threads']))}",
            f"--prompt-len {e['prompt_len']}", f"--gen-len {e['gen_len']}", f"--rounds {e['rounds']}",
            f"--max-rounds {e['max_rounds']}", f"--max-spread {e['max_spread']}",
            f"--timing {e['timing']}", f"--estimator {config['latency']['estimator']}"]
    if not e["check"]:
        opts.append("--no-check")
    return " ".join(opts + ([MIRROR_OPT] if MIRROR_OPT else []))


rule export:
    input:
        code=stage_files("export"),
        model=model_dir("{model}"),
        pruned=lambda wc: sorted({RESULTS.pruned(wc.model, m, s) for m in METHODS for s in EXPORT_SEEDS}),
        datasets=DATASETS,
    output:
        json=RESULTS.llamacpp("{model}"),
        gguf=directory("results/{model}/gguf"),
    params:
        dense=lambda wc: model_arg(wc.model),
        checkpoints=lambda wc: " ".join(shlex.quote(c) for c in export_checkpoints(wc.model)),
        opts=export_opts(),
        env=lambda wc: model_tag(wc.model),
    threads: ALL_CORES
    resources:
        gpu=0,
        mem_mb=EXPORT.get("mem_mb", 16000),
        runtime=EXPORT.get("runtime", 120),
    log:
        RESULTS.log("export", "{model}"),
    benchmark:
        RESULTS.benchmark("export", "{model}")
    shell:
        "{params.env} sprint export --format gguf --dense-model {params.dense:q} --checkpoints {params.checkpoints}"
        " --gguf-dir {output.gguf:q} {params.opts} --output {output.json:q} > {log:q} 2>&1"


rule export_all:  # snakemake ... all export_all: the pipeline and the export of every model of export.models
    input:
        [RESULTS.llamacpp(m) for m in EXPORT_MODELS],
