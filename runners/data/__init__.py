"""Tasks and examples: materialise a declared task (generated, local files or the hub) into examples,
tokenize them and batch them padded per batch."""

from runners.data.examples import Batch, EvalSet, Example, TaskData, batches, encode
from runners.data.sources import SourceError
from runners.data.tasks import build_task, task_words

__all__ = ["Batch", "EvalSet", "Example", "TaskData", "batches", "encode", "SourceError", "build_task", "task_words"]
