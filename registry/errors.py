"""Pydantic's validation errors, reported at the keys the user wrote and in the README's words
(registry.problems translates each error type): the loader hands every ValidationError here."""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from registry.catalogue import did_you_mean as _did_you_mean
from registry.methods import METHODS
from registry.problems import describe, expectations, toml_value
from registry.taskspec import SLUG


def report_errors(
    err: ValidationError,
    prefix: str,
    name: str,
    report,
    model,
    given: Any,
    skip_prefix: str | None = None,
    method: str | None = None,
) -> None:
    """Pydantic's errors in the README's words (registry.problems.describe), each at the key the user
    wrote: a union's alternatives are one problem ("expected a number or text"), a list item is named by
    its position, an OOD set by its name, and a missing key that an unknown one misspells is left to the
    unknown key's "did you mean"."""
    groups: dict[tuple, list[dict]] = {}
    for e in err.errors():
        groups.setdefault(_written_loc(e, given), []).append(e)
    misspelt = {
        loc[:-1] + (hit,)
        for loc, errs in groups.items()
        for e in errs
        if e["type"] == "extra_forbidden"
        for hit in difflib.get_close_matches(str(loc[-1]), field_names(model, list(loc[:-1])), n=1, cutoff=0.6)
    }
    for loc, errs in groups.items():
        if all(e["type"] == "missing" for e in errs) and loc in misspelt:
            continue
        item, parent = _list_item(loc, given)
        where = loc[:-1] if item is not None else loc
        dotted = ".".join([prefix, *_shown_key(where, given)] if prefix else _shown_key(where, given))
        if skip_prefix and (dotted == skip_prefix or dotted.startswith(skip_prefix + ".")):
            continue
        union = expectations(errs) if len(errs) > 1 else None
        texts = (
            [f"expected {union}" + (f" (got {toml_value(errs[0]['input'])})" if "input" in errs[0] else "")]
            if union
            else [_sentence(e, model, loc, method) for e in errs]
        )
        for text in dict.fromkeys(texts):
            if item is not None:
                shown = toml_value(parent[item])
                text = f"item {item + 1} of the list ({shown}): {text.replace(f' (got {shown})', '')}"
            report(name, dotted, text, here=all(e["type"] == "missing" for e in errs))


def _sentence(e: dict, model, loc: tuple, method: str | None) -> str:
    if e["type"] == "extra_forbidden":
        known = field_names(model, list(loc[:-1]))
        key = str(loc[-1])
        if method is not None and len(loc) == 1:  # a key of another pruning method?
            owners = [m.name for m in METHODS.entries() if key in m.value.params.model_fields and m.name != method]
            if owners:
                return (
                    f"{key} is a parameter of {' and '.join(owners)}, not of {method}{_did_you_mean(key, known)} "
                    f"({method} takes: {', '.join(known)})"
                )
        return describe(e, known)
    return describe(e)


def _written_loc(e: dict, given: Any) -> tuple:
    """An error's location as keys the user wrote: the names pydantic adds for a union's alternatives
    (int, str, list[str], a range's kind) are dropped; a missing key keeps its name."""
    loc = [x for x in e["loc"] if not str(x).startswith("function-")]
    out: list = []
    node = given
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif i == len(loc) - 1 and e["type"] == "missing":
            pass
        else:
            continue
        out.append(part)
    return tuple(out)


def _list_item(loc: tuple, given: Any) -> tuple[int | None, list | None]:
    """(position, list) when `loc` ends at one scalar item of a list (`targets = [0.5, 1.2]`)."""
    if not loc or not isinstance(loc[-1], int):
        return None, None
    node = given
    for part in loc[:-1]:
        node = node[part] if isinstance(node, (dict, list)) else None
    if isinstance(node, list) and not isinstance(node[loc[-1]], (dict, list)):
        return loc[-1], node
    return None, None


def _shown_key(loc: tuple, given: Any) -> list[str]:
    """Key parts as text; an element of a list of tables that has a good `name` is shown by it."""
    out, node = [], given
    for i, part in enumerate(loc):
        child = (
            node[part]
            if isinstance(node, (dict, list))
            and (isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int))
            else None
        )
        named = isinstance(part, int) and isinstance(child, dict) and isinstance(child.get("name"), str)
        if named and re.fullmatch(SLUG, child["name"]) and loc[i + 1 : i + 2] != ("name",):
            out.append(child["name"])
        else:
            out.append(str(part))
        node = child
    return out


def field_names(model, path: list) -> list[str]:
    """Field names of the nested model at `path` (list positions and a dict field's keys are stepped
    over), for "did you mean" on unknown keys."""
    ann: Any = model
    for part in path:
        ann = next((inner for alt in _alternatives(ann) if (inner := _step(alt, part)) is not None), None)
        if ann is None:
            return []
    models = [a for a in _alternatives(ann) if isinstance(a, type) and issubclass(a, BaseModel)]
    return list(models[0].model_fields) if models else []


def _alternatives(ann: Any) -> list:
    """The types an annotation admits: Annotated[...] unwrapped, unions flattened."""
    if typing.get_origin(ann) is typing.Annotated:
        return _alternatives(typing.get_args(ann)[0])
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return [x for a in typing.get_args(ann) for x in _alternatives(a)]
    return [ann]


def _step(ann: Any, part) -> Any:
    origin = typing.get_origin(ann)
    if isinstance(part, int):
        return typing.get_args(ann)[0] if origin in (list, tuple) else None
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        field = ann.model_fields.get(part)
        return field.annotation if field is not None else None
    return typing.get_args(ann)[1] if origin is dict else None
