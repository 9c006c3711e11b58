"""The checks of one experiment that span several keys (pydantic checks each key on its own): the model fits the
task (its tokens, a regression head), data files exist and hold what the task declares, the search's space and
rule make sense, and model and task names exist. Each reports through the loader's `report` and says whether it
found a problem."""

from __future__ import annotations

from pydantic import ValidationError

from registry.catalogue import did_you_mean as _did_you_mean
from registry.datafiles import check_source
from registry.methods import METHODS
from registry.models import BUILTIN_MODELS, check_model_name, max_tokens
from registry.problems import describe, toml_value
from registry.schema import ExperimentSpec, ModelSpec, TaskSpec
from registry.tasks import CUSTOM, REFUSED_FOR_REGRESSION, TASKS, check_task, is_regression, label_names


def check_model_fits_task(spec: ExperimentSpec, raw: dict, name: str, base_dir: str, report) -> bool:
    """A built-in model has no tokenizer of its own (a generated task brings its vocabulary), and a
    declared max_length must fit the model's position embeddings. True when a problem was reported."""
    found = False
    generated = spec.task.name in TASKS and TASKS.get(spec.task.name).generated
    if spec.model.name in BUILTIN_MODELS and spec.model.tokenizer is None and not generated:
        report(
            name,
            "model.tokenizer",
            f"built-in model {spec.model.name!r} has no tokenizer of its own and task "
            f"{spec.task.name!r} brings none: set model.tokenizer (a hub id or a local directory, e.g. "
            "bert-base-uncased) or use a generated task (synthetic-nli)",
        )
        found = True
    task = raw.get("task")
    limit = max_tokens(spec.model, base_dir) if isinstance(task, dict) and "max_length" in task else None
    if limit is not None and spec.task.max_length > limit:
        report(
            name,
            "task.max_length",
            f"{spec.task.max_length} tokens do not fit model {spec.model.name!r}: its position "
            f"embeddings hold at most {limit} tokens (use max_length <= {limit})",
        )
        found = True
    return found


def check_paths(spec: ExperimentSpec, name: str, base_dir: str, report) -> bool:
    """Local data files, read up front (registry.datafiles): each exists, has every declared column, and
    only labels the task declares (or its label_map covers); relative paths resolve against the file's
    folder. A regression task refuses the methods that need class outputs."""
    task = spec.task
    found = False
    refused = REFUSED_FOR_REGRESSION.get(spec.prune.method) if is_regression(task) else None
    if refused:
        report(name, "prune.method", f"{spec.prune.method} cannot prune a regression task ({task.name}): {refused}")
        found = True
    if task.name == CUSTOM and task.labels is None:
        return found  # reported as a missing key already
    labels, regression = label_names(task), is_regression(task)
    sources = [
        ("task.train", task.train, labels),
        ("task.eval", task.eval, labels),
        *((f"task.ood.{o.name}", o, o.labels or labels) for o in task.ood),
    ]
    for key, source, set_labels in sources:
        if source is None:
            continue
        for suffix, message in check_source(source, list(set_labels), regression, base_dir):
            report(name, f"{key}.{suffix}", message)
            found = True
    return found


def check_search(spec: ExperimentSpec, name: str, report) -> bool:
    """Search-space keys must be the method's searchable parameters, and both ends of each range must be
    values the method accepts. True when a problem was reported."""
    method = METHODS.get(spec.prune.method)
    known = method.searchable()
    found = False
    for key, dim in spec.search.space.items():
        where = f"search.space.{key}"
        if key not in known:
            report(
                name,
                where,
                f"{spec.prune.method} has no searchable parameter {key!r}{_did_you_mean(key, known)} "
                f"(searchable: {', '.join(known)})",
            )
            found = True
            continue
        ends = dim.choices if hasattr(dim, "choices") else [dim.low, dim.high]
        for value in ends:
            try:
                method.with_values(spec.prune.params, {key: value})
            except ValidationError as e:
                report(
                    name,
                    where,
                    f"{toml_value(value)} is not a valid {key}: "
                    f"{describe({k: v for k, v in e.errors()[0].items() if k != 'input'})}",
                )
                found = True
    if spec.search.sampler == "bisection" and not found:
        knob = method.size_knob[0] if method.size_knob else None
        if knob not in spec.search.space:
            report(
                name,
                "search.sampler",
                "the bisection sampler searches the size knob "
                + (f"`{knob}`" if knob else f"(target or strength), which {spec.prune.method} does not have")
                + "; use tpe or random",
            )
            found = True
    return found


def check_names(raw: dict, name: str, base_dir: str, report) -> bool:
    """Model and task names (did you mean), checked even when other keys of the experiment are wrong."""
    found = False
    prune = raw.get("prune")  # a dict, or the PruneSpec _validate made of it: not every model exports
    export = (
        prune.get("export") if isinstance(prune, dict) else getattr(getattr(prune, "params", None), "export", None)
    ) is True
    for key, spec_type, check in (
        ("model", ModelSpec, lambda s: check_model_name(s, base_dir, export)),
        ("task", TaskSpec, check_task),
    ):
        try:
            spec = spec_type.model_validate(raw.get(key))
        except ValidationError:
            continue  # reported by the full validation
        for dotted, msg in check(spec):
            report(name, dotted, msg)
            found = True
    return found
