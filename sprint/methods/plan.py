"""A plan before the run: peak host memory, peak memory per GPU, local disk and the time of one pruning step, each
by term, from a model's ``config.json`` alone (no weight is loaded), the calibration size, the method and its
options, and the device(s).  ``sprint plan`` prints it; ``sprint prune`` checks it against ``--host-memory`` /
``--gpu-memory`` before it loads anything; :func:`plan_resources` turns it into a Slurm job's resources.

Symbols: T = calibration tokens (n x seq_len), H = hidden width, I = MLP width, L = decoder layers, S = 2L
sublayers, b = bytes per element of the model's dtype, P = parameters, α = checkpoints, β = candidates tuned per
iteration, k = ceil(c·H) rows tuned, B = batch_size·seq_len tokens per chunk.

Host memory terms (bytes; ``layout="bounded"`` is this code's default, ``layout="legacy"`` the code before issue 26):

=================  =======================================================================================
runtime            the Python process with torch and transformers imported (measured: 0.43 GiB on CPU; a CUDA
                   context adds about 1 GiB of host memory)
weights            P·b on the CPU device; 0 when the weights live on GPUs (their load peak is ``load``);
                   ``offload`` (:mod:`sprint.model.offload`): "memory" keeps the decoder layers in host memory
                   (L·layer·b; on the CPU plus the copy of the resident sublayer), "file" holds only what is
                   resident (one MLP sublayer, 3·H·I·b; one decoder layer for the weight methods), read from the
                   safetensors, plus on the CPU the mapped pages of the head when a method reads it (V·H·b:
                   SLEB, BlockPruner); the embeddings' mapped pages are the calibration tokens' rows only
embeddings         X^(0) = T·H·b: checkpoint 0, always held
checkpoints        (α' − 1)·T·H·b, α' = the number of distinct checkpoint positions; spilled to local disk
                   (not host) when they do not fit the host budget
dense references   L·T·H·b, held for every MLP (legacy: in host memory; bounded: in spill files on local disk,
                   one resident at a time, counted in ``walk``)
walk               the walk's live activations: the current input and output of a sublayer, the pruned paths
                   still pending and the reference read back: 5·T·H·b (legacy: 3·T·H·b, its references alias the
                   walk's tensors during the first walk)
held activations   what the walk saves for later tunings (``sprint.methods.sprint.HELD_BYTES``) when T·H·b fits
gram statistics    float64 (I² + I·H + H)·8 per candidate: β + 1 − f at once (at least 1), f = how many
                   candidates' saved activations fit the held budget (the walk gives the β best candidates
                   beyond it their statistics at once)
tuning             the solve's float64 temporaries: G + λI, its Cholesky factor and cholesky_solve's copy of
                   it, 3·I²·8 (or, tuning c < 1 of the rows, select_rows' 2·H·I·8 if larger), and
                   (H·I + 3·I·k)·8 for the weight copy, right-hand side, solution and G·x
tuned rows         cached tuned rows of output projections: legacy float64 k·I·8 for up to 2L − 1 cached
                   candidates; bounded: model dtype, spilled to local disk, one resident (k·I·b)
=================  =======================================================================================

GPU memory terms (``torch.cuda.max_memory_allocated``; the CUDA context and allocator slack are not in it):
weights (P·b / GPUs; offload: the embeddings, final norm and head plus what is resident: one MLP sublayer, or one
decoder layer for the weight methods; the next one is not prefetched), chunk activations
(the MLP's B·(2I + 4H)·b plus the attention's B·(2H + 4·kv·hd)·b), the Gram statistics' fp32 partial products
(I²·4 + I·H·4 + B·(I + H)·4).

Time of one step: the first step is a full walk (every candidate's pruned path, 2L − 1 attention and 3L − 1 MLP
evaluations over T tokens; on a GPU each moves its chunks from host memory and back) and β tunings (statistics over
T tokens, each chunk's partial Gram matrix added into float64 host accumulators, a float64 Cholesky (at its own
throughput) and solve on the host); later steps walk from the checkpoint below the last removal, so they cost less,
by an amount the removal decides.  Time = FLOPs / throughput per kind, the throughputs measured by :func:`benchmark`
on one decoder layer of the model's real shapes (or given).
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sprint.errors import SprintError

GiB = 2**30
RUNTIME_HOST = int(0.43 * GiB)  # python + torch + transformers + sprint imported (measured on this CPU: 445 MB)
CUDA_CONTEXT_HOST = 1 * GiB  # host memory a CUDA context and its libraries add (approximate; not measured here)
HELD_BYTES = 256 * 2**20  # sprint.methods.sprint.HELD_BYTES (kept equal by a test)
BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


# -- sizes ----------------------------------------------------------------------------------------------------------
def parse_size(text: str | int | float | None) -> int | None:
    """'256GiB', '80GB', '512M', '1.5T', a number of bytes -> bytes (GiB/G binary; GB decimal)."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        return int(text)
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgGtT]?)(i?)([bB]?)\s*", str(text))
    if not m:
        raise SprintError(f"memory size {text!r}: expected a number with an optional unit (e.g. 256GiB, 80GB, 48G)")
    value, unit, binary, b = m.groups()
    power = " kmgt".index(unit.lower()) if unit else 0
    base = 1000 if (b and not binary and unit) else 1024
    return int(float(value) * base**power)


