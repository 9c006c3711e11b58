"""Masks on disk: safetensors files, bit-packed (a BERT-base weight mask is ~10 MB instead of ~85 MB)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file


def save_weight_masks(path: str | Path, masks: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    packed = {n: torch.from_numpy(np.packbits(m.detach().cpu().numpy().astype(bool).reshape(-1))) for n, m in masks.items()}
    meta = {"format": "packbits", "shapes": json.dumps({n: list(m.shape) for n, m in masks.items()}), **(metadata or {})}
    save_file(packed, str(path), metadata=meta)


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
