"""The pipeline around the library: the ``sprint`` command line and its commands, MLflow tracking, and which
library files each stage runs (``codedeps``, for Snakemake's and DVC's dependencies)."""
