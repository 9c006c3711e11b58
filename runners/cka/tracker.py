"""CKA inside a run: the baseline's side once (riding on the step-0 evaluation), then each compared
model's side on the evaluation pass its step makes anyway. One forward pass per model per batch
serves every layer pair; batches match because evaluation order is fixed (runners.training.evaluate)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from registry.schema import CkaSpec
from runners.cka.engine import BaselineFeatures, CKAAccumulator, CKAResult, capture


class CKATracker:
    def __init__(self, spec: CkaSpec):
        self.spec = spec
        self.baseline: BaselineFeatures | None = None
        self.calls = 0  # pruning-step evaluations seen (step k is the k-th call)

    def wants(self, force: bool) -> bool:
        """The baseline pass always; pruning steps every `every`; variants (force) always."""
        if self.baseline is None or force:
            return True
        self.calls += 1
        return self.calls % self.spec.every == 0

    @contextmanager
    def observe(self, model) -> Iterator[tuple[Callable, Callable[[], CKAResult | None]]]:
        """(on_batch for the evaluation loop, result()) — builds the baseline on the first use."""
        building = self.baseline is None
        base = BaselineFeatures((self.spec.estimator,)) if building else self.baseline
        acc = None if building else CKAAccumulator(base, self.spec.estimator)
        with capture(model, self.spec.representation, self.spec.pooling, self.spec.examples) as cap:

            def on_batch(i, _outputs, _batch):
                (base.add if building else acc.update)(i, cap.pop())

            def result() -> CKAResult | None:
                if building:
                    self.baseline = base.finalize()
                    return None
                return acc.result()

            yield on_batch, result


def cka_rows(ids: dict, step, result: CKAResult, spec: CkaSpec) -> list[dict]:
    n = result.matrix.shape
    return [
        dict(
            ids,
            variant=step.variant,
            step=step.step,
            sparsity=step.sparsity,
            representation=spec.representation,
            pooling=spec.pooling,
            estimator=result.estimator,
            layer_base=i,
            layer_pruned=j,
            value=float(result.matrix[i, j]),
            degenerate=bool(result.degenerate[i, j]),
        )
        for i in range(n[0])
        for j in range(n[1])
    ]


def diagonal_metrics(matrix: np.ndarray) -> dict[str, float]:
    """Each layer's CKA with the same layer of the other model, as `cka.layer_<i>` metrics."""
    n = min(matrix.shape)
    return {f"cka.layer_{i}": float(matrix[i, i]) for i in range(n)}


def heatmap_png(path: Path, matrix: np.ndarray, title: str) -> None:
    """A PNG a person opens in the MLflow UI: rows = baseline layers, columns = pruned layers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.6), dpi=110)
    im = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="magma", origin="lower")
    ax.set_xlabel("pruned model layer (0 = embeddings)")
    ax.set_ylabel("baseline layer")
    ax.set_title(title, fontsize=9)
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if v < 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
