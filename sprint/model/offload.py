"""Weights larger than the device (issue 26): decoder layers executed one sublayer at a time, their weights kept
outside the execution device and materialised on it just before the sublayer runs, then released.

This is SparseGPT's sequential mode applied to the sublayer view: :class:`sprint.model.sublayers.SublayerView`
brackets every evaluation of sublayer ``s`` with ``view.resident(s)`` (a no-op without offload), and SPRINT's walk
holds each sublayer resident for all the paths it evaluates at that position, so a walk moves each sublayer's
weights once, not once per chunk or per candidate path.  Nesting is counted: a sublayer already resident is not
moved again.  The embeddings, the final norm and the LM head are not offloaded (see below).

Two stores (``--offload memory`` / ``--offload file``; ``--offload`` alone: memory on a GPU, file on the CPU):

``memory``   the decoder layers' weights are the model's own tensors in host memory (loaded as usual, on the CPU);
             the embeddings, final norm and head are moved to the execution device.  Materialising copies a
             sublayer's tensors to the device; releasing drops the copy.  On a GPU this bounds the GPU's weights
             to one sublayer (the host holds P·b); on the CPU it saves nothing (the copy is a second copy) and is
             useful only to test the mechanism.
``file``     the model is built on the meta device (no weight allocated); each decoder-layer tensor is read from
             the checkpoint's safetensors file(s) when its sublayer is materialised and freed when it is released.
             The embeddings, final norm and head are memory-mapped (copy-on-write) on the CPU, or read onto the
             GPU: an embedding lookup touches only the pages of the tokens' rows.

Why decoder-layer tensors are *read* (``pread`` of their byte range into fresh memory) rather than memory-mapped:
pages of a mapped file count in the process's RSS (and a Slurm job's cgroup) once touched and stay mapped until
the kernel evicts them, so a walk over every layer would end with the whole model in RSS (the bound this design is
for).  A read copy is anonymous memory that glibc returns to the kernel as soon as it is dropped (large blocks are
their own mappings), so RSS holds one sublayer.  The page cache may keep the file (clean, reclaimable, not RSS);
the next walk's reads then come from memory.  The head and embeddings are mapped instead because SPRINT and
ShortGPT touch only the calibration tokens' embedding rows; the perplexity methods read the whole head each scoring
pass (V·H·b, counted by the plan).  Page faults map whole page-cache folios around the rows touched, so the view
drops the mapped pages after each embedding lookup and head pass (:meth:`Offload.trim`, MADV_DONTNEED).

Weight edits made by pruning (SPRINT's tuned rows of an output projection, Wanda's / SparseGPT's zeros and
reconstructions) are made while their sublayer is resident and ``write=True`` (or a set of parameter names) keeps
them on release: the memory store copies them into the host tensor, the file store into an override store
(:class:`sprint.model.sublayers.SpillStore`: host memory, or spill files on local disk with ``spill_dir``) read in
place of the file from then on.  :meth:`Offload.save` writes a checkpoint without materialising the model: every
tensor is copied byte for byte from the source file, or from its override, one at a time.

Numbers do not change: a materialised tensor holds exactly the bytes the non-offloaded model holds (the same file,
converted to the same dtype with the same ``Tensor.to``), and the code that runs on it is the same, so removal
orders and pruned weights are bit-identical to a run without offload (tests/model/test_offload.py).  Not done: the
next sublayer is not prefetched while the current one runs (on a GPU each move is waited for), and host tensors are
not pinned.
"""

from __future__ import annotations

import contextlib
import json
import math
import mmap
import os
import struct
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

from sprint.errors import SprintError
from sprint.model.modeling_sprint import adapter_for

STORES = ("memory", "file")
SAFE_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
               "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
               "BOOL": torch.bool}
SAFE_NAMES = {v: k for k, v in SAFE_DTYPES.items()}
COPY_BLOCK = 64 * 2**20


def resolve_store(offload: str | bool | None, device: str) -> str | None:
    """``--offload`` value -> store: None / False -> None, True / "auto" -> memory on a GPU, file on the CPU."""
    if offload in (None, False, "", "none"):
        return None
    if offload in (True, "auto"):
        return "file" if str(device) == "cpu" else "memory"
    if offload not in STORES:
        raise SprintError(f"--offload {offload!r}: expected memory, file or no value (auto)")
    return offload


