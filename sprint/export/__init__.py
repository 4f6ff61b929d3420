"""Export of pruned checkpoints to inference engines: a GGUF file that llama.cpp (its CLI, its server, Ollama,
anything built on it) loads and runs exactly as the PyTorch checkpoint computes.

- :mod:`sprint.export.gguf`: ``export_gguf(checkpoint, out.gguf, outtype)`` writes llama.cpp's ``deci``
  architecture (per-layer head counts and FFN widths, 0 = absent) with gguf-py, tokenizer included, working around
  the two places where llama.cpp's deci graph does not compute what its metadata says (see that module).
- :mod:`sprint.export.vocab`: the checkpoint's tokenizer as GGUF tokenizer metadata.
- :mod:`sprint.export.llamacpp`: running a GGUF with llama.cpp through ``llama-cpp-python`` (a pinned dependency,
  built from source by ``workflow/setup.sh``): greedy continuations and perplexity against the PyTorch
  checkpoint (:func:`~sprint.export.llamacpp.compare`), and the serving speedup, llama.cpp's prompt-processing and
  decode throughput of pruned GGUFs against the dense one in interleaved rounds with 95% CIs
  (:func:`~sprint.export.llamacpp.serving_speedups`).
- :mod:`sprint.export.stage`: the pipeline's export stage, a model's dense and pruned checkpoints exported, checked
  and timed into one JSON document (``results/{model}/llamacpp.json``; fields in docs/export.md).

Only :mod:`sprint.pipeline` imports this package (the ``sprint export`` command and its pipeline stage).
"""
