"""The CLI commands: glue between parsed arguments, the library and MLflow tracking. No algorithm here."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("sprint")


def embedded_model(args: argparse.Namespace) -> None:
    from sprint.model.embedded import convert_embedded

    path = convert_embedded(Path(args.output))
    log.info("embedded SmolLM2-135M written to %s", path)


def datasets(args: argparse.Namespace) -> None:
    from sprint.data.sources import check_source, resolve_mirror, snapshot

    mirror = resolve_mirror(args.mirror)
    check_source(mirror)
    record = snapshot(mirror, args.output)
    log.info("datasets from %s -> %s (%d files)", mirror or "the Hugging Face hub", args.output,
             len(record.get("files", [])))


def calibrate(args: argparse.Namespace) -> None:
    from sprint.data.calibration import build_calibration, save_calibration
    from sprint.model.loading import load_tokenizer
    from sprint.pipeline.tracking import stage_run

    params = {k: getattr(args, k) for k in ("model", "source", "n", "seq_len", "seed")}
    with stage_run("calibrate", params) as run:
        tokenizer = load_tokenizer(args.model)
        tokens, meta = build_calibration(tokenizer, args.source, args.n, args.seq_len, args.seed, args.mirror)
        save_calibration(tokens, args.output, meta)
        run.log_params({"calibration_source": meta.get("source", args.source)})
        run.log_metrics({"calibration_tokens": tokens.numel()})
    log.info("calibration %s: %s windows x %s tokens -> %s", meta.get("source"), *tokens.shape, args.output)


def profile(args: argparse.Namespace) -> None:
    from sprint.measure.profile import profile_latency
    from sprint.measure.protocol import Protocol
    from sprint.measure.table import save_latency
    from sprint.model.loading import load_model
    from sprint.pipeline.options import protocol_settings
    from sprint.pipeline.tracking import stage_run

    if args.table:
        from sprint.measure.table import given_table
        from sprint.model.loading import load_config

        with stage_run("profile", {"model": args.model, "table": args.table}) as run:
            table = given_table(args.table, load_config(args.model).num_hidden_layers)
            save_latency(table, args.output)
            run.log_metrics({"dense_s": table.dense_s, "t_attn_s": table.t_attn_s, "t_mlp_s": table.t_mlp_s})
            run.log_artifact(args.output)
        log.info("latency table %s (given, not measured) -> %s", args.table, args.output)
        return
    protocol = Protocol(prompt_len=args.prompt_len, gen_len=args.gen_len, seed=args.seed, **protocol_settings(args))
    protocol.validate()
    params = {"model": args.model, "fraction": args.fraction, **protocol.to_dict()}
    with stage_run("profile", params) as run:
        model, _ = load_model(args.model, device=args.device, dtype=args.dtype)
        table = profile_latency(model, args.model, protocol, fraction=args.fraction)
        save_latency(table, args.output)
        run.log_metrics({"dense_s": table.dense_s, "t_attn_s": table.t_attn_s, "t_mlp_s": table.t_mlp_s,
                         "rounds": table.extra["rounds"], "attempts": table.extra["attempts"],
                         **{f"spread/{k}": v for k, v in table.extra["spread"].items()}})
        run.log_params({"device_name": table.device})
        run.log_artifact(args.output)


def prune(args: argparse.Namespace) -> None:
    from sprint.methods import ONE_SHOT, method
    from sprint.methods.driver import PruneConfig, one_shot_point, prune_to_checkpoint
    from sprint.pipeline.options import prune_settings
    from sprint.pipeline.tracking import model_name, stage_run

    cfg = PruneConfig(**prune_settings(args))
    params = {"model": model_name(args.model), "model_path": args.model, **cfg.as_params()}
    if method(cfg.method).kind in ONE_SHOT:  # one point per run (a sublayer run writes one per target)
        params["point"] = one_shot_point(cfg)
    from sprint.methods.plan import parse_size

    execution = {"host_memory": parse_size(args.host_memory), "gpu_memory": parse_size(args.gpu_memory),
                 "spill_dir": args.spill_dir, "dense_store": args.dense_store, "offload": args.offload}
    if args.no_resume:
        import shutil

        from sprint.methods.journal import journal_dir

        shutil.rmtree(args.journal or journal_dir(args.output[-1]), ignore_errors=True)
    with stage_run("prune", params) as run:
        records = prune_to_checkpoint(
            model=args.model, calibration=args.calibration, latency=args.latency, config=cfg, output=args.output,
            device=args.device, dtype=args.dtype, execution=execution, journal_path=args.journal,
        )
        keys = ("estimated_speedup", "wall_time_s", "num_tunings", "peak_rss_mb", "sparsity", "sliced_hidden_size")
        for target, record in records.items():
            prefix = f"x{target:g}/" if target is not None else ""
            run.log_metrics({f"{prefix}{k}": record[k] for k in keys if record.get(k) is not None}
                            | {f"{prefix}num_removed": len(record["removed"])})
        for target, out in zip(args.target_speedup or [None], args.output):  # one pruning.json per target, apart
            run.log_artifact(str(Path(out) / "pruning.json"), artifact_path=f"x{target:g}" if target else None)


def plan(args: argparse.Namespace) -> None:
    from sprint.methods import PruneConfig
    from sprint.methods.plan import parse_size, plan_for, save_plan
    from sprint.pipeline.options import prune_settings

    cfg = PruneConfig(**prune_settings(args))
    cfg.validate()
    throughput = args.throughput if args.throughput == "measure" else float(args.throughput)
    result = plan_for(args.model, args.n, args.seq_len, cfg, device=args.device, gpus=args.gpus, dtype=args.dtype,
                      layout=args.layout, offload=args.offload, host_memory=parse_size(args.host_memory),
                      throughput=throughput)
    print(result.table())
    if args.output:
        save_plan(result, args.output)
    result.check(parse_size(args.host_memory), parse_size(args.gpu_memory), parse_size(args.disk_space))


def evaluate(args: argparse.Namespace) -> None:
    from sprint.measure.evaluate import evaluate_to_file, pruning_summary
    from sprint.pipeline.options import protocol_settings
    from sprint.pipeline.tracking import model_name, stage_run

    record = pruning_summary(args.model)
    params = {"model": model_name(args.model), "checkpoint": args.model, "method": record["method"],
              "target_speedup": record["target_speedup"], "point": record["point"], "seed": record["prune_seed"],
              "eval_seed": args.seed,
              **{k: getattr(args, k) for k in ("tasks", "limit", "ppl_seq_len", "ppl_max_windows", "dense_model",
                                               "heldout_ppl")}}
    heldout = [c for c in args.heldout_ppl.split(",") if c and c != "none"]
    with stage_run("evaluate", params) as run:
        metrics = evaluate_to_file(
            model=args.model, output=args.output, tasks=args.tasks.split(","), limit=args.limit, seed=args.seed,
            mirror=args.mirror, ppl_seq_len=args.ppl_seq_len, ppl_max_windows=args.ppl_max_windows,
            batch_size=args.batch_size, latency=args.latency, device=args.device, dtype=args.dtype,
            dense_model=args.dense_model, protocol=protocol_settings(args), heldout=heldout,
        )
        run.log_metrics(mlflow_metrics(metrics))
        run.log_artifact(args.output)


def latency_sweep(args: argparse.Namespace) -> None:
    from sprint.errors import SprintError
    from sprint.measure.latency_sweep import sweep_to_file
    from sprint.measure.protocol import Protocol
    from sprint.pipeline.options import protocol_settings
    from sprint.pipeline.tracking import stage_run

    try:
        fractions = [float(f) for f in args.fractions.split(",") if f]
    except ValueError:
        raise SprintError(f"--fractions: expected comma-separated numbers in (0, 1], got {args.fractions!r}") from None
    protocol = Protocol(prompt_len=args.prompt_len, gen_len=args.gen_len, seed=args.seed, **protocol_settings(args))
    params = {"model": args.model, "fractions": args.fractions, "fraction": args.fraction, "latency": args.latency,
              **protocol.to_dict()}
    with stage_run("latency-sweep", params) as run:
        document = sweep_to_file(args.model, args.output, protocol, args.device, args.dtype, fractions, args.fraction,
                                 args.latency)
        run.log_metrics({f"ratio/{p['kind']}/{p['removed']}": p["ratio"]["value"] for p in document["points"]}
                        | {"dense_s": document["dense_s"]["value"], "rounds": document["rounds"]})
        run.log_artifact(args.output)


def speedup(args: argparse.Namespace) -> None:
    from sprint.measure.speedup import speedups_to_file
    from sprint.pipeline.options import protocol_settings
    from sprint.pipeline.tracking import model_name, stage_run

    params = {"model": model_name(args.dense_model), "checkpoints": len(args.checkpoints),
              **{k: v for k, v in protocol_settings(args).items() if v is not None}}
    with stage_run("speedup", params) as run:
        document = speedups_to_file(args.checkpoints, args.dense_model, args.latency, args.output, device=args.device,
                                    dtype=args.dtype, protocol=protocol_settings(args))
        for name, entry in document["models"].items():
            tag = "dense" if name == "dense" else f"{entry['method']}/{entry['point']}/seed{entry['prune_seed']}"
            run.log_metrics({f"{tag}/{k}": v for k, v in mlflow_metrics(entry).items()})
        run.log_artifact(args.output)


def analyze(args: argparse.Namespace) -> None:
    import json
    from dataclasses import fields

    from sprint.analysis.figures import write_outputs
    from sprint.errors import SprintError

    if args.analysis == "figures":
        path = Path(args.input)
        if not path.is_file():
            raise SprintError(f"analysis result {path} does not exist")
        written = write_outputs(json.loads(path.read_text(encoding="utf-8")), path)
        log.info("redrawn from %s: %s", path, ", ".join(map(str, written)))
        return
    from sprint.data.calibration import load_calibration
    from sprint.data.sources import resolve_mirror
    from sprint.methods import PruneConfig

    settings = {f.name: getattr(args, f.name) for f in fields(PruneConfig) if f.name not in ("method", "target_speedup")}
    output = Path(args.output)
    calibration = load_calibration(args.calibration)
    mirror = resolve_mirror(args.mirror)
    if args.analysis == "latency-draws":
        from sprint.analysis.latency_noise import run_latency_draws

        records = {}
        for item in args.orders_from:
            name, sep, path = item.partition("=")
            if not sep or not path:
                raise SprintError(f"--orders-from {item!r}: expected METHOD=PRUNING_JSON")
            records[name] = path
        result = run_latency_draws(
            args.model, calibration, args.calibration, args.latency, output, target=args.target_speedup,
            k=args.draws, seed=args.draw_seed, methods=tuple(args.methods), records=records,
            include_point=not args.no_point, mirror=mirror, ppl_seq_len=args.eval_seq_len,
            ppl_windows=args.eval_windows, eval_batch_size=args.eval_batch_size, prune_settings=settings)
    elif args.analysis == "tuning-strength":
        from sprint.analysis.tuning_strength import run_tuning_strength

        result = run_tuning_strength(args.model, args.calibration, args.latency, output, settings=args.settings,
                                     target=args.target_speedup, heldout=args.heldout, mirror=mirror,
                                     ppl_seq_len=args.eval_seq_len, ppl_windows=args.eval_windows,
                                     eval_batch_size=args.eval_batch_size, prune_settings=settings)
    else:
        from sprint.analysis.sensitivity import run_sensitivity

        result = run_sensitivity(args.model, calibration, args.calibration, args.latency, output,
                                 steps=tuple(args.steps), wiki_windows=args.wiki_windows,
                                 calibration_windows=args.calibration_windows, mirror=mirror,
                                 untuned=args.untuned, prune_settings=settings)
    written = write_outputs(result, output)
    log.info("analysis %s -> %s, %s", args.analysis, output, ", ".join(map(str, written)))


def mlflow_metrics(metrics: dict) -> dict[str, float]:
    """The numbers of a metrics file worth comparing across runs: the top-level ones, every task's accuracy and
    stderr, the perplexity's CI and the measured speedup's CI and spread."""
    out = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for task, row in (metrics.get("tasks") or {}).items():
        out[f"acc/{task}"] = row["value"]
        if row.get("stderr") is not None:
            out[f"acc_stderr/{task}"] = row["stderr"]
        if row.get("chance") is not None:
            out[f"chance/{task}"] = row["chance"]
        if row.get("majority_rate") is not None:
            out[f"majority/{task}"] = row["majority_rate"]
    for key, ci in metrics.items():  # wikitext2_ppl_ci and each held-out corpus's
        if key.endswith("_ppl_ci") and ci:
            out[f"{key[:-3]}_lo"], out[f"{key[:-3]}_hi"] = ci
    speed = metrics.get("speedup")
    if speed:
        out.update({"measured_speedup_lo": speed["ci95"][0], "measured_speedup_hi": speed["ci95"][1],
                    "speedup_spread": speed["spread"], "speedup_rounds": speed["rounds"]})
    return out


def report(args: argparse.Namespace) -> None:
    from sprint.pipeline.tracking import log_to_stage_run, stage_run
    from sprint.report import write_report
    from sprint.report.load import chance_metrics, llamacpp_metrics

    metrics = None if args.metrics is None else [Path(m) for m in args.metrics]
    llamacpp = None if args.llamacpp is None else [Path(m) for m in args.llamacpp]
    with stage_run("report", {"results": args.results}) as run:
        for path in write_report(Path(args.results), Path(args.output), metrics, llamacpp=llamacpp):
            run.log_artifact(str(path))
        served, evaluated = llamacpp_metrics(Path(args.results), metrics, llamacpp)
        run.log_metrics(chance_metrics(Path(args.results), metrics) | served)
        for tags, values in evaluated:  # beside the measured speedup of each model's evaluate run
            log_to_stage_run("evaluate", tags, values)
    log.info("report written to %s", args.output)


def export(args: argparse.Namespace) -> None:
    from sprint.errors import SprintError
    from sprint.pipeline.tracking import model_name, stage_run

    if args.format != "gguf":
        raise SprintError(f"--format {args.format!r}: expected gguf")
    logging.getLogger("gguf").setLevel(logging.WARNING)  # gguf-py's writer logs every file it opens at INFO
    if args.dense_model is None:  # one checkpoint -> one GGUF
        from sprint.export.gguf import export_gguf

        if len(args.paths) != 2:
            raise SprintError("expected CHECKPOINT OUT.gguf (or --dense-model, --checkpoints, --gguf-dir and --output "
                              "for the serving speedup)")
        checkpoint, out = args.paths
        summary = export_gguf(checkpoint, out, args.outtype)
        print(f"{out}: {summary['bytes'] / 1e6:.1f} MB, {args.outtype}, {len(summary['blocks'])} deci blocks from "
              f"{summary['decoder_layers']} decoder layers ({summary['zero_mlp_blocks']} zero FFN, "
              f"{summary['zero_attn_blocks']} zero attention stand-ins)")
        if args.check:
            from sprint.data.sources import resolve_mirror
            from sprint.export.stage import check_ggufs

            r = check_ggufs(checkpoint, {args.outtype: out}, resolve_mirror(args.mirror))[args.outtype]
            print(f"llama.cpp vs PyTorch: greedy {r['greedy_tokens']} tokens "
                  f"{'match' if r['greedy_match'] else 'differ from step ' + str(r['greedy_first_difference'])}, "
                  f"perplexity {r['ppl_llamacpp']:.4f} vs {r['ppl_torch']:.4f} ({100 * r['ppl_rel_diff']:+.3f}%), "
                  f"max |logit diff| {r['max_abs_logit_diff']:.2e}")
        return
    from sprint.data.sources import resolve_mirror
    from sprint.export.llamacpp import ServingProtocol, speedup_table
    from sprint.export.stage import export_stage, mlflow_metrics as export_metrics

    if args.paths or not (args.gguf_dir and args.output):
        raise SprintError("the serving speedup takes --dense-model, --checkpoints, --gguf-dir and --output (no "
                          "CHECKPOINT OUT.gguf)")
    protocol = ServingProtocol(prompt_len=args.prompt_len, gen_len=args.gen_len, threads=tuple(args.threads),
                               warmup=args.warmup, min_rounds=args.rounds, max_rounds=args.max_rounds,
                               max_spread=args.max_spread, estimator=args.estimator, timing=args.timing)
    params = {"model": model_name(args.dense_model), "checkpoints": len(args.checkpoints),
              "outtypes": ",".join(args.outtypes), **{k: v for k, v in protocol.__dict__.items() if k != "threads"},
              "threads": ",".join(map(str, args.threads))}
    with stage_run("export", params) as run:
        document = export_stage(args.dense_model, args.checkpoints, args.gguf_dir, args.output, args.outtypes,
                                protocol, resolve_mirror(args.mirror), check=not args.no_check)
        run.log_metrics(export_metrics(document))
        run.log_artifact(args.output)
    dense = document["models"]["dense"]
    for outtype in args.outtypes:
        results = {e["label"]: e["llamacpp"][outtype] for e in document["models"].values()}
        sizes = {e["label"]: e["gguf"][outtype]["bytes"] for e in document["models"].values()}
        if dense.get("llamacpp_control"):  # the dense GGUF's second copy: 1 up to noise
            results["dense (copy)"], sizes["dense (copy)"] = dense["llamacpp_control"][outtype], sizes["dense"]
        print(f"\nllama.cpp serving speedup over the dense GGUF, {outtype}:\n{speedup_table(results, sizes, outtype)}")