def gib(n: float) -> str:
    return f"{n / GiB:.2f} GiB"


# -- shapes ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shapes:
    """What the plan needs of a model: its decoder's shapes and parameter count (from the config alone)."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    params: int  # unique parameters (tied embeddings once)
    layer_params: int  # one decoder layer
    tied: bool
    config_dtype: str | None = None

    @property
    def attn_flops_per_token(self) -> float:
        """Matmul FLOPs of one attention sublayer per token, causal core at mean context seq/2 (see attn_core)."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return 2.0 * self.hidden * (q + 2 * kv) + 2.0 * q * self.hidden

    def attn_core_flops_per_token(self, seq_len: int) -> float:
        return 2.0 * 2 * self.heads * self.head_dim * (seq_len + 1) / 2

    @property
    def mlp_flops_per_token(self) -> float:
        return 6.0 * self.hidden * self.intermediate


def shapes_from_config(config) -> Shapes:
    """Shapes of a transformers config (parameters counted on the meta device: nothing is allocated)."""
    import torch
    from transformers import AutoModelForCausalLM

    from sprint.model.modeling_sprint import adapter_for, decoder_layers

    adapter_for(config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in model.parameters())  # parameters() yields a tied weight once
    layer_params = sum(p.numel() for p in decoder_layers(model)[0].parameters())
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    return Shapes(layers=config.num_hidden_layers, hidden=config.hidden_size, intermediate=config.intermediate_size,
                  heads=heads, kv_heads=getattr(config, "num_key_value_heads", None) or heads, head_dim=head_dim,
                  vocab=config.vocab_size, params=params, layer_params=layer_params,
                  tied=bool(getattr(config, "tie_word_embeddings", False)),
                  config_dtype=str(dtype).replace("torch.", "") if dtype is not None else None)


def load_model_config(name: str):
    """A model's config from a local folder or a hub id (only config.json is fetched)."""
    from sprint.model.loading import load_config

    return load_config(name)


# -- throughput -----------------------------------------------------------------------------------------------------
@dataclass
class Throughput:
    """FLOP/s per kind of work: attention and MLP sublayers and Gram statistics on the execution device (in the
    model's dtype; statistics in fp32), the float64 solve on the host (``factor``: its Cholesky factorisation, timed
    apart because its throughput grows with the width; default: as ``solve``); ``source``: measured or given."""

    attn: float
    mlp: float
    stats: float
    solve: float
    device: str = "given"
    source: str = "given"
    accumulate: float = 2e9  # elements/s: a chunk's fp32 Gram partials added into the float64 host accumulators
    score: float | None = None  # FLOP/s of scoring a candidate at its MLP (MLP FLOPs; default: as ``mlp``)
    transfer: float = math.inf  # bytes/s between host and device (inf on the CPU: nothing moves)
    read: float = 1e9  # bytes/s reading decoder-layer tensors from a safetensors file (offload "file"; given:
    # the page cache or a local disk; scripts/offload_rss.py measured 0.8 and 1.3 GB/s on this machine)
    factor: float | None = None  # FLOP/s of the float64 Cholesky factorisation alone (default: as ``solve``)

    @property
    def factor_rate(self) -> float:
        return self.factor if self.factor is not None else self.solve

    @classmethod
    def given(cls, flops: float, solve: float | None = None, device: str = "given",
              transfer: float | None = None) -> "Throughput":
        return cls(flops, flops, flops, solve if solve is not None else 2e11, device, "given",
                   transfer=transfer if transfer is not None else (math.inf if device == "cpu" else 2e10))


