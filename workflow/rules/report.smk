# Stage 6, report over the metrics files the DAG made (and their runs' pruning records, latency tables and
# speedups; leftovers of an earlier configuration under results/ stay out): tables (mean ± std over seeds), figures and the Snakemake benchmarks of every
# stage -> results/report.md and results/report/ (CSVs, PNGs).  With the export stage on (export.models), the llama.cpp
# speedups of those models (results/{model}/llamacpp.json) are inputs too: their "llama.cpp speedup" column; with
# it off (the default) the report's jobs and command are what they were.


def all_metrics() -> list:
    dense = [RESULTS.metrics(m, "dense") for m in MODELS]
    pruned = [RESULTS.metrics(m, meth, s, point) for m in MODELS for meth, point in POINTS for s in SEEDS]
    return dense + pruned


def exported() -> list:
    """The llama.cpp speedup files of the export stage the report reads (none with the stage off)."""
    return [RESULTS.llamacpp(m) for m in MODELS if m in EXPORT_MODELS]


rule report:
    input:
        code=stage_files("report"),
        metrics=all_metrics(),
        speedups=[RESULTS.speedup(m) for m in MODELS] if SPEEDUPS == "together" else [],
        pruned=sorted({prune_job_output(m, meth, s, point) for m in MODELS for meth, point in POINTS for s in SEEDS}),
        llamacpp=lambda wc: exported(),  # export.smk's EXPORT_MODELS: included after this file
    output:
        md=RESULTS.report,
        folder=directory(report_folder(RESULTS.report)),
    params:
        results=RESULTS.root,
        llamacpp=lambda wc, input: f" --llamacpp {' '.join(map(shlex.quote, input.llamacpp))}" if input.llamacpp else "",
    log:
        RESULTS.log("report"),
    benchmark:
        RESULTS.benchmark("report")
    shell:
        "sprint report --results {params.results:q} --metrics {input.metrics:q} --output {output.md:q}{params.llamacpp}"
        " > {log:q} 2>&1"
