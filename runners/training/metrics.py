"""Task metrics from predictions and gold labels: accuracy, Matthews correlation, F1, Pearson, Spearman.

The catalogue of names (what each means, which kind of task it fits) is registry.tasks.METRICS; these are
the implementations (a test keeps both equal and checks each against scikit-learn / SciPy). A metric
that is undefined on the data (a constant prediction, no positive example) is 0.0, as scikit-learn's
Matthews correlation is, so no NaN reaches the keep rule or the warehouse.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def accuracy(pred: Sequence, gold: Sequence) -> float:
    p, g = np.asarray(pred), np.asarray(gold)
    return float((p == g).mean()) if len(g) else float("nan")


def mcc(pred: Sequence[int], gold: Sequence[int]) -> float:
    """Matthews correlation; for more than two classes Gorodkin's R_K over the confusion matrix."""
    p, g = np.asarray(pred, dtype=np.int64), np.asarray(gold, dtype=np.int64)
    if not len(g):
        return float("nan")
    k = int(max(p.max(), g.max())) + 1
    confusion = np.zeros((k, k), dtype=np.float64)
    np.add.at(confusion, (g, p), 1.0)
    t, q = confusion.sum(axis=1), confusion.sum(axis=0)  # gold and predicted counts per class
    correct, n = float(np.trace(confusion)), float(len(g))
    denom = np.sqrt((n * n - float(q @ q)) * (n * n - float(t @ t)))
    return float((correct * n - float(q @ t)) / denom) if denom > 0 else 0.0


def f1(pred: Sequence[int], gold: Sequence[int], positive: int = 1) -> float:
    """F1 of the positive class: 2 TP / (2 TP + FP + FN)."""
    p, g = np.asarray(pred) == positive, np.asarray(gold) == positive
    tp = float((p & g).sum())
    denom = 2 * tp + float((p & ~g).sum()) + float((~p & g).sum())
    return 2 * tp / denom if denom > 0 else 0.0


def pearson(pred: Sequence[float], gold: Sequence[float]) -> float:
    x, y = np.asarray(pred, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt(float(x @ x) * float(y @ y))
    return float(np.clip(float(x @ y) / denom, -1.0, 1.0)) if denom > 0 else 0.0


def ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of the ranks they span."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v, kind="stable")
    out = np.empty(len(v), dtype=np.float64)
    sorted_v = v[order]
    start = 0
    while start < len(v):
        end = start
        while end + 1 < len(v) and sorted_v[end + 1] == sorted_v[start]:
            end += 1
        out[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return out


def spearman(pred: Sequence[float], gold: Sequence[float]) -> float:
    return pearson(ranks(pred), ranks(gold))


METRICS: dict[str, Callable[[Sequence, Sequence], float]] = {
    "accuracy": accuracy,
    "mcc": mcc,
    "f1": f1,
    "pearson": pearson,
    "spearman": spearman,
}


def compute(names: Sequence[str], pred: Sequence, gold: Sequence, n_labels: int | None = None) -> dict[str, float]:
    """Every named metric that is defined for this set (binary metrics need a two-label set)."""
    from registry.tasks import METRICS as CATALOGUE

    out = {}
    for name in names:
        if CATALOGUE.get(name).binary and n_labels is not None and n_labels != 2:
            continue
        out[name] = METRICS[name](pred, gold)
    return out


__all__ = ["METRICS", "accuracy", "mcc", "f1", "pearson", "spearman", "ranks", "compute"]
