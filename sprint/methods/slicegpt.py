"""SliceGPT: deleting rows and columns by computational invariance (Ashkboos et al., ICLR 2024), as a baseline of the
paper's Fig. 5.

Paper -> code:

- computational invariance (their §3.1, Theorem 1): with every RMSNorm's scale folded into the linear layers that
  read its output (:func:`fold_norms`), RMSNorm(x Q) = RMSNorm(x) Q for any orthogonal Q, so the residual stream
  may be carried in any orthonormal basis;
- Q_ℓ (their §3.2): for each sublayer ℓ, the eigenvectors of Σ X_ℓᵀ X_ℓ, X_ℓ its input residual stream over the
  calibration tokens, by decreasing eigenvalue (:func:`principal_components`); computed sublayer by sublayer on the
  activations of the model already rotated and sliced below it, as in their code;
- rotation: the embeddings become E Q₀; a sublayer's input projections W_in ← W_in Q_ℓ (q, k, v / gate, up), its
  output projection W_out ← Q_{ℓ+1}ᵀ W_out (o / down), and the residual connection carries x ↦ x Q_ℓᵀ Q_{ℓ+1} (their
  shortcut matrices, a d'×d' linear per sublayer); the LM head reads W_head Q_L;
- slicing (their §3.3): only the first d' = (1 − ``slicing``)·d columns of each Q are kept (rounded to a multiple
  of 8), so the embeddings, the residual stream and every projection's hidden side shrink to d' and the model really
  computes less; the attention heads and the MLP width are unchanged;
- RMSNorm over d' features: the norm's scale becomes √(d/d'), so that x̃ / RMS_{d'}(x̃) · √(d/d') = x̃ · √d / ‖x̃‖,
  the unsliced norm with ‖x‖ approximated by ‖x̃‖ (exact when nothing is sliced);
- no recovery fine-tuning (their optional step; SPRINT does none either).

The sliced model is saved as a SPRINT checkpoint: ``config.sprint_shortcuts`` makes the carried modeling code
(:mod:`sprint.model.modeling_sprint`) build the shortcut linears, ``config.sprint_residual_width`` is d' (``hidden_size``
keeps d: transformers requires it to be a multiple of the number of heads, which d' need not be, e.g. 400 for 9 heads;
``head_dim`` is kept explicit), and the embeddings and the LM head are untied (they differ by their rotations).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from tqdm.auto import tqdm

from sprint.model.modeling_sprint import add_shortcuts
from sprint.methods.base import OneShotPruner
from sprint.model.sublayers import SublayerView, sublayer_name


def _set_weight(linear: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    linear.weight = nn.Parameter(weight.to(linear.weight.dtype).contiguous(), requires_grad=False)
    if bias is not None:
        linear.bias = nn.Parameter(bias.to(linear.bias.dtype).contiguous(), requires_grad=False)
    linear.out_features, linear.in_features = linear.weight.shape


def _branch_linears(view: SublayerView, s: int) -> tuple[list[nn.Linear], nn.Linear]:
    """(input projections, output projection) of sublayer ``s``'s branch."""
    layer, kind = sublayer_name(s)
    branch = getattr(view.layers[layer], view.adapter.module(kind))
    out = getattr(branch, view.adapter.out_proj(kind))
    return [m for m in branch.modules() if isinstance(m, nn.Linear) and m is not out], out


@torch.no_grad()
def fold_norms(view: SublayerView) -> None:
    """Fold every RMSNorm's scale into the linears that read it (set to 1 afterwards); unties the LM head from the
    embeddings first.  The model computes the same function."""
    model = view.model
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    if head.weight is emb.weight or head.weight.data_ptr() == emb.weight.data_ptr():
        head.weight = nn.Parameter(emb.weight.detach().clone(), requires_grad=False)
    model.config.tie_word_embeddings = False
    for s in range(view.num_sublayers):
        norm = view._module(s, "norm")
        for linear in _branch_linears(view, s)[0]:
            linear.weight.mul_(norm.weight.to(linear.weight.dtype)[None, :])
        norm.weight.fill_(1.0)
    final = model.get_submodule(view.adapter.final_norm)
    head.weight.mul_(final.weight.to(head.weight.dtype)[None, :])
    final.weight.fill_(1.0)


