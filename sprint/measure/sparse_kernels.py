"""Timing 2:4-sparse checkpoints with sparse kernels where the hardware has them.

Wanda and SparseGPT at 2:4 (``2of4``) leave two zeros in every four consecutive weights of a row, in dense-shaped
checkpoints (no remote code). Dense kernels multiply the zeros: such a model runs at dense speed, and on this
project's CPU it measures about 1.0x. NVIDIA GPUs of compute capability 8.0 or more (A100, H100, H200, ...) have
semi-structured sparse tensor cores, which PyTorch exposes as ``SparseSemiStructuredTensor`` (cuSPARSELt, or
CUTLASS where cuSPARSELt is missing or lacks the dtype). :func:`use_sparse_kernels` swaps every 2:4 linear weight of
a model for that compressed form before it is timed, so the measured speedup is what a user of the GPU gets.

The latency protocol's ``sparse_kernels`` option (:class:`sprint.measure.protocol.Protocol`) decides it: ``auto`` (default)
uses them wherever they run, ``dense`` never (the sparse model timed as stored, as on a CPU). The dense reference
is never converted. Whatever happens is recorded with the measured speedup (``speedup.kernels``), with the reason
when dense kernels were used for a 2:4 model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sprint.errors import SprintError
from sprint.measure.protocol import SPARSE_KERNELS


def is_two_four(weight: torch.Tensor) -> bool:
    """Every group of 4 consecutive weights along a row holds at most 2 non-zeros."""
    if weight.dim() != 2 or weight.shape[1] % 4:
        return False
    return bool(((weight.detach().reshape(-1, 4) != 0).sum(-1) <= 2).all())


def two_four_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """The model's 2:4-sparse linear layers (the output embedding excluded: no pruner of this project sparsifies it)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {name: m for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and m is not head and is_two_four(m.weight)}


def _backend(device: torch.device, dtype: torch.dtype) -> tuple[Any, str | None]:
    """(the SparseSemiStructuredTensor subclass to use, None) or (None, why there is none)."""
    if device.type != "cuda":
        return None, f"PyTorch has 2:4 sparse kernels on CUDA only; this run is on {device.type}"
    if not torch.cuda.is_available():
        return None, "CUDA is not available"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 0):
        return None, f"semi-structured sparse kernels need compute capability 8.0+, this GPU has {major}.{minor}"
    sparse = torch.sparse
    cusparselt = getattr(sparse, "SparseSemiStructuredTensorCUSPARSELT", None)
    cutlass = getattr(sparse, "SparseSemiStructuredTensorCUTLASS", None)
    backends = getattr(torch.backends, "cusparselt", None)
    if cusparselt is not None and backends is not None and backends.is_available() \
            and dtype in cusparselt._DTYPE_SHAPE_CONSTRAINTS:
        return cusparselt, None
    if cutlass is not None and dtype in cutlass._DTYPE_SHAPE_CONSTRAINTS:
        return cutlass, None
    return None, f"no semi-structured sparse kernel for {dtype} in this PyTorch"


def use_sparse_kernels(model: nn.Module, policy: str = "auto") -> dict[str, Any]:
    """Swap ``model``'s 2:4 linear weights for semi-structured sparse tensors where ``policy`` and the hardware allow,
    in place (the model then serves inference only). Returns what was done: ``{"kernels": "dense"}`` for a model
    with no 2:4 linear; else ``kernels`` ("dense" or "semi-structured 2:4 (<backend>)"), ``sparse_linears`` (how
    many were converted), ``dense_linears`` (2:4 linears left dense: shapes the kernel does not take) and, when
    none was converted, ``reason``."""
    if policy not in SPARSE_KERNELS:
        raise SprintError(f"sparse_kernels must be one of {', '.join(SPARSE_KERNELS)}, got {policy!r}")
    linears = two_four_linears(model)
    if not linears:
        return {"kernels": "dense"}
    weight = next(iter(linears.values())).weight
    if policy == "dense":
        backend, reason = None, "sparse_kernels: dense"
    else:
        backend, reason = _backend(weight.device, weight.dtype)
    if backend is None:
        return {"kernels": "dense", "sparse_linears": 0, "dense_linears": len(linears), "reason": reason}
    limits = backend._DTYPE_SHAPE_CONSTRAINTS[weight.dtype]
    converted = 0
    for linear in linears.values():
        rows, cols = linear.weight.shape
        if rows % limits.sparse_min_rows or cols % limits.sparse_min_cols:
            continue
        with torch.no_grad():
            linear.weight = nn.Parameter(backend.from_dense(linear.weight.detach().contiguous()), requires_grad=False)
        converted += 1
    out = {"kernels": f"semi-structured 2:4 ({backend.BACKEND})" if converted else "dense",
           "sparse_linears": converted, "dense_linears": len(linears) - converted}
    if not converted:
        out["reason"] = (f"no 2:4 linear has a shape the {backend.BACKEND} kernel takes (multiples of "
                         f"{limits.sparse_min_rows} x {limits.sparse_min_cols})")
    return out