# -- safetensors files, read one tensor at a time -------------------------------------------------------------------
class SafetensorsSource:
    """The tensors of a model folder's safetensors file(s) (one file, or shards with an index): each read whole into
    fresh memory (:meth:`read`), memory-mapped copy-on-write (:meth:`map`) or copied as raw bytes (:meth:`copy`)."""

    def __init__(self, folder: str | os.PathLike):
        folder = Path(folder)
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        elif (folder / "model.safetensors").is_file():
            files = ["model.safetensors"]
        else:
            raise SprintError(f"--offload file: {folder} has no model.safetensors (or index): offloading reads "
                              "safetensors weights; use --offload memory or convert the checkpoint")
        self.entries: dict[str, tuple[Path, torch.dtype, tuple[int, ...], int, int]] = {}
        for name in files:
            path = folder / name
            with open(path, "rb") as fh:
                (size,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(size))
            for key, info in header.items():
                if key == "__metadata__":
                    continue
                begin, end = info["data_offsets"]
                self.entries[key] = (path, SAFE_DTYPES[info["dtype"]], tuple(info["shape"]), 8 + size + begin,
                                     8 + size + end)
        self.bytes_read = 0
        self.maps: list[np.memmap] = []

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def dtype(self, name: str) -> torch.dtype:
        return self.entries[name][1]

    def read(self, name: str) -> torch.Tensor:
        """The tensor in fresh (anonymous) memory: freed when dropped, unlike a mapped file's pages."""
        path, dtype, shape, start, end = self.entries[name]
        raw = np.empty(end - start, dtype=np.uint8)
        with open(path, "rb", buffering=0) as fh:
            fh.seek(start)
            view, done = memoryview(raw), 0
            while done < len(raw):
                n = fh.readinto(view[done:])
                if not n:
                    raise SprintError(f"{path}: truncated safetensors file (tensor {name})")
                done += n
        self.bytes_read += end - start
        return _from_bytes(raw, dtype, shape)

    def map(self, name: str) -> torch.Tensor:
        """The tensor memory-mapped copy-on-write (only the pages touched become resident; writes stay private)."""
        path, dtype, shape, start, end = self.entries[name]
        if end == start:
            return torch.empty(shape, dtype=dtype)
        raw = np.memmap(path, dtype=np.uint8, mode="c", offset=start, shape=(end - start,))
        self.maps.append(raw)
        return _from_bytes(raw, dtype, shape)

    def trim(self) -> None:
        """Drop the mapped pages from this process (MADV_DONTNEED; they page in again from the file when read).
        Each page fault maps a whole page-cache folio around it (measured: 512 random rows of Llama-3's 2 GiB fp32
        embedding table put 0.7 GiB in RSS, MADV_RANDOM or not), so the view trims after each embedding lookup
        and LM-head pass.  Safe because nothing writes to the mapped (copy-on-write) tensors."""
        for raw in self.maps:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                raw._mmap.madvise(mmap.MADV_DONTNEED)

    def copy(self, name: str, out) -> None:
        """Append the tensor's raw bytes to the open file ``out`` (block by block: no tensor in memory)."""
        path, _, _, start, end = self.entries[name]
        with open(path, "rb") as fh:
            fh.seek(start)
            left = end - start
            while left:
                block = fh.read(min(COPY_BLOCK, left))
                out.write(block)
                left -= len(block)


def _from_bytes(raw: np.ndarray, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.from_numpy(raw).view(dtype).reshape(shape) if raw.size else torch.empty(shape, dtype=dtype)


def write_safetensors(path: str | os.PathLike, tensors: list[tuple[str, torch.dtype, tuple[int, ...], object]],
                      metadata: dict | None = None) -> None:
    """Write a safetensors file tensor by tensor: ``tensors`` = [(name, dtype, shape, writer)], ``writer(fh)``
    appending exactly the tensor's bytes (so nothing is held whole in memory)."""
    header, offset = {}, 0
    for name, dtype, shape, _ in tensors:
        n = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
        header[name] = {"dtype": SAFE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header = {"__metadata__": metadata, **header}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(text)))
        fh.write(text)
        start = fh.tell()
        for name, _, _, writer in tensors:
            writer(fh)
            if fh.tell() - start != header[name]["data_offsets"][1]:
                raise RuntimeError(f"safetensors writer: tensor {name} wrote the wrong number of bytes")


def _tensor_writer(t: torch.Tensor):
    def write(fh):
        c = t.detach().contiguous().cpu()
        if c.numel():
            fh.write(memoryview(c.view(torch.uint8).reshape(-1).numpy()))
    return write


