"""The experiments.toml reference, generated from the schema (for `subnets validate --explain` and the README)."""
from __future__ import annotations

import typing

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from registry.methods import METHODS
from registry.schema import CkaSpec, ExperimentSpec, FinetuneSpec, ModelSpec, OODSpec, RuntimeSpec, SourceSpec, TaskSpec
from registry.search import FloatRange, SearchSpec
from registry.tasks import TASKS

SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("experiment", ExperimentSpec), ("experiment.model", ModelSpec), ("experiment.task", TaskSpec),
    ("experiment.task.train / .eval", SourceSpec), ("experiment.task.ood[]", OODSpec),
    ("experiment.finetune", FinetuneSpec), ("experiment.cka", CkaSpec), ("experiment.runtime", RuntimeSpec),
    ("experiment.search", SearchSpec), ("experiment.search.space.<param>", FloatRange),
]


def _type_name(annotation) -> str:
    s = str(annotation).replace("typing.", "")
    return getattr(annotation, "__name__", s) if typing.get_origin(annotation) is None else s


def _default(field) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
        return "(table)" if isinstance(value, BaseModel) else repr(value)
    return "—" if field.default is None or field.default is PydanticUndefined else repr(field.default)


def rows() -> list[tuple[str, str, str, str]]:
    """(table, key, default, description) for every field, then each method's and generated task's params."""
    out = []
    for table, model in SECTIONS:
        for key, field in model.model_fields.items():
            if table == "experiment.task.ood[]" and key in SourceSpec.model_fields and key not in ("path",):
                continue  # same as train/eval; listed once
            out.append((table, key, _default(field), field.description or ""))
    for entry in METHODS.entries():
        out.append(("experiment.prune", "method", f'"{entry.name}"', entry.summary))
        for key, field in entry.value.params.model_fields.items():
            out.append((f"experiment.prune ({entry.name})", key, _default(field), field.description or ""))
    for entry in TASKS.entries():
        out.append(("experiment.task", "name", f'"{entry.name}"', entry.summary))
        if entry.value.params is not None:
            for key, field in entry.value.params.model_fields.items():
                out.append((f"experiment.task.params ({entry.name})", key, _default(field), field.description or ""))
    return out


def markdown() -> str:
    lines = ["| table | key | default | description |", "|---|---|---|---|"]
    lines += [f"| `{t}` | `{k}` | `{d}` | {desc} |" for t, k, d, desc in rows()]
    return "\n".join(lines)


def update_readme(path) -> None:
    """Replace the README's experiments.toml reference (from the schema) and its results-table reference
    (from the results contract) with freshly generated ones."""
    from pathlib import Path

    from registry import results

    path = Path(path)
    text = path.read_text()
    start = text.index("| table | key | default | description |")
    end = text.index("\n\n", start)
    text = text[:start] + markdown() + text[end:]
    begin, stop = "<!-- results-contract: begin -->\n", "\n<!-- results-contract: end -->"
    start, end = text.index(begin) + len(begin), text.index(stop)
    path.write_text(text[:start] + results.markdown() + text[end:])
