"""Benchmark of the pruning methods: wall time, peak memory, the forward-pass floor, scaling, latency-model accuracy.

Usage::

    python -m sprint.bench [--model data/models/smollm2-135m] [--output results/bench] [options]
    python -m sprint.bench --quick --model TINY_FOLDER --methods sprint,blockpruner --output /tmp/bench

Writes ``<output>/bench.json``, ``<output>/bench.md`` (one table per item, with a PASS/FAIL column against the
targets), ``<output>/latency.json`` (the latency table used), per-run results in ``<output>/runs/``, child logs in
``<output>/logs/`` and calibration files / tiny models in ``<output>/work/``.

Items (each method run happens in a fresh ``python -m sprint.bench --one JOBS.json`` child process, so its wall
time and peak RSS belong to it alone; the wall time is ``prune_model`` only, model load timed separately; the peak
RSS is the child's ``ru_maxrss`` from ``os.wait4`` (imports + model load + pruning; ``load_peak_rss_mb`` is the
part reached before pruning starts)):

1. ``methods``: every method (sprint, sprint-l, sprint-t, sprint-e, shortgpt, sleb, blockpruner) pruned to one
   target speedup on one calibration set; ``ratio_to_sprint`` = method time / sprint time of the same run.
   sprint, the denominator of every ratio, is run ``--sprint-repeats`` times (each in a fresh process, as the
   floor's forward is repeated): its time is the median, every sample is in ``wall_time_samples_s``.
   Targets: sprint-e / sprint >= 2.0, blockpruner / sprint >= 15.
2. ``forward_pass_s``: one dense forward over the calibration set through the decoder layers only
   (``SublayerView.embed``, then ``apply`` of every sublayer; median of ``--forward-repeats``);
   ``floor_ratio`` = sprint time / (removed sublayers x forward_pass_s).  Target: <= 1.5.
3. ``scaling``: sprint and blockpruner time against calibration tokens (``--token-sizes`` on the model) and
   against depth (tiny random Llama models of ``--depths`` layers, hidden 32, MLP 64, random calibration
   ``--depth-calibration``, a synthetic uniform latency table: dense 1 s, each sublayer 0.9 / (2L) s, so the same
   target removes the same share of sublayers at every depth); ``exponent_tokens`` / ``exponent_depth`` = the
   least-squares slope of log time against log size.  A run identical to an item-1 run is not repeated.
4. ``speedup_error``: |estimated - measured| / measured speedup of each pruned model of item 1; measured with
   ``measure_generate_latency`` at the latency table's prompt_len / gen_len, dense and pruned models interleaved
   in every round (order rotated per round), measured speedup = median over rounds of dense / pruned.
   Target: <= 10 %.
5. ``--memory-check``: sprint alone on a 128 x 512 calibration set; its child's peak RSS is
   ``sprint_peak_rss_mb_128x512`` (cap ``--memory-check-time``; a capped run reports the peak so far, which
   already holds the dense reference activations and checkpoints once its first step is done).  Target: < 8 GiB.

Items run in the order 1, 2, 4, 5, 3 (the checked targets first, the long scaling runs last); bench.json and
bench.md are rewritten after each, so an interrupted benchmark still leaves the finished items behind.

Time caps: a child running longer than ``--max-method-time`` seconds (``--greedy-baseline-time`` for sleb and
blockpruner, ``--memory-check-time`` for item 5; its whole life: imports, model load and pruning) is stopped
(SIGTERM: it records how far it got; SIGKILL 30 s later); its result is then marked ``timed_out`` with the steps it
completed, its elapsed time (a lower bound of the pruning time, so its ratio to sprint is a lower bound too) and an
extrapolated total (remaining steps >= the fewest removals that can still reach the target, each costing the last
step's time scaled by (live sublayers left / live sublayers now)^2, the cost model of a greedy sweep).
``--baseline-cap-ratio R`` sets the sleb / blockpruner cap from sprint's time in the same run, so that a capped run
has pruned for at least R x sprint's time: ``ratio_to_sprint`` >= R is then shown without running to the end.
When a scaling series holds a timed-out run (or a run stopped by ``--scaling-greedy-steps``: status ``partial``)
its exponent is fitted on the first greedy step's time instead (``basis: first_step``), the same computation at
every size.

The latency table is profiled once at the start (``profile_latency``, ``--prompt-len`` / ``--gen-len`` /
``--latency-repeats``) unless ``--latency FILE`` is given.  ``--quick`` uses tiny sizes for a smoke test (a tiny
random model is created when ``--model`` is not given; random calibration tokens; 1 torch thread; a synthetic
latency table when profiling the tiny model is too noisy; the floor and scaling runs in the parent process, which
saves child start-ups, so only item 1 keeps fresh processes).  ``--resume`` reuses finished runs of an earlier
invocation with the same settings (``runs/*.json``) and its latency table.  bench.json also records the machine,
versions, date, command line and the 1-minute load average around every child (other work on the machine inflates
wall times, and oversubscribed intra-op threads inflate small-op latencies even more).

The benchmark stands outside the library it measures and uses only its public functions (calibration sampling,
``prune_model`` with its per-step callback, the pipeline's latency protocol, :mod:`sprint.model.tiny`).  Modules:
:mod:`~sprint.bench.runner` (child processes, time caps, resume), :mod:`~sprint.bench.cases` (the items),
:mod:`~sprint.bench.render` (bench.md) and :mod:`~sprint.bench.cli` (the command line).
"""
