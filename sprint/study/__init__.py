"""A study: many pipeline cells run one after another for hours, each committed as it finishes, so that it survives
the end of a session and a move to a fresh machine.

A study file (YAML) names a pipeline configuration, an output folder in the repository and the cells, in the order
they run::

    config: workflow/config/cpu-study.yaml    # a complete pipeline configuration (snakemake --configfile)
    output: docs/results/smollm2-cpu          # committed: latency tables, metrics, pruning records, stage times
    cells:                                    # each line: model x methods x seeds x points
      - {model: smollm2-135m, methods: [dense]}
      - {model: smollm2-135m, methods: [sprint, shortgpt], seeds: [0], points: [x1.2]}
      - {model: smollm2-135m, methods: [sprint, strongest-baseline], seeds: [1, 2], points: [x1.2]}

A cell is one metrics file of the pipeline (``results/{model}/metrics/{method}/seed{seed}/{point}.json``), and
``snakemake --configfile CONFIG <that file>`` makes it with whatever it needs (model, calibration, pruning).
``strongest-baseline`` is the sublayer baseline with the best mean accuracy (then perplexity) at that point and
seed 0 among the cells already done of the main comparison (the first configured model).

Latency tables are measured once: every model whose ``latency_table`` lies under the output folder and does not
exist yet is profiled first (with a configuration of that model alone, minus that key), and the table is committed; from then on the
pipeline copies it (``sprint profile --table``), so that a fresh machine prunes with the same table: a new profile
on a noisy VM can change what SPRINT removes first.

After each cell its small files are copied under ``output/results/{model}/`` (the layout ``sprint report`` reads)
and committed with ``git commit -- output``, which leaves any other staged or modified file alone.  A cell whose
metrics file is already there is skipped: rerunning the study resumes it, on any machine with the repository.

    python -m sprint.study plan workflow/study/smollm2-cpu.yaml    # the cells, done or to do
    python -m sprint.study run workflow/study/smollm2-cpu.yaml     # run what is left (resumes), committing
    python -m sprint.study page workflow/study/smollm2-cpu.yaml    # docs/results/smollm2-cpu.md from the cells done

Modules: ``spec`` (the study file, its cells and where their files lie), ``runner`` (running the latency tables and
the cells, committing each), ``page`` (the results page and the full report), ``cli`` (the commands above).
"""
