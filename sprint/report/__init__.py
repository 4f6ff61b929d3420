"""The report over a results folder: Markdown + CSV tables and PNG figures (paper Figs. 5-7, Table 1).

Every number is averaged over the seeds found (mean ± sample std); with a single seed it carries its own
uncertainty instead (accuracy ± evaluation stderr, perplexity and measured speedup with their 95 % CI).  Methods at
one target are compared with the best by a paired bootstrap over the documents (windows) they all answered
(:mod:`sprint.measure.stats`).  Missing files are listed, never fatal.

    load      the result files of one model -> ModelResults (and the Snakemake benchmark files)
    names     how methods and points are named and ordered
    tables    the measures, aggregation over seeds, the paired tests, numbers with their uncertainty
    figures   the PNG figures
    markdown  the report itself: write_report
"""

from sprint.report.load import ModelResults, load_benchmarks, load_results  # noqa: F401 - the package's interface
from sprint.report.markdown import markdown_table, write_report  # noqa: F401
from sprint.report.names import method_name  # noqa: F401
from sprint.report.tables import MEASURES, aggregate, paired_tests, summary_table  # noqa: F401
