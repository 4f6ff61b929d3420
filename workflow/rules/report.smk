# Stage 6, report over the metrics files the DAG made (and their runs' pruning records, latency tables and
# speedups; leftovers of an earlier configuration under results/ stay out): tables (mean ± std over seeds), figures and the Snakemake benchmarks of every
# stage -> results/report.md and results/report/ (CSVs, PNGs)


def all_metrics() -> list:
    dense = [RESULTS.metrics(m, "dense") for m in MODELS]
    pruned = [RESULTS.metrics(m, meth, s, point) for m in MODELS for meth, point in POINTS for s in SEEDS]
    return dense + pruned


rule report:
    input:
        code=stage_files("report"),
        metrics=all_metrics(),
        speedups=[RESULTS.speedup(m) for m in MODELS] if SPEEDUPS == "together" else [],
        pruned=sorted({prune_job_output(m, meth, s, point) for m in MODELS for meth, point in POINTS for s in SEEDS}),
    output:
        md=RESULTS.report,
        folder=directory(report_folder(RESULTS.report)),
    params:
        results=RESULTS.root,
    log:
        RESULTS.log("report"),
    benchmark:
        RESULTS.benchmark("report")
    shell:
        "sprint report --results {params.results:q} --metrics {input.metrics:q} --output {output.md:q} > {log:q} 2>&1"
