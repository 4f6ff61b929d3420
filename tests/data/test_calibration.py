"""Data sources, calibration files, the latency table and the embedded model (fast unless marked slow)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from sprint.data.calibration import build_calibration, load_calibration, sample_windows, save_calibration
from sprint.data.sources import benchmark_file, detokenize_wikitext, resolve_mirror, wikitext2_text
from sprint.errors import SprintError

MIRROR = Path(os.environ.get("SPRINT_DATA_MIRROR") or Path(__file__).resolve().parents[3] / "shared" / "data")
needs_mirror = pytest.mark.skipif(not (MIRROR / "wikitext2").is_dir(), reason=f"no data mirror at {MIRROR}")


class CharTokenizer:
    """Stand-in tokenizer: one id per character."""

    name_or_path = "chars"

    def __call__(self, text, add_special_tokens=True, verbose=True):
        return {"input_ids": [ord(c) % 128 for c in text]}


# ---------------------------------------------------------------- data


def test_detokenize_wikitext():
    raw = ' = = Life = = \n He was born in 1 @,@ 234 , it \'s 3 @.@ 5 km ( 2 mi ) long and " well @-@ known " . \n'
    assert detokenize_wikitext(raw) == ' == Life ==\nHe was born in 1,234, it\'s 3.5 km (2 mi) long and "well-known".\n'


@needs_mirror
def test_wikitext2_from_mirror_is_detokenized():
    mirror = resolve_mirror(MIRROR)
    text = wikitext2_text("validation", mirror)
    assert "Homarus gammarus" in text and " @-@ " not in text and " @,@ " not in text and " , " not in text
    assert len(wikitext2_text("test", mirror)) > 1_000_000
    with pytest.raises(SprintError, match="validation"):
        wikitext2_text("train", mirror)
    assert benchmark_file("arc_easy", mirror).name == "arc_easy.jsonl"
    with pytest.raises(SprintError, match="no_such_task"):
        benchmark_file("no_such_task", mirror)


def test_resolve_mirror(tmp_path, monkeypatch):
    monkeypatch.delenv("SPRINT_DATA_MIRROR", raising=False)
    assert resolve_mirror(None) is None
    missing = tmp_path / "nowhere"
    with pytest.raises(SprintError, match="nowhere.*--mirror"):
        resolve_mirror(missing)
    monkeypatch.setenv("SPRINT_DATA_MIRROR", str(missing))
    with pytest.raises(SprintError, match=r"nowhere.*\$SPRINT_DATA_MIRROR"):
        resolve_mirror(None)
    monkeypatch.setenv("SPRINT_DATA_MIRROR", str(tmp_path))
    with pytest.raises(SprintError, match="wikitext2"):
        resolve_mirror(None)
    (tmp_path / "wikitext2").mkdir()
    assert resolve_mirror(None) == tmp_path


def test_hub_offline_without_mirror(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SprintError, match="hub is offline"):
        wikitext2_text("test", None)
    with pytest.raises(SprintError, match="split"):
        wikitext2_text("dev", None)


# ---------------------------------------------------------------- calibration


def test_sample_windows_deterministic():
    ids = torch.arange(1000)
    a, b = sample_windows(ids, 8, 16, seed=3), sample_windows(ids, 8, 16, seed=3)
    assert a.shape == (8, 16) and a.dtype == torch.int64 and torch.equal(a, b)
    assert not torch.equal(a, sample_windows(ids, 8, 16, seed=4))
    assert torch.equal(a - a[:, :1], torch.arange(16).expand(8, 16))  # contiguous windows
    assert int(a.max()) < 1000
    with pytest.raises(SprintError, match="tokens"):
        sample_windows(torch.arange(16), 1, 16, seed=0)
    with pytest.raises(SprintError, match="n >= 1"):
        sample_windows(ids, 0, 16, seed=0)


def test_build_calibration_from_text_file(tmp_path):
    src = tmp_path / "corpus.txt"
    src.write_text("lorem ipsum dolor sit amet " * 40)
    tokens, meta = build_calibration(CharTokenizer(), str(src), n=4, seq_len=32, seed=0, mirror=None)
    assert tokens.shape == (4, 32) and meta["source"] == str(src) and meta["seed"] == 0
    with pytest.raises(SprintError, match="missing.txt"):
        build_calibration(CharTokenizer(), str(tmp_path / "missing.txt"), 4, 32, 0, None)


@needs_mirror
def test_build_calibration_offline_mirror():
    tokens, meta = build_calibration(CharTokenizer(), "wikitext2", n=2, seq_len=64, seed=1, mirror=MIRROR)
    assert tokens.shape == (2, 64) and meta["source"] == "wikitext2-valid (offline mirror)"


def test_the_heldout_corpus_is_never_calibrated_on():
    """The held-out perplexity corpus is refused in one line, whatever the mirror."""
    from sprint.data.sources import HELDOUT_CORPORA

    assert HELDOUT_CORPORA == ("hellaswag_gold",)
    for mirror in (None, MIRROR):
        with pytest.raises(SprintError, match=r"^calibration source 'hellaswag_gold' is a held-out perplexity corpus, "
                                              r"never calibrated on \(") as err:
            build_calibration(CharTokenizer(), "hellaswag_gold", n=2, seq_len=8, seed=0, mirror=mirror)
        assert "\n" not in str(err.value)


def test_calibration_roundtrip(tmp_path):
    tokens = sample_windows(torch.arange(500), 3, 20, seed=0)
    path = tmp_path / "calib.pt"
    save_calibration(tokens, path, {"source": "test", "seed": 0})
    assert torch.equal(load_calibration(path), tokens)
    assert isinstance(torch.load(path, weights_only=True), torch.Tensor)  # exactly the tensor
    side = json.loads((tmp_path / "calib.pt.json").read_text())
    assert side == {"source": "test", "seed": 0, "n": 3, "seq_len": 20}


@pytest.mark.parametrize("content", ["missing", "int32", "1d", "short", "garbage", "dict"])
def test_load_calibration_malformed(tmp_path, content):
    path = tmp_path / f"bad_{content}.pt"
    objects = {"int32": torch.zeros(2, 8, dtype=torch.int32), "1d": torch.zeros(8, dtype=torch.long),
               "short": torch.zeros(2, 1, dtype=torch.long), "dict": {"tokens": torch.zeros(2, 8, dtype=torch.long)}}
    if content == "garbage":
        path.write_bytes(b"\x00not a torch file at all")
    elif content in objects:
        torch.save(objects[content], path)
    with pytest.raises(SprintError, match=f"bad_{content}.pt"):
        load_calibration(path)


# ---------------------------------------------------------------- embedded model


@pytest.mark.slow
def test_convert_embedded(tmp_path):
    from transformers import AutoModelForCausalLM

    from sprint.model.embedded import convert_embedded

    out = convert_embedded(tmp_path / "smollm2")
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 30
    assert (out / "SOURCE.md").is_file() and "Apache-2.0" in (out / "SOURCE.md").read_text()
    model = AutoModelForCausalLM.from_pretrained(out)
    assert getattr(model, "hf_quantizer", None) is None and model.config.num_hidden_layers == 30
    assert convert_embedded(out) == out  # idempotent
