"""Masks on disk: safetensors files, bit-packed (a BERT-base weight mask is ~10 MB instead of ~85 MB)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file


def save_deterministic(
    tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    """safetensors, byte for byte the same for the same tensors and metadata: the library writes its
    metadata map in a per-process random order, so the header is rewritten with sorted keys."""
    from safetensors.torch import save

    blob = save(tensors, metadata=metadata)
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    ordered = {"__metadata__": dict(sorted(header.pop("__metadata__", {}).items())), **dict(sorted(header.items()))}
    text = json.dumps(ordered, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data 8-byte aligned, as the format pads it
    Path(path).write_bytes(len(text).to_bytes(8, "little") + text + blob[8 + n :])


def save_weight_masks(path: str | Path, masks: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    packed = {
        n: torch.from_numpy(np.packbits(m.detach().cpu().numpy().astype(bool).reshape(-1))) for n, m in masks.items()
    }
    meta = {
        "format": "packbits",
        "shapes": json.dumps({n: list(m.shape) for n, m in masks.items()}),
        **(metadata or {}),
    }
    save_deterministic(packed, path, meta)


def load_weight_masks(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        shapes = json.loads(f.metadata()["shapes"])
    packed = load_file(str(path))
    out = {}
    for name, shape in shapes.items():
        n = int(np.prod(shape))
        bits = np.unpackbits(packed[name].numpy())[:n].astype(bool)
        out[name] = torch.from_numpy(bits).reshape(shape)
    return out


def split_like(flat: torch.Tensor, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cut a flat tensor (the concatenation of `like`'s tensors, in order) back into their shapes."""
    out, offset = {}, 0
    for n, t in like.items():
        out[n] = flat[offset : offset + t.numel()].view_as(t)
        offset += t.numel()
    return out


def mask_sparsity(masks: dict[str, torch.Tensor]) -> float:
    """Fraction of the masked entries removed (False)."""
    total = sum(m.numel() for m in masks.values())
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / total


UNIT_FAMILIES = ("head", "mlp", "neuron")


def save_gate_masks(
    path: str | Path,
    families: dict[str, torch.Tensor],
    scores: dict[str, torch.Tensor] | None,
    metadata: dict[str, str],
) -> None:
    """Binary unit gates (head (L,H), mlp (L,), neuron (L,I)) and the scores that decided them."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in families.items()}
    tensors.update({f"score.{k}": v.detach().float().cpu().contiguous() for k, v in (scores or {}).items()})
    save_deterministic(tensors, path, metadata)


def load_gate_masks(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, str]]:
    """(unit gates by family, scores by family, metadata) as save_gate_masks wrote them."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    tensors = load_file(str(path))
    families = {k: v for k, v in tensors.items() if k in UNIT_FAMILIES}
    scores = {k.removeprefix("score."): v for k, v in tensors.items() if k.startswith("score.")}
    return families, scores, meta


def load_step(path: str | Path):
    """The state of a logged step, as a recipe's `start`: its number, sparsity, whether it passed, and
    its weight masks, or its binary gates and scores (results are not stored here: they are in MLflow)."""
    from safetensors import safe_open

    from runners.pruning.gates import Gates
    from runners.pruning.recipe import PruneStep

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    common = dict(
        step=int(meta["step"]),
        sparsity=float(meta["sparsity"]),
        results={},
        passed=meta.get("passed", "true") == "true",
        variant=meta.get("variant", "pruned"),
    )
    if meta.get("format") == "packbits":
        return PruneStep(**common, weight_masks=load_weight_masks(path))
    families, scores, _ = load_gate_masks(path)
    gates = Gates(families["head"], families["mlp"], families.get("neuron"), meta.get("ablation", "zero"))
    return PruneStep(**common, gates=gates, scores=scores or None)
