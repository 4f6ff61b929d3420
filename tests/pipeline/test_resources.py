"""Cluster resources from the plan (sprint.pipeline.resources): sinfo's partitions, the pre-submission check and the
resources of each stage's job for a real (tiny) model's config."""

import pytest

from sprint.errors import SprintError
from sprint.pipeline.resources import Partition, check_fits, job_resources, parse_sinfo

SINFO = """\
gpu*|512000|2-00:00:00|gpu:a100:4(S:0-1)
gpu*|256000|2-00:00:00|gpu:a100:4(S:0-1)
cpu|192000|12:00:00|(null)
debug|64000|30:00|gpu:1
long|1000000|infinite|gpu:h100:8,gpu:a100:2
"""


def test_sinfo_partitions_keep_each_partitions_largest_node():
    parts = {p.name: p for p in parse_sinfo(SINFO)}
    assert parts["gpu"] == Partition("gpu", 512000, 2 * 24 * 60, 4)
    assert parts["cpu"] == Partition("cpu", 192000, 12 * 60, 0)
    assert parts["debug"] == Partition("debug", 64000, 30, 1)
    assert parts["long"] == Partition("long", 1000000, None, 10)


def test_a_job_that_no_partition_fits_fails_in_one_line_naming_each_miss():
    parts = parse_sinfo(SINFO)
    check_fits("the prune job of model 'm'", {"mem_mb": 900000, "runtime": 60, "gpu": 2}, parts)  # 'long' fits
    check_fits("anything", {"mem_mb": 10**9}, [])  # no partitions known: nothing to check
    with pytest.raises(SprintError) as err:
        check_fits("the prune job of model 'llama-3-70b'", {"mem_mb": 600000, "runtime": 4000, "gpu": 4},
                   [Partition("gpu", 512000, 2880, 4), Partition("cpu", 192000, 720, 0)])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("the prune job of model 'llama-3-70b' needs mem_mb=600000")
    assert "gpu: mem_mb 600000 > 512000, runtime 4000 min > 2880" in msg and "cpu: mem_mb 600000 > 192000" in msg


def entry(path, device="cpu", dtype="float32", gpus=0):
    return {"source": str(path), "local": str(path), "device": device, "dtype": dtype, "gpus": gpus,
            "tune_ratio": 1.0, "reference": "dense", "distance": "frobenius",
            "calibration": {"n": 24, "seq_len": 256},
            "latency": {"prompt_len": 64, "gen_len": 16, "max_rounds": 50, "warmup": 1, "attempts": 2}}


CONFIG = {"prune": {"target_speedups": [1.1, 1.2], "alpha": 8, "beta": 5, "batch_size": 8},
          "evaluate": {"limit": 60, "tasks": ["arc_easy", "piqa"], "batch_size": 16, "ppl_seq_len": 256}}


def test_stage_resources_grow_with_the_model_and_the_work(tiny_model_dir):
    small, big = tiny_model_dir("llama", layers=2), tiny_model_dir("mistral", layers=6)
    for stage in ("prune", "profile", "evaluate"):
        a, b = job_resources(stage, entry(small), CONFIG), job_resources(stage, entry(big), CONFIG)
        assert a["gpu"] == 0 and a["runtime"] >= 10 and a["mem_mb"] > 400  # the runtime's 0.43 GiB at least
        assert b["mem_mb"] >= a["mem_mb"], stage
    more = {**CONFIG, "prune": {**CONFIG["prune"], "target_speedups": [1.5]}}
    assert job_resources("prune", entry(small), more)["runtime"] >= job_resources("prune", entry(small), CONFIG)[
        "runtime"]
    gpu = job_resources("prune", entry(small, device="cuda", dtype="bfloat16", gpus=2), CONFIG)
    assert gpu["gpu"] == 2
    assert job_resources("prune", {**entry(small), "source": "no/such-model", "local": None}, CONFIG) is None
    with pytest.raises(SprintError, match="no model of stage 'report'"):
        job_resources("report", entry(small), CONFIG)
