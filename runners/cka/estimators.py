"""The CKA math: two estimators of linear CKA, vectorised over every (baseline layer, compared layer) pair.

Conventions. One batch of one model is a [n, L*D] float tensor: n rows (examples, or tokens), the L
layers' D-wide features side by side (layer 0 = embeddings). "x" is the baseline, "y" the compared
(pruned) model. Both estimators reduce to HSIC terms -- xy [Lx, Ly], xx [Lx], yy [Ly] -- and
CKA = xy / sqrt(xx * yy), finished by `cka_from_terms`, which also flags degenerate entries.

- `LinearBaseline` / `LinearState`: full-data linear CKA. The baseline is centred once (global mean);
  the compared side streams float64 sums and raw cross-products and is centred at the end. Memory is
  O(D^2) per layer pair, never O(n^2).
- `MinibatchBaseline` / `MinibatchState`: Nguyen, Raghu & Kornblith (2021): unbiased HSIC_1 (Song et
  al. 2012) on each minibatch, averaged over minibatches, CKA from the averages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

F64 = torch.float64


def layers_view(flat: Tensor, n_layers: int) -> Tensor:
    """[n, L*D] -> [L, n, D] (a view)."""
    n = flat.shape[0]
    return flat.view(n, n_layers, -1).transpose(0, 1)


def storage_dtype(t: Tensor) -> torch.dtype:
    # Keep what the model gave (float32 in practice; float64 stays float64); never below float32.
    return F64 if t.dtype == F64 else torch.float32


@dataclass
class Terms:
    xy: Tensor  # [Lx, Ly] HSIC(x_i, y_j)
    xx: Tensor  # [Lx]
    yy: Tensor  # [Ly]
    m2x: Tensor  # [Lx] mean raw (uncentred) squared row norm: the scale for the degeneracy test
    m2y: Tensor  # [Ly]


def cka_from_terms(t: Terms, rtol: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """CKA matrix, degenerate flags, notes. A side whose self-HSIC is <= (rtol * m2)^2 (zero variance,
    a constant or all-zero layer, or a non-positive unbiased estimate) is degenerate: every entry in its
    row/column is 0.0 and flagged. Non-finite terms are flagged the same way; no NaN is ever returned."""
    xx, yy, xy = t.xx.double(), t.yy.double(), t.xy.double()
    bad_x = ~torch.isfinite(xx) | (xx <= (rtol * t.m2x) ** 2) | ~torch.isfinite(t.m2x)
    bad_y = ~torch.isfinite(yy) | (yy <= (rtol * t.m2y) ** 2) | ~torch.isfinite(t.m2y)
    denom = torch.sqrt(torch.where(bad_x, 1.0, xx))[:, None] * torch.sqrt(torch.where(bad_y, 1.0, yy))[None, :]
    flag = bad_x[:, None] | bad_y[None, :] | ~torch.isfinite(xy)
    cka = torch.where(flag, 0.0, xy / denom)
    notes = []
    for side, bad, self_terms in (("baseline", bad_x, xx), ("compared", bad_y, yy)):
        for i in torch.nonzero(bad).flatten().tolist():
            why = "non-finite features" if not torch.isfinite(self_terms[i]) else "zero (or non-positive) variance"
            notes.append(f"{side} layer {i}: {why}; its CKA entries are set to 0.0 and flagged")
    n_nonfinite_xy = int((~torch.isfinite(xy) & ~bad_x[:, None] & ~bad_y[None, :]).sum())
    if n_nonfinite_xy:
        notes.append(f"{n_nonfinite_xy} pair(s) with a non-finite cross term set to 0.0 and flagged")
    return cka.numpy(), flag.numpy(), notes


# ---------------------------------------------------------------------------------------------------
# Full-data linear CKA from streamed cross-products.
# CKA = ||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) equals the centred-Gram form tr(KcLc)/(|Kc||Lc|).


class LinearBaseline:
    """The baseline's side, built once: globally centred features (kept in the input dtype) and the
    per-layer self terms. `batches` maps batch index -> [n_b, Lx*Dx]; entries are replaced, not copied."""

    def __init__(self, batches: dict[int, Tensor], n_layers: int):
        self.n_layers = n_layers
        self.n = sum(b.shape[0] for b in batches.values())
        width = next(iter(batches.values())).shape[1]
        total, sq = torch.zeros(width, dtype=F64), torch.zeros(width, dtype=F64)
        for b in batches.values():
            b64 = b.double()
            total += b64.sum(0)
            sq += b64.square().sum(0)
        mu = total / self.n
        self.m2 = sq.view(n_layers, -1).sum(1) / self.n
        # Centre with the exact (float64) mean, then round to the storage dtype; everything below is
        # computed from the rounded values, so the tiny residual mean is accounted for exactly (sx).
        self.xc: dict[int, Tensor] = {}
        for k in list(batches):
            b = batches.pop(k)
            self.xc[k] = (b.double() - mu).to(storage_dtype(b))
        self.sx = torch.zeros(width, dtype=F64)
        cxx = torch.zeros(n_layers, width // n_layers, width // n_layers, dtype=F64)
        for xc in self.xc.values():
            x64 = xc.double()
            self.sx += x64.sum(0)
            xl = layers_view(x64, n_layers)
            cxx.baddbmm_(xl.transpose(1, 2), xl)
        s = self.sx.view(n_layers, -1)
        cxx -= s[:, :, None] * s[:, None, :] / self.n
        self.xx = cxx.square().sum((1, 2)) / self.n**2

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.xc.values())


class LinearState:
    """Streams the compared model's batches. Sums and cross-products are float64 and taken on data shifted
    by the first batch's per-feature mean, so the end-of-run centring (S - s s^T / n) does not cancel
    catastrophically when features have a large mean offset."""

    def __init__(self, base: LinearBaseline):
        self.base = base
        self.shift: Tensor | None = None
        self.n = 0

    def update(self, key: int, y: Tensor, n_layers: int) -> None:
        y64 = y.to(F64, copy=True)  # shifted in place below
        if self.shift is None:
            w = y64.shape[1]
            self.ly = n_layers
            self.shift = y64.mean(0)
            self.sy = torch.zeros(w, dtype=F64)
            self.sq = torch.zeros(w, dtype=F64)
            self.syy = torch.zeros(n_layers, w // n_layers, w // n_layers, dtype=F64)
            self.cxy = torch.zeros(self.base.xc[key].shape[1], w, dtype=F64)
        self.sq += y64.square().sum(0)
        y64 -= self.shift
        self.sy += y64.sum(0)
        yl = layers_view(y64, n_layers)
        self.syy.baddbmm_(yl.transpose(1, 2), yl)
        # All Lx*Ly layer pairs in one GEMM: [Lx*Dx, n] @ [n, Ly*Dy].
        self.cxy.addmm_(self.base.xc[key].T.double(), y64)
        self.n += y64.shape[0]

    def terms(self) -> Terms:
        b, n = self.base, self.n
        cxy = self.cxy - torch.outer(b.sx, self.sy) / n
        xy = cxy.view(b.n_layers, cxy.shape[0] // b.n_layers, self.ly, -1).square().sum((1, 3)) / n**2
        s = self.sy.view(self.ly, -1)
        yy = (self.syy - s[:, :, None] * s[:, None, :] / n).square().sum((1, 2)) / n**2
        return Terms(xy, b.xx, yy, b.m2, self.sq.view(self.ly, -1).sum(1) / n)

    def nbytes(self) -> int:
        return sum(t.numel() * 8 for t in (self.cxy, self.syy, self.sy, self.sq, self.shift)) if self.n else 0


# ---------------------------------------------------------------------------------------------------
# Minibatch CKA (Nguyen et al. 2021): per batch, with Kt = K with a zeroed diagonal,
#   HSIC_1(K, L) = [tr(Kt Lt) + (1'Kt1)(1'Lt1)/((n-1)(n-2)) - 2/(n-2) 1'Kt Lt 1] / (n(n-3)).
# A side is summarised by tr-ready data plus u = Kt 1 [L, n] and s1 = 1'Kt1 [L]. Two exact routes:
# "gram" keeps Kt ([L, n, n], cheap when n <= D: pooled examples), "feat" keeps the features and
# uses tr(Kt Lt) = ||X'Y||_F^2 - sum_i |x_i|^2 |y_i|^2 ([L, n, D], for token-level batches, n >> D).
# Features are centred per batch first: HSIC_1 is exactly shift-invariant, and it avoids cancellation.

MIN_ROWS = 4  # HSIC_1 divides by n(n-3)


@dataclass
class _Side:
    kind: str  # "gram" | "feat"
    mat: Tensor  # gram: Kt [L, n, n] float64; feat: X [n, L*D] (storage dtype)
    sqn: Tensor  # [L, n] squared row norms (feat) -- unused for gram
    u: Tensor  # [L, n] = Kt 1
    s1: Tensor  # [L] = 1' Kt 1
    self_hsic: Tensor  # [L] HSIC_1(K, K)
    m2_sum: Tensor  # [L] sum of raw squared row norms
    n_layers: int


def _combine(tr: Tensor, s1x: Tensor, s1y: Tensor, uxy: Tensor, n: int) -> Tensor:
    return (tr + s1x * s1y / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * uxy) / (n * (n - 3))


def make_side(flat: Tensor, n_layers: int, kind: str, keep_dtype: torch.dtype = F64) -> _Side:
    n = flat.shape[0]
    raw = flat.double()
    m2_sum = layers_view(raw.square(), n_layers).sum((1, 2))
    xc = raw - raw.mean(0)
    if kind == "feat":  # the kept features are rounded to the storage dtype; terms come from the rounded values
        xc = xc.to(keep_dtype)
    x = layers_view(xc.double(), n_layers)  # [L, n, D]
    if kind == "gram":
        k = x @ x.transpose(1, 2)
        k.diagonal(dim1=1, dim2=2).zero_()
        u, s1, tr = k.sum(2), k.sum((1, 2)), k.square().sum((1, 2))
        sqn, mat = torch.empty(0), k
    else:
        sqn = x.square().sum(2)
        s = x.sum(1)  # ~0 after centring, kept for exactness
        u = (x @ s[:, :, None]).squeeze(2) - sqn
        s1 = s.square().sum(1) - sqn.sum(1)
        tr = (x.transpose(1, 2) @ x).square().sum((1, 2)) - sqn.square().sum(1)
        mat = xc
    self_hsic = _combine(tr, s1, s1, u.square().sum(1), n)
    return _Side(kind, mat, sqn, u, s1, self_hsic, m2_sum, n_layers)


def pair_hsic(x: _Side, y: _Side) -> Tensor:
    """HSIC_1 for every (x layer, y layer) pair of one batch: [Lx, Ly]."""
    n = x.u.shape[1]
    if x.kind == "gram":
        tr = x.mat.reshape(x.n_layers, -1) @ y.mat.reshape(y.n_layers, -1).T
    else:
        c = x.mat.double().T @ y.mat.double()
        tr = c.view(x.n_layers, -1, y.n_layers, c.shape[1] // y.n_layers).square().sum((1, 3)) - x.sqn @ y.sqn.T
    return _combine(tr, x.s1[:, None], y.s1[None, :], x.u @ y.u.T, n)


def side_kind(n_rows: int, width_per_layer: int) -> str:
    # Keep whichever is smaller per batch: an n x n Gram or the n x D features.
    return "gram" if n_rows <= width_per_layer else "feat"


class MinibatchBaseline:
    """The baseline's per-batch summaries, built once. Batches with fewer than 4 rows are skipped (HSIC_1
    is undefined there); the compared side skips the same batches."""

    def __init__(self, batches: Mapping[int, Tensor], n_layers: int):
        self.n_layers = n_layers
        self.sides: dict[int, _Side] = {}
        self.skipped: list[int] = []
        for k, b in batches.items():
            if b.shape[0] < MIN_ROWS:
                self.skipped.append(k)
                continue
            kind = side_kind(b.shape[0], b.shape[1] // n_layers)
            self.sides[k] = make_side(b, n_layers, kind, keep_dtype=storage_dtype(b))
        if not self.sides:
            raise ValueError(f"the minibatch estimator needs batches of at least {MIN_ROWS} rows")
        self.xx = torch.stack([s.self_hsic for s in self.sides.values()]).mean(0)
        n = sum(s.u.shape[1] for s in self.sides.values())
        self.m2 = torch.stack([s.m2_sum for s in self.sides.values()]).sum(0) / n

    def nbytes(self) -> int:
        return sum(
            s.mat.numel() * s.mat.element_size() + (s.u.numel() + s.sqn.numel()) * 8 for s in self.sides.values()
        )


class MinibatchState:
    def __init__(self, base: MinibatchBaseline):
        self.base = base
        self.k = 0
        self.rows = 0

    def update(self, key: int, y: Tensor, n_layers: int) -> None:
        x = self.base.sides.get(key)
        if x is None:  # a batch too small for HSIC_1 (skipped on the baseline's side too)
            return
        side = make_side(y, n_layers, x.kind)
        xy, yy = pair_hsic(x, side), side.self_hsic
        if self.k == 0:
            self.xy, self.yy, self.m2 = xy, yy, side.m2_sum
        else:
            self.xy, self.yy, self.m2 = self.xy + xy, self.yy + yy, self.m2 + side.m2_sum
        self.k += 1
        self.rows += y.shape[0]

    def terms(self) -> Terms:
        return Terms(self.xy / self.k, self.base.xx, self.yy / self.k, self.base.m2, self.m2 / self.rows)

    def nbytes(self) -> int:
        return 0 if not self.k else (self.xy.numel() + self.yy.numel()) * 8


# ---------------------------------------------------------------------------------------------------
# Plain float64 references (O(n^2) memory; for tests and benchmarks).


def linear_cka_reference(x: Tensor, y: Tensor) -> float:
    """Linear CKA from doubly centred Gram matrices, float64: tr(Kc Lc) / (||Kc||_F ||Lc||_F)."""
    x, y = x.double(), y.double()
    n = x.shape[0]
    h = torch.eye(n, dtype=F64) - 1.0 / n
    kc, lc = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return float((kc * lc).sum() / (kc.norm() * lc.norm()))


def hsic1_reference(k: Tensor, l: Tensor) -> float:
    """Nguyen et al. (2021) eq. 3 on explicit Gram matrices, float64."""
    k, l = k.double().clone(), l.double().clone()
    k.fill_diagonal_(0.0)
    l.fill_diagonal_(0.0)
    n = k.shape[0]
    one = torch.ones(n, 1, dtype=F64)
    val = (
        torch.trace(k @ l)
        + (one.T @ k @ one) * (one.T @ l @ one) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (one.T @ k @ l @ one)
    )
    return float(val / (n * (n - 3)))


def minibatch_cka_reference(xs: Sequence[Tensor], ys: Sequence[Tensor]) -> float:
    """Minibatch CKA from per-batch Grams of [n_b, D] features: mean HSIC_1(K,L) / sqrt(mean(K,K) mean(L,L))."""
    kl, kk, ll = [], [], []
    for x, y in zip(xs, ys):
        k, l = x.double() @ x.double().T, y.double() @ y.double().T
        kl.append(hsic1_reference(k, l))
        kk.append(hsic1_reference(k, k))
        ll.append(hsic1_reference(l, l))
    return float(np.mean(kl) / np.sqrt(np.mean(kk) * np.mean(ll)))
