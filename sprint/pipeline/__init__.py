"""The pipeline around the library: the ``sprint`` command line (``cli``, its shared flag groups in ``options``,
one function per command in ``commands``), the configuration checks the Snakemake workflow runs before any job
(``config``), MLflow tracking (``tracking``) and which library files each stage runs (``codedeps``, for
Snakemake's and DVC's dependencies)."""
