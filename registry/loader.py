"""experiments.toml -> validated, expanded runs. Every problem is collected before anything is raised."""
from __future__ import annotations

import copy
import itertools
import re
import tomllib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from registry.problems import ConfigError, Problem, locate
from registry.schema import TOP_LEVEL_KEYS, CkaSpec, ExperimentSpec, FinetuneSpec, ModelSpec, PruneSpec, RunSpec, TaskSpec
from registry.catalogue import UnknownName, did_you_mean as _did_you_mean
from registry.methods import METHODS
from registry.models import check_model_name
from registry.datafiles import check_source
from registry.tasks import CUSTOM, REFUSED_FOR_REGRESSION, TASKS, check_task, eval_set_names, is_regression, label_names


MAX_RUNS = 10_000  # expanded runs per experiment: a larger grid is almost surely a typo


def load_runs(path: str | Path) -> list[RunSpec]:
    """Parse, validate and expand every experiment; raise ConfigError listing all problems."""
    path = Path(path)
    fname = str(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError([Problem(fname, None, None, "", f"cannot read the file: {e.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:  # TOML is UTF-8; say where the offending byte is
        line = raw[: e.start].count(b"\n") + 1
        column = e.start - raw.rfind(b"\n", 0, e.start)
        raise ConfigError([Problem(fname, line, None, "", f"not UTF-8 text: byte 0x{raw[e.start]:02x} at column "
                                   f"{column} (save the file as UTF-8)")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise ConfigError([Problem(fname, int(m.group(1)) if m else None, None, "", f"not valid TOML: {e}")]) from None

    problems: list[Problem] = []

    def report(exp: str | None, key: str, message: str) -> None:
        p = Problem(fname, locate(text, exp, key), exp, key, message)
        if p not in problems:
            problems.append(p)

    for key in data:
        if key not in TOP_LEVEL_KEYS:
            report(None, key, f"unknown top-level table{_did_you_mean(key, TOP_LEVEL_KEYS)} (expected: [defaults], [[experiment]])")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        report(None, "defaults", "expected a table [defaults]")
        defaults = {}
    if "name" in defaults:
        report(None, "defaults.name", "an experiment name cannot have a default")
    experiments = data.get("experiment", [])
    if not isinstance(experiments, list) or not all(isinstance(e, dict) for e in experiments):
        report(None, "experiment", "expected an array of tables [[experiment]]")
        experiments = []
    if not experiments:
        report(None, "experiment", "no [[experiment]] declared")

    runs: list[RunSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(experiments):
        name = raw.get("name") if isinstance(raw.get("name"), str) else f"#{i + 1}"
        if name in seen:
            report(name, "name", "duplicate experiment name")
        seen.add(name)
        merged = _deep_merge(defaults, raw)
        runs += _expand(merged, name, str(path.parent.resolve()), report)
    if problems:
        raise ConfigError(problems)
    return runs


def _expand(raw: dict, name: str, base_dir: str, report) -> list[RunSpec]:
    """Validate one experiment and expand list values of sweepable fields into a grid x seeds."""
    raw = copy.deepcopy(raw)
    prune = raw.get("prune")
    params_model: type[BaseModel] | None = None
    if not isinstance(prune, dict) or not isinstance(prune.get("method"), str):
        report(name, "prune.method", "required: a [experiment.prune] table with `method = \"...\"`")
    else:
        try:
            params_model = METHODS.get(prune["method"]).params
        except UnknownName as e:
            report(name, "prune.method", str(e))

    axes: list[tuple[str, list]] = []
    for section, model in (("finetune", FinetuneSpec), ("prune", params_model), ("cka", CkaSpec)):
        table = raw.get(section)
        if model is None or not isinstance(table, dict):
            continue
        for key, value in table.items():
            if key == "method" or key not in model.model_fields or not isinstance(value, list):
                continue
            if _accepts_list(model.model_fields[key].annotation):
                continue
            if not value:
                report(name, f"{section}.{key}", "an empty list sweeps nothing; give at least one value")
                return []
            axes.append((f"{section}.{key}", value))

    size = 1
    for _, values in axes:
        size *= len(values)
    seeds = raw.get("seeds", [0]) if isinstance(raw.get("seeds", [0]), list) else [0]
    prune_seeds = raw.get("prune_seeds") if isinstance(raw.get("prune_seeds"), list) else [None]
    if size * max(1, len(seeds)) * max(1, len(prune_seeds)) > MAX_RUNS:  # refused before the grid is built
        report(name, axes[0][0] if axes else "seeds", f"the grid expands to {size * len(seeds) * len(prune_seeds):,} runs; "
               f"at most {MAX_RUNS:,} per experiment (split it into several experiments)")
        return []
    for key in ("seeds", "prune_seeds"):
        values = raw.get(key)
        if isinstance(values, list) and len(set(map(repr, values))) != len(values):
            report(name, key, f"each seed may appear once (got {values})")
            return []
    runs: list[RunSpec] = []
    points = list(itertools.product(*[v for _, v in axes])) or [()]
    for point in points:
        concrete = copy.deepcopy(raw)
        for (dotted, _), value in zip(axes, point):
            section, key = dotted.split(".")
            concrete[section][key] = value
        spec = _validate(concrete, name, params_model, report)
        names_bad = _check_names(concrete, name, base_dir, report)
        if spec is None:
            continue
        # the data are read even when a name or map is wrong, so one pass reports every problem
        if (_check_paths(spec, name, base_dir, report) if spec.task.name == CUSTOM or spec.task.name in TASKS else False) or names_bad:
            continue
        if spec.cka is not None and spec.cka.split not in (sets := eval_set_names(spec.task)):
            report(name, "cka.split", f"no evaluation set {spec.cka.split!r}{_did_you_mean(spec.cka.split, sets)} (sets: {', '.join(sets)})")
            continue
        if spec.search is not None and _check_search(spec, name, report):
            continue
        for seed in spec.seeds:
            for prune_seed in spec.prune_seeds or [seed]:
                runs.append(RunSpec(
                    experiment=spec.name, description=spec.description, tags=spec.tags, seed=seed,
                    prune_seed=prune_seed, model=spec.model, task=spec.task, finetune=spec.finetune,
                    prune=spec.prune, cka=spec.cka, runtime=spec.runtime, search=spec.search,
                    axes={k: v for (k, _), v in zip(axes, point)}, base_dir=base_dir,
                ))
    return runs


def _check_paths(spec: ExperimentSpec, name: str, base_dir: str, report) -> bool:
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
    sources = [("task.train", task.train, labels), ("task.eval", task.eval, labels),
               *((f"task.ood.{o.name}", o, o.labels or labels) for o in task.ood)]
    for key, source, set_labels in sources:
        if source is None:
            continue
        for suffix, message in check_source(source, list(set_labels), regression, base_dir):
            report(name, f"{key}.{suffix}", message)
            found = True
    return found


def _check_search(spec: ExperimentSpec, name: str, report) -> bool:
    """Search-space keys must be the method's searchable parameters, and both ends of each range must be
    values the method accepts. True when a problem was reported."""
    method = METHODS.get(spec.prune.method)
    known = method.searchable()
    found = False
    for key, dim in spec.search.space.items():
        where = f"search.space.{key}"
        if key not in known:
            report(name, where, f"{spec.prune.method} has no searchable parameter {key!r}{_did_you_mean(key, known)} (searchable: {', '.join(known)})")
            found = True
            continue
        ends = dim.choices if hasattr(dim, "choices") else [dim.low, dim.high]
        for value in ends:
            try:
                method.with_values(spec.prune.params, {key: value})
            except ValidationError as e:
                report(name, where, f"{value!r} is not a valid {key}: {e.errors()[0]['msg']}")
                found = True
    if spec.search.sampler == "bisection" and not found:
        knob = method.size_knob[0] if method.size_knob else None
        if knob not in spec.search.space:
            report(name, "search.sampler", "the bisection sampler searches the size knob "
                   + (f"`{knob}`" if knob else f"(target or strength), which {spec.prune.method} does not have") + "; use tpe or random")
            found = True
    return found


def _check_names(raw: dict, name: str, base_dir: str, report) -> bool:
    """Model and task names (did you mean), checked even when other keys of the experiment are wrong."""
    found = False
    prune = raw.get("prune")  # a dict, or the PruneSpec _validate made of it: not every model exports
    export = (prune.get("export") if isinstance(prune, dict) else getattr(getattr(prune, "params", None), "export", None)) is True
    for key, spec_type, check in (("model", ModelSpec, lambda s: check_model_name(s, base_dir, export)), ("task", TaskSpec, check_task)):
        try:
            spec = spec_type.model_validate(raw.get(key))
        except ValidationError:
            continue  # reported by the full validation
        for dotted, msg in check(spec):
            report(name, dotted, msg)
            found = True
    return found


def _validate(raw: dict, name: str, params_model, report) -> ExperimentSpec | None:
    ok = True
    prune = raw.get("prune")
    if params_model is not None:
        params_raw = {k: v for k, v in prune.items() if k != "method"}
        try:
            raw["prune"] = PruneSpec(method=prune["method"], params=params_model.model_validate(params_raw))
        except ValidationError as e:
            ok = False
            _report_errors(e, "prune", name, report, params_model)
    try:
        spec = ExperimentSpec.model_validate(raw)
    except ValidationError as e:
        _report_errors(e, "", name, report, ExperimentSpec, skip_prefix="prune" if params_model is None or not ok else None)
        return None
    return spec if ok else None


def _report_errors(err: ValidationError, prefix: str, name: str, report, model, skip_prefix: str | None = None) -> None:
    for e in err.errors():
        loc = [str(x) for x in e["loc"] if not str(x).startswith("function-after")]
        dotted = ".".join([prefix, *loc] if prefix else loc)
        if skip_prefix and dotted.startswith(skip_prefix):
            continue
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(loc[-1], _field_names(model, loc[:-1]))
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and not isinstance(e["input"], dict):
            msg = f"{msg} (got {e['input']!r})"
        report(name, dotted, msg)


def _field_names(model, path: list[str]) -> list[str]:
    """Field names of the nested model at `path`, for "did you mean" on unknown keys."""
    for part in path:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        inner = [a for a in typing.get_args(ann) if isinstance(a, type) and issubclass(a, BaseModel)]
        model = inner[0] if inner else ann
    return list(getattr(model, "model_fields", {}))


def _accepts_list(annotation) -> bool:
    if typing.get_origin(annotation) in (list, tuple):
        return True
    return any(_accepts_list(a) for a in typing.get_args(annotation))


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def find_experiment_names(runs: list[RunSpec]) -> list[str]:
    return list(dict.fromkeys(r.experiment for r in runs))


def select(runs: list[RunSpec], experiment: str | None) -> list[RunSpec]:
    """Runs of one experiment (with "did you mean"), or all runs."""
    if experiment is None:
        return runs
    names = find_experiment_names(runs)
    if experiment not in names:
        raise UnknownName("experiment", experiment, names)
    return [r for r in runs if r.experiment == experiment]


__all__ = ["load_runs", "select", "find_experiment_names", "ConfigError", "Problem", "Any"]