def benchmark(shapes: Shapes, seq_len: int, batch_size: int = 8, device: str = "cpu", dtype: str = "float32",
              tokens: int | None = None, repeats: int = 2, layer: dict | None = None, clock: str = "wall") -> Throughput:
    """Measure the throughputs on one random decoder layer of the model's real shapes (a few seconds).

    ``clock="cpu"`` (CPU only) times in the process's CPU seconds instead of wall seconds: the plan's step time is
    then CPU seconds too, which a machine shared with other jobs does not stretch (the check of the FLOP model on
    such a machine: scripts/plan_check.py --clock cpu).

    The attention and MLP sublayers run on one chunk of ``tokens`` (default: one window of seq_len, at most a
    chunk) and are timed after a warm-up; the Gram statistics' fp32 matmul on the same rows at width min(I, 4096)
    and the float64 Cholesky + solve at width min(I, 2048) are scaled by their FLOPs.  The factorisation alone is
    timed once more at min(I, :data:`FACTOR_WIDTH`): its throughput grows with the width and a 2048 stand-in put the
    Llama-3-8B-shaped step 15% under its measurement (one thread of this machine's CPU: 26, 38, 44 and 47 GFLOP/s at
    2048, 4096, 8192 and 14336, flat from ~8192 on; docs/memory.md).  ``layer``: time these
    modules ({"attn", "mlp", "norm", "norm2", "rope"}: a loaded model's first decoder layer) instead of a new one.
    """
    import torch

    from sprint.methods.tuning import gram

    torch_dtype = getattr(torch, dtype)
    dev = torch.device(device)
    layer = layer or _one_layer(shapes, torch_dtype, dev)
    windows = max(1, min(batch_size, (tokens or seq_len) // seq_len))
    x = torch.randn(windows, seq_len, shapes.hidden, dtype=torch_dtype, device=dev) * 0.1
    T = windows * seq_len
    pos = torch.arange(seq_len, device=dev)[None].expand(windows, -1)
    rope = layer["rope"](x, pos)

    out = torch.empty_like(x)

    def attn():  # SublayerView.apply: X + f(X) into the output tensor
        out[:] = x + layer["attn"](hidden_states=layer["norm"](x), position_embeddings=rope, attention_mask=None)[0]

    def mlp():
        out[:] = x + layer["mlp"](layer["norm2"](x))

    mlp_module = layer["mlp"]

    def score():  # SprintPruner._score on one chunk: Ẑ, its projection, the error against the reference
        z = mlp_module.act_fn(mlp_module.gate_proj(layer["norm2"](x))) * mlp_module.up_proj(layer["norm2"](x))
        diff = mlp_module.down_proj(z) - (out - x)
        return diff.double().pow(2).sum((0, 1))

    t_attn = _time(attn, dev, repeats, clock)
    t_mlp = _time(mlp, dev, repeats, clock)
    t_score = _time(score, dev, repeats, clock)
    w = min(shapes.intermediate, 4096)
    z = torch.randn(T, w, device=dev)
    t_gram = _time(lambda: gram(z), dev, repeats, clock)
    n = min(shapes.intermediate, 2048)
    a = torch.randn(n + 16, n, dtype=torch.float64)
    g = a.T @ a + n * torch.eye(n, dtype=torch.float64)
    rhs = torch.randn(n, n, dtype=torch.float64)

    def solve():
        f = torch.linalg.cholesky(g)
        x_ = torch.cholesky_solve(rhs, f)
        return g @ x_

    t_solve = _time(solve, torch.device("cpu"), repeats, clock)
    t_factor, nf = _time_factorisation(min(shapes.intermediate, FACTOR_WIDTH), clock)
    acc = torch.zeros(w, w, dtype=torch.float64)
    part = torch.randn(w, w, device=dev)

    def accumulate():
        acc.add_(part.cpu())

    t_acc = _time(accumulate, dev, repeats, clock)
    transfer = math.inf
    if dev.type == "cuda":
        host = torch.randn(T, shapes.hidden).to(torch_dtype)
        t_tr = _time(lambda: host.to(dev).to("cpu"), dev, repeats)
        transfer = 2 * host.numel() * host.element_size() / t_tr
    attn_flops = T * (shapes.attn_flops_per_token + shapes.attn_core_flops_per_token(seq_len))
    return Throughput(
        attn=attn_flops / t_attn, mlp=T * shapes.mlp_flops_per_token / t_mlp,
        score=T * shapes.mlp_flops_per_token / t_score,
        stats=T * 2.0 * w * w * 5 / 8 / t_gram, solve=(n**3 / 3 + 4.0 * n**3) / t_solve, factor=nf**3 / 3 / t_factor,
        device=_device_name(dev), source="measured" if clock == "wall" else "measured (CPU seconds)", accumulate=w * w / t_acc, transfer=transfer,
    )


FACTOR_WIDTH = 8192  # the widest float64 Cholesky the benchmark times (one call: ~4 s on one thread, 1 GiB)


def _time_factorisation(n: int, clock: str = "wall") -> tuple[float, int]:
    """Seconds of one float64 Cholesky factorisation of an n x n positive definite matrix, and n.  Up to n = 2048
    timed as every other operation (:func:`_time`); above, warmed up on a 1024 block and timed once (4 s at 8192 on
    one thread: a warm-up and repeats at full width would triple the benchmark).  The matrix is diagonally dominant
    (built in O(n²), not as a Gram product that would cost more than the factorisation)."""
    import torch

    m = torch.randn(n, n, dtype=torch.float64)
    g = (m + m.T).mul_(0.01)
    g.diagonal().add_(float(n))
    del m
    if n <= 2048:
        return _time(lambda: torch.linalg.cholesky(g), torch.device("cpu"), 2, clock), n
    torch.linalg.cholesky(g[:1024, :1024])  # warm-up: the library's threads and code paths
    now = CLOCKS[clock]
    t0 = now()
    torch.linalg.cholesky(g)
    return now() - t0, n


def _device_name(dev) -> str:
    import torch

    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # benchmark's clock (see benchmark)


MIN_TIMED_S = 0.25  # each timed measurement runs the operation for at least this long (short ones many times)


def _time(fn, dev, repeats: int, clock: str = "wall") -> float:
    """Seconds per call of ``fn``: the best of ``repeats`` measurements, each the mean over as many calls as fill
    :data:`MIN_TIMED_S` (a 30 ms operation timed once moves by 20% with the machine's other work; the steps it
    predicts run it hundreds of times)."""
    import torch

    now = CLOCKS[clock]

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    with torch.inference_mode():
        fn()  # warm-up
        best = math.inf
        for _ in range(repeats):
            sync()
            t0, calls = now(), 0
            while True:
                fn()
                sync()
                calls += 1
                elapsed = now() - t0
                if elapsed >= MIN_TIMED_S:
                    break
            best = min(best, elapsed / calls)
    return best


def _one_layer(shapes: Shapes, dtype, dev) -> dict:
    """One Llama decoder layer of the given shapes with small random weights, and its rotary embedding."""
    import torch
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

    cfg = LlamaConfig(hidden_size=shapes.hidden, intermediate_size=shapes.intermediate,
                      num_attention_heads=shapes.heads, num_key_value_heads=shapes.kv_heads, head_dim=shapes.head_dim,
                      num_hidden_layers=1, vocab_size=8, attn_implementation="sdpa")
    with torch.device(dev):
        layer = LlamaDecoderLayer(cfg, 0).to(dtype)
        rope = LlamaRotaryEmbedding(cfg)
    with torch.no_grad():
        for p in layer.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.02)
    layer.eval()
    return {"attn": layer.self_attn, "mlp": layer.mlp, "norm": layer.input_layernorm,
            "norm2": layer.post_attention_layernorm, "rope": rope}


# -- the plan -------------------------------------------------------------------------------------------------------
@dataclass
class Plan:
    """Peak memory and step time by term.  ``host`` / ``gpu`` / ``disk``: term -> bytes (``gpu`` per GPU);
    ``step_s``: term -> seconds of the first step; the peaks are the sums (terms are counted as if they peaked
    together: an upper bound on the real peak, whose error the validation table reports)."""

    model: str
    tokens: int
    n: int
    seq_len: int
    method: str
    device: str
    gpus: int
    dtype: str
    layout: str
    host: dict[str, int] = field(default_factory=dict)
    gpu: dict[str, int] = field(default_factory=dict)
    disk: dict[str, int] = field(default_factory=dict)
    step_s: dict[str, float] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def host_peak(self) -> int:
        return max(sum(self.host.values()), self.counts.get("load_peak_host", 0))

    @property
    def gpu_peak(self) -> int:
        return sum(self.gpu.values())

    @property
    def disk_total(self) -> int:
        return sum(self.disk.values())

    @property
    def step_time(self) -> float:
        return sum(self.step_s.values())

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(host_peak=self.host_peak, gpu_peak=self.gpu_peak, disk_total=self.disk_total,
                 step_time_s=self.step_time)
        return d

    def check(self, host_memory: int | None = None, gpu_memory: int | None = None,
              disk_space: int | None = None) -> None:
        """Raise a one-line SprintError naming the largest term and the budget when a peak exceeds a budget."""
        for what, total, terms, budget, flag in (
            ("host memory", self.host_peak, self.host, host_memory, "--host-memory"),
            ("GPU memory", self.gpu_peak, self.gpu, gpu_memory, "--gpu-memory"),
            ("local disk", self.disk_total, self.disk, disk_space, "--disk-space"),
        ):
            if budget is not None and total > budget:
                term, size = max(terms.items(), key=lambda kv: kv[1]) if terms else ("total", total)
                per = " per GPU" if what == "GPU memory" else ""
                raise SprintError(
                    f"{self.method} on {self.model} with {self.n}x{self.seq_len} calibration tokens needs "
                    f"{gib(total)} of {what}{per} but {flag} is {gib(budget)}: its largest term is {term} "
                    f"({gib(size)})")

    def table(self) -> str:
        rows = [f"plan: {self.method} on {self.model}, {self.n}x{self.seq_len} tokens, {self.dtype} on {self.device}"
                f" x{self.gpus}, layout {self.layout}"]
        for name, terms, total in (("host", self.host, self.host_peak), (f"gpu (each of {self.gpus})", self.gpu,
                                                                          self.gpu_peak), ("disk", self.disk,
                                                                                           self.disk_total)):
            rows.append(f"  {name}: {gib(total)}")
            rows += [f"    {k:<18} {gib(v):>12}" for k, v in terms.items()]
        rows.append(f"  first step: {self.step_time:.1f} s  ({self.throughput.get('source', '?')} throughput on "
                    f"{self.throughput.get('device', '?')})")
        rows += [f"    {k:<18} {v:>10.2f} s" for k, v in self.step_s.items()]
        rows += [f"  note: {n}" for n in self.notes]
        return "\n".join(rows)


def checkpoint_positions(num_sublayers: int, alpha: int) -> list[int]:
    """sprint.model.sublayers.CheckpointStore's positions (kept equal by a test)."""
    alpha = max(1, min(alpha, num_sublayers))
    return sorted({round(k * num_sublayers / alpha) for k in range(alpha)})


def plan_run(shapes: Shapes, n: int, seq_len: int, cfg, *, device: str = "cpu", gpus: int = 1,
             dtype: str = "float32", layout: str = "bounded", offload: bool = False, host_memory: int | None = None,
             throughput: Throughput | None = None, model: str = "model", max_stats: int | None = None) -> Plan:
    """The plan of pruning a model of ``shapes`` with ``cfg`` (a :class:`sprint.methods.PruneConfig`).

    ``device``: "cpu" (everything in host memory) or "cuda" (weights on ``gpus`` GPUs, activations in host memory,
    as :class:`sprint.model.sublayers.SublayerView` keeps them); ``layout``: "bounded" (dense references, spilled
    checkpoints and tuned rows on local disk) or "legacy" (the code before issue 26, for comparison);
    ``host_memory``: the budget over which checkpoints are spilled to disk (bounded layout).
    """
    from sprint.methods import method as method_entry

    if layout not in ("bounded", "legacy"):
        raise SprintError(f"layout must be 'bounded' or 'legacy', got {layout!r}")
    entry = method_entry(cfg.method)
    on_gpu = device.startswith("cuda")
    if offload in (True, "auto"):
        offload = "memory" if on_gpu else "file"
    if offload not in (False, None, "memory", "file"):
        raise SprintError(f"offload must be memory, file, True or False, got {offload!r}")
    b = BYTES[dtype]
    sb = BYTES[cfg.store_dtype] if getattr(cfg, "store_dtype", None) else b
    L, H, I = shapes.layers, shapes.hidden, shapes.intermediate
    S, T = 2 * L, n * seq_len
    act = T * H * sb  # one activation tensor of the whole calibration set
    p = Plan(model=model, tokens=T, n=n, seq_len=seq_len, method=cfg.method, device=device, gpus=gpus if on_gpu else 0,
             dtype=dtype, layout=layout)
    host, gpu, disk = p.host, p.gpu, p.disk
    weights = shapes.params * b
    layer_bytes = shapes.layer_params * b
    outer_bytes = weights - L * layer_bytes  # embeddings, final norm, head: never offloaded
    mlp_bytes = 3 * H * I * b
    resident = layer_bytes if entry.kind != "sublayer" else mlp_bytes  # the most materialised at once (offload)
    host["runtime"] = RUNTIME_HOST + (CUDA_CONTEXT_HOST if on_gpu else 0)
    if offload == "memory":
        host["weights"] = L * layer_bytes + (0 if on_gpu else outer_bytes + resident)
    elif offload == "file":
        reads_head = entry.kind == "sublayer" and entry.settings.get("unit") in ("layer", "sublayer")
        host["weights"] = resident + (0 if on_gpu else shapes.vocab * H * b * reads_head)
    else:
        host["weights"] = weights if not on_gpu else 0
    # from_pretrained holds the weights in host memory once (the file store never loads them whole)
    p.counts["load_peak_host"] = host["runtime"] + (host["weights"] if offload == "file" else weights)
    if offload:
        p.counts["offload"] = offload
    host["embeddings"] = T * H * b
    variant = entry.settings.get("variant") if entry.kind == "sublayer" else None
    k = max(1, math.ceil(getattr(cfg, "tune_ratio", 1.0) * H))
    chunk = min(cfg.batch_size, n) * seq_len
    if variant is not None:  # SPRINT and its ablations
        _, tunability, exhaustive = {"sprint": (1, 1, 0), "sprint-l": (0, 1, 0), "sprint-t": (1, 0, 0),
                                     "sprint-e": (1, 1, 1)}[variant]
        positions = checkpoint_positions(S, 1 if exhaustive else cfg.alpha)
        ck = (len(positions) - 1) * act
        reference_dense = cfg.reference == "dense"
        dense = L * act if reference_dense else 0
        host["checkpoints"] = ck
        if layout == "legacy":
            host["dense references"] = dense
            host["walk"] = 3 * act
        else:
            disk["dense references"] = dense
            host["walk"] = (5 if reference_dense else 4) * act
        hold_z = T * I * b <= HELD_BYTES
        # the walk saves each scored candidate's pruned input Y (and Ẑ while it fits) up to HELD_BYTES
        host["held activations"] = min(HELD_BYTES, (S - 1) * T * (H + (I if hold_z else 0)) * b) if tunability else 0
        stats_bytes = (I * I + I * H + H) * 8
        # the best candidates keep their activations while they fit; those of the β best beyond get their
        # statistics at once (sprint.methods.sprint.Saved), one more while the ranking changes
        fit = HELD_BYTES // max(1, T * (H + (I if hold_z else 0)) * b)
        if tunability:
            n_stats = 1 if exhaustive else max(1, min(cfg.beta + 1, cfg.beta + 1 - fit))
            if max_stats is not None and not exhaustive and n_stats > max_stats:
                # sprint.methods.sprint._trim_saved holds at most max_stats; the β best beyond them lose their
                # saved activations and are re-walked, tuned, when chosen (no number changes)
                p.counts["re-walks"] = n_stats - max_stats
                p.counts["max_stats"] = n_stats = max_stats
            host["gram statistics"] = n_stats * stats_bytes
            # tune_rows: a float64 copy of W (H·I), then the larger of select_rows' two temporaries (c < 1) and the
            # solve's G + λI with its factor (2·I², when a ridge is needed: always with fewer tokens than I, and
            # possible otherwise, so counted), plus right-hand side, solution and G·x (3·I·k)
            # (measured: cholesky_solve copies the factor, one more I x I while it runs: 3·I²·8 at its peak)
            host["tuning"] = (H * I + max(2 * H * I if k < H else 0, 3 * I * I) + 3 * I * k) * 8
            if layout == "legacy":
                host["tuned rows"] = (S - 1) * k * I * 8
            else:
                host["tuned rows"] = k * I * (8 + b)  # the fresh float64 result and its model-dtype copy
                disk["tuned rows"] = (S - 1) * k * I * b
        p.counts.update(positions=positions, stats_at_once=n_stats if tunability else 0, rows_tuned=k)
        # the first step: a full walk, then β tunings
        n_attn, n_mlp = 2 * L - 1, 3 * L - 1
        tunings = 0 if not tunability else (S - 1 if exhaustive else min(cfg.beta, S - 1))
        p.counts.update(attn_evals=n_attn, mlp_evals=n_mlp, tunings=tunings, scorings=2 * L - 1)
    else:
        host["walk"] = 3 * act
        n_attn, n_mlp, tunings = L, L, 0
        if entry.kind == "sublayer" and entry.settings.get("unit") in ("layer", "sublayer"):
            units = L - 2 if entry.settings["unit"] == "layer" else S
            n_attn = L + units * L // 2  # each unit runs its pruned path to the top: ~L/2 layers on average
            n_mlp = n_attn
            p.notes.append("perplexity-greedy step: each candidate runs to the top and through the LM head")
        p.counts.update(attn_evals=n_attn, mlp_evals=n_mlp, tunings=0)
    if (layout == "bounded" and host_memory is not None and host.get("checkpoints")
            and max(sum(host.values()), p.counts["load_peak_host"]) > host_memory):
        disk["checkpoints"] = host.pop("checkpoints")  # sprint.methods.driver.execution_settings spills them
        p.notes.append("checkpoints spilled to local disk: in host memory they would not fit --host-memory")
    # GPU
    if on_gpu:
        gpu["weights"] = outer_bytes + resident if offload else math.ceil(weights / gpus)
        gpu["chunk activations"] = chunk * (2 * I + 4 * H) * b + chunk * (2 * H + 4 * shapes.kv_heads *
                                                                          shapes.head_dim) * b
        if variant is not None and host.get("gram statistics"):
            gpu["gram partials"] = (I * I + I * H) * 4 + chunk * (I + H) * 4
    else:
        host["chunk activations"] = chunk * (2 * I + 4 * H) * b + chunk * (I + H) * 4
    # time
    tp = throughput or Throughput.given(1e12)
    p.throughput = asdict(tp)
    attn_flops = T * (shapes.attn_flops_per_token + shapes.attn_core_flops_per_token(seq_len))
    p.step_s["attention"] = n_attn * attn_flops / tp.attn
    n_score = p.counts.get("scorings", 0)
    p.step_s["mlp"] = (n_mlp - n_score) * T * shapes.mlp_flops_per_token / tp.mlp
    if n_score:
        p.step_s["scoring"] = n_score * T * shapes.mlp_flops_per_token / (tp.score or tp.mlp)
    if math.isfinite(tp.transfer):  # each evaluation moves its chunks to the device and its result back
        p.step_s["transfers"] = (n_attn + n_mlp) * 2 * T * H * b / tp.transfer
    if offload:
        # each materialisation moves one sublayer's weights: SPRINT's walk once per sublayer (every path evaluated
        # there shares it) plus one MLP per tuning from saved activations and one for the removal's rows; the
        # other methods once per evaluation
        attn_bytes = (shapes.layer_params - 3 * H * I - 2 * H) * b + H * b
        if variant is not None:
            loads_attn, loads_mlp = L, L + p.counts.get("tunings", 0) + 1
        else:
            loads_attn, loads_mlp = n_attn, n_mlp
        moved = loads_attn * attn_bytes + loads_mlp * (mlp_bytes + H * b)
        p.counts.update(weight_loads=loads_attn + loads_mlp, weight_bytes_moved=moved)
        if offload == "file":  # read from the safetensors (page cache or local disk), then to the GPU if any
            p.step_s["weight reads"] = moved / tp.read
        if on_gpu:
            p.step_s["weight transfers"] = moved / tp.transfer
    if p.counts.get("re-walks"):  # each from the checkpoint below its candidate to its MLP: ~S / α' sublayers
        gap = S / max(1, len(p.counts.get("positions", [0])))
        p.step_s["re-walks"] = p.counts["re-walks"] * gap / 2 * (attn_flops / tp.attn + T * shapes.mlp_flops_per_token
                                                                 / tp.mlp)
    if tunings:
        recompute = T * 4.0 * H * I  # gate and up projections again, when the walk did not hold Ẑ
        chunks = math.ceil(n / cfg.batch_size)
        p.step_s["statistics"] = tunings * (T * (2.0 * I * I * 5 / 8 + 2.0 * I * H) / tp.stats + recompute / tp.mlp
                                            + chunks * (I * I + I * H) / tp.accumulate)
        # fewer tokens than I: G is singular, the ridges 1e-9, 1e-6, 1e-3 are tried in turn (at most 3 factorisations)
        attempts = 3 if T < I else 1
        p.step_s["solve"] = tunings * (attempts * I**3 / 3 / tp.factor_rate + 4.0 * I * I * k / tp.solve)
        p.counts["solve_attempts"] = attempts
    return p


def plan_within(shapes: Shapes, n: int, seq_len: int, cfg, *, host_memory: int | None = None, **kwargs) -> Plan:
    """:func:`plan_run`, and when its host peak exceeds ``host_memory``, the same with fewer Gram statistics held at
    once (``max_stats``, down to 1; each one fewer costs a re-walk when its candidate is chosen): the first that
    fits, or the last tried (which :meth:`Plan.check` then refuses).  ``counts["max_stats"]`` says what was chosen."""
    plan = plan_run(shapes, n, seq_len, cfg, host_memory=host_memory, **kwargs)
    held = plan.counts.get("stats_at_once", 0)
    if host_memory is None or plan.host_peak <= host_memory or held <= 1:
        return plan
    for m in range(held - 1, 0, -1):
        plan = plan_run(shapes, n, seq_len, cfg, host_memory=host_memory, max_stats=m, **kwargs)
        if plan.host_peak <= host_memory:
            break
    plan.notes.append(f"Gram statistics held at once cut to {plan.counts['max_stats']} to fit --host-memory "
                      f"({plan.counts['re-walks']} re-walk(s) per step at most)")
    return plan


def plan_for(model: str, n: int, seq_len: int, cfg, *, device: str = "cpu", gpus: int = 1, dtype: str = "auto",
             layout: str = "bounded", offload: bool = False, host_memory: int | None = None,
             throughput: Throughput | str | float | None = "measure") -> Plan:
    """:func:`plan_run` from a model name (local folder or hub id: its config.json only).  ``throughput``: a
    :class:`Throughput`, a FLOP/s number, or "measure" (:func:`benchmark` on ``device``)."""
    config = load_model_config(model)
    shapes = shapes_from_config(config)
    if dtype == "auto":
        dtype = "float32" if device == "cpu" else "bfloat16"
    if throughput == "measure":
        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise SprintError(f"plan for --device {device}: no CUDA device here to measure its throughput on; "
                                  "run the plan on the GPU machine, or give --throughput (FLOP/s, e.g. 4e14)")
        throughput = benchmark(shapes, seq_len, cfg.batch_size, "cuda" if device.startswith("cuda") else "cpu", dtype)
    elif isinstance(throughput, (int, float)):
        throughput = Throughput.given(float(throughput))
    return plan_within(shapes, n, seq_len, cfg, device=device, gpus=gpus, dtype=dtype, layout=layout, offload=offload,
                       host_memory=host_memory, throughput=throughput, model=model)


def steps_to_target(shapes: Shapes, target: float, t_attn_share: float = 0.5) -> int:
    """A rough count of removal steps for a target speedup: the latency to remove, (1 − 1/X) of the dense time,
    over the saving of one sublayer (``t_attn_share``: the share of a layer's time its attention takes)."""
    per_sublayer = 1.0 / (2 * shapes.layers)
    return max(1, math.ceil((1 - 1 / target) / per_sublayer))


def plan_resources(entry: dict, shapes: Shapes | None = None, throughput: float = 1e14, margin: float = 1.25) -> dict:
    """Slurm resources of a prune job from a configuration entry (for the Slurm profile).

    ``entry``: {"model": folder or hub id (or ``shapes``), "n", "seq_len", "method", "target_speedup", "device",
    "gpus", "dtype", and any PruneConfig field}.  Returns {"mem_mb": host peak x margin, "gpus": GPUs asked for
    (more when the weights do not fit one, unless "offload"), "runtime_min": first-step time x steps x margin,
    "disk_mb": local disk, "gpu_mem_mb": per-GPU peak}.  ``throughput``: FLOP/s assumed for the GPU (default
    1e14, a conservative A100 bf16 figure), since a login node cannot measure the compute node's device.
    """
    from sprint.methods import PruneConfig

    fields = set(PruneConfig.__dataclass_fields__)
    cfg = PruneConfig(**{k: v for k, v in entry.items() if k in fields})
    device = entry.get("device", "cuda")
    if shapes is None:
        shapes = shapes_from_config(load_model_config(entry["model"]))
    dtype = entry.get("dtype", "bfloat16" if device != "cpu" else "float32")
    gpus = int(entry.get("gpus", 1)) if device != "cpu" else 0
    plan = plan_run(shapes, entry.get("n", 128), entry.get("seq_len", 2048), cfg, device=device, gpus=max(gpus, 1),
                    dtype=dtype, offload=bool(entry.get("offload")),
                    host_memory=parse_size(entry.get("host_memory")),
                    throughput=Throughput.given(throughput, device="assumed"), model=str(entry.get("model")))
    steps = steps_to_target(shapes, max(cfg.targets or [1.5]))
    return {"mem_mb": math.ceil(plan.host_peak * margin / 2**20), "gpus": gpus,
            "runtime_min": math.ceil(plan.step_time * steps * margin / 60) + 10,
            "disk_mb": math.ceil(plan.disk_total / 2**20), "gpu_mem_mb": math.ceil(plan.gpu_peak / 2**20)}


def save_plan(plan: Plan, path: str | Path) -> None:
    from sprint.io import atomic_write_text

    atomic_write_text(path, json.dumps(plan.to_dict(), indent=1) + "\n")
