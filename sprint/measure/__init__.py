"""Measurement: the latency table and the protocol every timing follows, timing itself, the latency profile,
measured speedups, sparse kernels, zero-shot accuracy, perplexity and the statistics behind every CI.
Importing the package loads no torch: each module imports what it uses."""
