"""Analyses of SPRINT's choices (issue 25) — not part of the pruning path.

Nothing here is imported by a pruner, the pipeline's stages or the report; ``sprint analyze <what>`` runs them and
writes JSON and PNG files (docs/analysis.md):

* :mod:`sprint.analysis.latency_noise` — SPRINT's removals and perplexity under each drawn table, against the
  baselines whose order does not depend on the table (item 1); the draws themselves are
  :mod:`sprint.measure.draws` (the table's own uncertainty, which SPRINT's ``tie_break`` reads too);
* :mod:`sprint.analysis.sensitivity` — ζ̃ and ζ of every candidate at a step of SPRINT against the damage its
  removal (with the same tuning) does end to end, measured by brute force (items 2 and 3);
* :mod:`sprint.analysis.rank` — rank statistics (Spearman's ρ with a bootstrap CI; no torch);
* :mod:`sprint.analysis.figures` — the PNGs, drawn with matplotlib from the JSON the analyses write (no torch).
"""