# -- the offload ----------------------------------------------------------------------------------------------------
class Offload:
    """The decoder layers' weights of ``model``, kept outside ``device`` and materialised per sublayer on it.

    ``store``: "memory" (the layers' current tensors in host memory are the home copies) or "file" (the layers'
    parameters are meta placeholders; ``source`` reads them).  ``spill_dir``: where the file store keeps edited
    tensors (None: host memory).
    """

    def __init__(self, model: nn.Module, device: str | torch.device, store: str,
                 source: SafetensorsSource | None = None, spill_dir: str | os.PathLike | None = None):
        from sprint.model.sublayers import SpillStore

        if store not in STORES:
            raise SprintError(f"--offload {store!r}: expected one of {', '.join(STORES)}")
        if store == "file" and source is None:
            raise ValueError("the file store needs the checkpoint's safetensors source")
        self.model, self.device, self.store, self.source = model, torch.device(device), store, source
        self.prefix = adapter_for(model).layers + "."
        self.slots: dict[str, tuple[nn.Module, str]] = {}  # layer parameter name -> (module, attribute)
        self.home: dict[str, nn.Parameter] = {}  # name -> what the module holds while not resident
        for mod_name, module in model.named_modules():
            for attr, p in module.named_parameters(recurse=False):
                name = f"{mod_name}.{attr}" if mod_name else attr
                if name.startswith(self.prefix):
                    self.slots[name] = (module, attr)
                    self.home[name] = p
        self.depth: dict[str, int] = {}
        self.edited = SpillStore(spill_dir, "offload") if store == "file" else None
        self.loads = 0  # tensors materialised
        self.bytes_loaded = 0
        self._names: dict[tuple, list[str]] = {}
        self.mapped: dict[str, nn.Parameter] = {}  # memory-mapped parameters not offloaded (file store, CPU)

    # -- residency ------------------------------------------------------------------------------------------------
    def names(self, prefixes: Iterable[str]) -> list[str]:
        """The layer parameter names under the module names ``prefixes`` (model.layers.3.mlp, ...)."""
        key = tuple(prefixes)
        if key not in self._names:
            heads = tuple(p + "." for p in key)
            self._names[key] = [n for n in self.slots if n.startswith(heads)]
        return self._names[key]

    def _home_tensor(self, name: str) -> torch.Tensor:
        """The current value of a layer tensor in host memory, in the model's dtype (fresh memory for the file store)."""
        if self.store == "memory":
            return self.home[name].detach()
        if name in self.edited:
            return self.edited.get(name)
        dtype = self.home[name].dtype
        t = self.source.read(name)
        return t if t.dtype == dtype else t.to(dtype)

    def _load(self, name: str) -> None:
        depth = self.depth.get(name, 0)
        if depth == 0:
            module, attr = self.slots[name]
            t = self._home_tensor(name)
            # memory store: always a copy (on the CPU too), so that an edit not kept by ``write`` never leaks home
            t = t.to(self.device, copy=self.store == "memory" or name in (self.edited or ()))
            module._parameters[attr] = nn.Parameter(t, requires_grad=False)
            self.loads += 1
            self.bytes_loaded += t.numel() * t.element_size()
        self.depth[name] = depth + 1

    def _release(self, name: str, keep: bool) -> None:
        module, attr = self.slots[name]
        if keep:
            current = module._parameters[attr].detach()
            if self.store == "memory":
                with torch.no_grad():
                    self.home[name].copy_(current)
            else:
                # a copy only while it stays resident (nested): the override must not change with it
                self.edited.put(name, current.to("cpu", copy=self.depth[name] > 1))
        self.depth[name] -= 1
        if self.depth[name] == 0:
            module._parameters[attr] = self.home[name]

    @contextlib.contextmanager
    def resident(self, prefixes: Iterable[str], write: bool | Iterable[str] = False):
        """Materialise the layer parameters under the module names ``prefixes`` on the device for the block;
        ``write``: True keeps every edit made to them, or the parameter names whose edits are kept."""
        names = self.names(prefixes)
        keep = set(names) if write is True else set(write or ())
        loaded = []
        try:
            for n in names:
                self._load(n)
                loaded.append(n)
            yield
        finally:
            for n in loaded:
                self._release(n, n in keep)

    def resident_bytes(self) -> int:
        return sum(self.slots[n][0]._parameters[self.slots[n][1]].numel()
                   * self.home[n].element_size() for n, d in self.depth.items() if d)

    def trim(self) -> None:
        """Drop the pages of the memory-mapped (not offloaded) tensors from RSS (file store on the CPU)."""
        if self.source is not None:
            self.source.trim()

    def close(self) -> None:
        if self.edited is not None:
            self.edited.close()

    # -- saving ---------------------------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike, keys: Iterable[str]) -> None:
        """Write ``folder``/model.safetensors holding the state-dict entries ``keys`` (in that order, tied weights
        once), each copied from its source bytes or its override, and the model's config (file store)."""
        state = self.model.state_dict(keep_vars=True)
        seen: set[int] = set()
        tensors = []
        for key in keys:
            t = state[key]
            if id(t) in seen:
                continue  # a tied weight is saved once, under its first name (as save_pretrained does)
            seen.add(id(t))
            tensors.append((key, t.dtype, tuple(t.shape), self._writer(key, t)))
        write_safetensors(Path(folder) / "model.safetensors", tensors, {"format": "pt"})
        self.model.config.save_pretrained(folder)
        if getattr(self.model, "generation_config", None) is not None and self.model.can_generate():
            self.model.generation_config.save_pretrained(folder)

    def _writer(self, key: str, t: torch.Tensor):
        src = self.source
        if key in self.slots:
            if self.edited is not None and key in self.edited:
                return _tensor_writer(self.edited.get(key))
            if src is not None and key in src and src.dtype(key) == t.dtype:
                return lambda fh: src.copy(key, fh)
            return lambda fh: _tensor_writer(self._home_tensor(key))(fh)
        # not offloaded (embeddings, norm, head; buffers): as the model holds it (a mapped tensor only pages in)
        if src is not None and self.mapped.get(key) is t:
            return lambda fh: src.copy(key, fh)
        return _tensor_writer(t)