def principal_components(X: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """Eigenvectors of Σ XᵀX over the tokens of X [n, T, d], by decreasing eigenvalue, as columns (float64 [d, d])."""
    d = X.shape[-1]
    cov = torch.zeros(d, d, dtype=torch.float64)
    for i in range(0, X.shape[0], batch):
        x = X[i:i + batch].reshape(-1, d).to(torch.float64).cpu()
        cov += x.T @ x
    _, vectors = torch.linalg.eigh(cov)
    return vectors.flip(-1)


def sliced_width(hidden: int, slicing: float) -> int:
    """d' = (1 − slicing)·d rounded to a multiple of 8 (at least 8, at most d)."""
    return min(hidden, max(8, 8 * round((1 - slicing) * hidden / 8)))


@torch.no_grad()
def slice_model(view: SublayerView, calibration: torch.Tensor, slicing: float, progress: bool = True) -> int:
    """Rotate and slice ``view.model`` in place (see the module docstring); returns d'."""
    model = view.model
    d = model.config.hidden_size
    d2 = sliced_width(d, slicing)
    head_dim = getattr(model.config, "head_dim", None) or d // model.config.num_attention_heads
    fold_norms(view)
    for c in view.chunks(calibration.shape[0]):  # the layers' mask and rotary arguments, while every width is d
        view.layer_kwargs(0, c.stop - c.start, calibration.shape[1], view.device_of(0))
    X = view.embed(calibration)
    Q = principal_components(X)[:, :d2]
    emb = model.get_input_embeddings()
    emb.weight = nn.Parameter((emb.weight.to(torch.float64) @ Q.to(emb.weight.device)).to(emb.weight.dtype),
                              requires_grad=False)
    emb.embedding_dim = d2
    Xs = (X.to(torch.float64) @ Q).to(X.dtype)
    shortcuts = []
    for s in tqdm(range(view.num_sublayers), desc="slicegpt", unit="sublayer", disable=not progress):
        inputs, out = _branch_linears(view, s)
        dev = out.weight.device
        for linear in inputs:
            _set_weight(linear, linear.weight.to(torch.float64) @ Q.to(dev))
        norm = view._module(s, "norm")
        norm.weight = nn.Parameter(torch.full((d2,), math.sqrt(d / d2), dtype=norm.weight.dtype, device=dev),
                                   requires_grad=False)
        R = torch.empty(*Xs.shape[:2], d, dtype=X.dtype)  # the next residual stream, in the original basis
        for c in view.chunks(Xs.shape[0]):
            x = Xs[c].to(dev)
            R[c] = ((x.to(torch.float64) @ Q.T.to(dev)).to(x.dtype) + view.branch_chunk(s, x)).cpu()
        Q_next = principal_components(R)[:, :d2]
        _set_weight(out, Q_next.T.to(dev) @ out.weight.to(torch.float64),
                    None if out.bias is None else out.bias.to(torch.float64) @ Q_next.to(dev))
        shortcuts.append((Q.T @ Q_next).T)  # x ↦ x Qᵀ Q_next as a Linear's weight
        Xs = (R.to(torch.float64) @ Q_next).to(X.dtype)
        Q = Q_next
    head = model.get_output_embeddings()
    _set_weight(head, head.weight.to(torch.float64) @ Q.to(head.weight.device))
    final = model.get_submodule(view.adapter.final_norm)
    final.weight = nn.Parameter(torch.full((d2,), math.sqrt(d / d2), dtype=final.weight.dtype,
                                           device=final.weight.device), requires_grad=False)
    model.config.head_dim = head_dim
    model.config.sprint_residual_width = d2
    add_shortcuts(model, shortcuts)
    view._kwargs.clear()
    return d2


class SliceGPTPruner(OneShotPruner):
    """SliceGPT as a method of the registry (kind "slicing"): ``run()`` rotates and slices the model in one shot."""

    options = ("slicing",)

    def __init__(self, view: SublayerView, calibration: torch.Tensor, slicing: float = 0.25, progress: bool = True):
        super().__init__(view, calibration, progress)
        self.slicing = slicing
        self.hidden_size = view.model.config.hidden_size
        self.sliced_size: int | None = None

    def run(self) -> int:
        self.sliced_size = slice_model(self.view, self.calibration, self.slicing, self.progress)
        return self.sliced_size

    def record(self) -> dict:
        """What pruning.json says about the result: the slicing ratio and the hidden width before and after."""
        return {"slicing": self.slicing, "hidden_size": self.hidden_size, "sliced_hidden_size": self.sliced_size}
