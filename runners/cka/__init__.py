"""CKA: compare every layer of the full model with every layer of a pruned one (linear CKA, streamed in
float64, or the minibatch estimator), riding on the evaluation passes a run makes anyway."""

from runners.cka.engine import BaselineFeatures, CKAAccumulator, CKAResult, capture, collect_baseline
from runners.cka.tracker import CKATracker, cka_rows, diagonal_metrics, heatmap_png

__all__ = [
    "BaselineFeatures",
    "CKAAccumulator",
    "CKAResult",
    "capture",
    "collect_baseline",
    "CKATracker",
    "cka_rows",
    "diagonal_metrics",
    "heatmap_png",
]