def attach(model: nn.Module, device: str | torch.device, store: str, source: SafetensorsSource | None = None,
           spill_dir: str | os.PathLike | None = None) -> Offload:
    """Offload ``model``'s decoder layers (its other weights go to ``device``); ``model.sprint_offload`` is set, and
    :class:`sprint.model.sublayers.SublayerView` picks it up."""
    device = torch.device(device)
    prefix = adapter_for(model).layers + "."
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        if not name.startswith(prefix) and p.device != device and p.device.type != "meta":
            p.data = p.data.to(device)
    for name, b in model.named_buffers():  # a layer's own buffers (none in the supported families) go too
        if name.startswith(prefix) and b.device != device and b.device.type != "meta":
            b.data = b.data.to(device)
    off = Offload(model, device, store, source, spill_dir)
    model.sprint_offload = off
    return off


def load_offloaded(name: str, device: str = "cpu", dtype: str = "auto", store: str = "file",
                   spill_dir: str | os.PathLike | None = None):
    """(model, tokenizer) with offloaded decoder layers executing on ``device`` (one device: cpu, cuda, cuda:N).

    memory: loaded into host memory as usual; file: built on the meta device and its weights read from the folder's
    safetensors on demand (the dtype conversion, if any, is the same ``Tensor.to`` from_pretrained applies).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from sprint.model.checkpoint import is_pruned_checkpoint
    from sprint.model.loading import _check_exists, load_model, resolve_dtype

    _check_exists(name)
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise SprintError(f"--device {device}: no CUDA device is available")
    torch_dtype = resolve_dtype(dtype, "cpu" if str(device) == "cpu" else "cuda")
    if store == "memory":
        model, tokenizer = load_model(name, device="cpu", dtype=str(torch_dtype).replace("torch.", ""))
        attach(model, device, "memory")
        return model, tokenizer
    if is_pruned_checkpoint(name):
        raise SprintError(f"--offload file: {name} is a pruned SPRINT checkpoint; offloading prunes dense "
                          "Hugging Face folders (use --offload memory)")
    from accelerate import init_empty_weights

    source = SafetensorsSource(name)
    config = AutoConfig.from_pretrained(name)
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    model.eval()
    if (Path(name) / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(name)
    prefix = adapter_for(model).layers + "."
    aliases: dict[int, list[str]] = {}
    for pname, p in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(p), []).append(pname)
    mapped: dict[str, torch.Tensor] = {}
    for pname, p in model.named_parameters():
        found = next((a for a in aliases[id(p)] if a in source), None)
        if found is None:
            raise SprintError(f"--offload file: {name}'s safetensors have no tensor {pname}")
        if pname.startswith(prefix):
            continue  # read when its sublayer runs
        if str(device) == "cpu" and source.dtype(found) == p.dtype:
            t = source.map(found)
            mapped[pname] = t
        else:
            t = source.read(found).to(p.dtype).to(device)
        param = nn.Parameter(t, requires_grad=False)
        for a in aliases[id(p)]:  # tied: every name holds the same parameter, as before
            mn, _, at = a.rpartition(".")
            model.get_submodule(mn)._parameters[at] = param
    off = attach(model, device, "file", source, spill_dir)
    off.mapped = {k: model.get_parameter(k) for k in mapped}
    return model, AutoTokenizer.from_pretrained(name)
