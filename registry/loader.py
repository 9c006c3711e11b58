"""experiments.toml -> validated, expanded runs. Every problem is collected before anything is raised."""

from __future__ import annotations

import copy
import difflib
import itertools
import typing
from pathlib import Path
from typing import Any

import tomllib
from pydantic import BaseModel, ValidationError

from registry.catalogue import UnknownName
from registry.catalogue import did_you_mean as _did_you_mean
from registry.checks import check_model_fits_task, check_names, check_paths, check_search
from registry.errors import report_errors
from registry.methods import METHODS
from registry.problems import ConfigError, Problem, locate, toml_value
from registry.schema import (
    TOP_LEVEL_KEYS,
    CkaSpec,
    ExperimentSpec,
    FinetuneSpec,
    PruneSpec,
    RunSpec,
)
from registry.tasks import (
    CUSTOM,
    TASKS,
    eval_set_names,
)
from registry.tomlfile import decode, toml_problem

MAX_RUNS = 10_000  # expanded runs per experiment: a larger grid is almost surely a typo


def load_runs(path: str | Path) -> list[RunSpec]:
    """Parse, validate and expand every experiment; raise ConfigError listing all problems."""
    path = Path(path)
    fname = str(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError([Problem(fname, None, None, "", f"cannot read the file: {e.strerror}")]) from None
    text = decode(raw, fname)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([toml_problem(e, text, fname)]) from None

    problems: list[Problem] = []
    defaults = data.get("defaults", {})

    named_tasks = data.get("tasks", {})

    def reporter(index: int | None, exp: str | None, own: dict, task_ref: tuple[str, list] | None = None):
        """report(experiment, key, message[, here]) for the experiment at `index` (None: the file): a key
        that the experiment takes from [defaults] is reported once, at its line there; a key inside a named
        task (`task_ref`: its name and where the experiment names it) once, at its line in [tasks.NAME] and
        with the line that uses it; `here` keeps a problem on the experiment (a required key it lacks)."""

        def report(_name: str | None, key: str, message: str, here: bool = False) -> None:
            parts = key.split(".") if key else []
            if task_ref is not None and parts[:1] == ["task"] and len(parts) > 1:
                task_name, used_at = task_ref
                p = Problem(
                    fname,
                    locate(text, ["tasks", task_name, *parts[1:]]),
                    None,
                    f"tasks.{task_name}.{'.'.join(parts[1:])}",
                    f"{message} (the task is used by experiment {exp!r} at line {locate(text, used_at)})",
                )
                if not any(q.key == p.key and q.line == p.line for q in problems):  # once, not once per user
                    problems.append(p)
                return
            if index is None:
                p = Problem(fname, locate(text, parts), None, key, message)
            elif not here and isinstance(defaults, dict) and _depth(defaults, parts) > _depth(own, parts) < len(parts):
                p = Problem(fname, locate(text, ["defaults", *parts]), None, key, message, in_defaults=True)
            else:
                p = Problem(fname, locate(text, ["experiment", index, *parts]), exp, key, message)
            if p not in problems:
                problems.append(p)

        return report

    file_report = reporter(None, None, {})
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            fields = [f for f in ExperimentSpec.model_fields if f != "name"]
            hint = _did_you_mean(key, TOP_LEVEL_KEYS)
            if not hint and (close := difflib.get_close_matches(key, fields, n=1, cutoff=0.6)):
                hint = (
                    f"; did you mean {close[0]!r}, under [defaults] or an [[experiment]]?"
                    if close[0] != key
                    else f"; {key!r} is an experiment's key: put it under [defaults] or an [[experiment]]"
                )
            file_report(
                None,
                key,
                f"unknown top-level {'table' if isinstance(data[key], dict) else 'key'}{hint} "
                "(the file holds [defaults] and [[experiment]] tables)",
            )
    if not isinstance(defaults, dict):
        file_report(None, "defaults", "expected a table [defaults]")
        defaults = {}
    if "name" in defaults:
        file_report(None, "defaults.name", "an experiment name cannot have a default")
    experiments = data.get("experiment", [])
    if not isinstance(experiments, list) or not all(isinstance(e, dict) for e in experiments):
        file_report(
            None, "experiment", "expected an array of tables: write each experiment under its own [[experiment]] header"
        )
        experiments = None
    elif not experiments:
        file_report(
            None, "experiment", "no [[experiment]] declared" + (" (the file is empty)" if not text.strip() else "")
        )

    if not isinstance(named_tasks, dict) or not all(isinstance(t, dict) for t in named_tasks.values()):
        file_report(None, "tasks", 'expected task tables: write each as [tasks.NAME] and use it as task = "NAME"')
        named_tasks = {}

    runs: list[RunSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(experiments or []):
        name = raw.get("name") if isinstance(raw.get("name"), str) and raw.get("name") else f"#{i + 1}"
        merged = _deep_merge(defaults, raw)
        task_ref = None
        if isinstance(merged.get("task"), str):  # task = "NAME": the table [tasks.NAME]
            used_at = ["experiment", i, "task"] if "task" in raw else ["defaults", "task"]
            task_ref = (merged["task"], used_at)
        report = reporter(i, name, raw, task_ref)
        if name in seen:
            report(name, "name", "duplicate experiment name (each experiment needs its own)", here=True)
        seen.add(name)
        if task_ref is not None:
            if task_ref[0] not in named_tasks:
                known = ", ".join(named_tasks) or "none: declare one as [tasks.NAME]"
                problem = Problem(
                    fname,
                    locate(text, task_ref[1]),
                    None if "task" not in raw else name,
                    "task",
                    f"no task table named {task_ref[0]!r}{_did_you_mean(task_ref[0], list(named_tasks))} "
                    f"(named tasks: {known})",
                    in_defaults="task" not in raw,
                )
                if problem not in problems:
                    problems.append(problem)
                continue
            merged["task"] = copy.deepcopy(named_tasks[task_ref[0]])
        runs += _expand(merged, name, str(path.parent.resolve()), report)
    if problems:
        raise ConfigError(problems)
    return runs


def _depth(node: Any, parts: list[str]) -> int:
    """How many leading parts of a dotted key are written in `node` (an array element by position or name)."""
    n = 0
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, list) and (named := [x for x in node if isinstance(x, dict) and x.get("name") == part]):
            node = named[0]
        else:
            break
        n += 1
    return n


def _expand(raw: dict, name: str, base_dir: str, report) -> list[RunSpec]:
    """Validate one experiment and expand list values of sweepable fields into a grid x seeds."""
    raw = copy.deepcopy(raw)
    prune = raw.get("prune")
    params_model: type[BaseModel] | None = None
    methods = ", ".join(METHODS.names())
    if prune is not None and not isinstance(prune, dict):
        report(
            name,
            "prune",
            f'expected a table with the pruning method, e.g. prune = {{ method = "magnitude" }} (got '
            f"{toml_value(prune)})",
        )
    elif not isinstance(prune, dict) or "method" not in prune:
        report(
            name, "prune.method", f'required: a [experiment.prune] table with `method = "..."` ({methods})', here=True
        )
    elif not isinstance(prune["method"], str):
        report(
            name, "prune.method", f"expected the method's name in quotes: {methods} (got {toml_value(prune['method'])})"
        )
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
        report(
            name,
            axes[0][0] if axes else "seeds",
            f"the grid expands to {size * len(seeds) * len(prune_seeds):,} runs; "
            f"at most {MAX_RUNS:,} per experiment (split it into several experiments)",
        )
        return []
    for key in ("seeds", "prune_seeds"):
        values = raw.get(key)
        if isinstance(values, list) and len(set(map(repr, values))) != len(values):
            report(name, key, f"each seed may appear once (got {toml_value(values)})")
            return []
    runs: list[RunSpec] = []
    points = list(itertools.product(*[v for _, v in axes])) or [()]
    for point in points:
        concrete = copy.deepcopy(raw)
        for (dotted, _), value in zip(axes, point):
            section, key = dotted.split(".")
            concrete[section][key] = value
        spec = _validate(concrete, name, params_model, report)
        names_bad = check_names(concrete, name, base_dir, report)
        if spec is None:
            continue
        # the data are read even when a name or map is wrong, so one pass reports every problem
        if (
            check_paths(spec, name, base_dir, report) if spec.task.name == CUSTOM or spec.task.name in TASKS else False
        ) or names_bad:
            continue
        if check_model_fits_task(spec, concrete, name, base_dir, report):
            continue
        if spec.cka is not None and spec.cka.split not in (sets := eval_set_names(spec.task)):
            report(
                name,
                "cka.split",
                f"no evaluation set {spec.cka.split!r}{_did_you_mean(spec.cka.split, sets)} (sets: {', '.join(sets)})",
            )
            continue
        if spec.search is not None and check_search(spec, name, report):
            continue
        for seed in spec.seeds:
            for prune_seed in spec.prune_seeds or [seed]:
                runs.append(
                    RunSpec(
                        experiment=spec.name,
                        description=spec.description,
                        tags=spec.tags,
                        seed=seed,
                        prune_seed=prune_seed,
                        model=spec.model,
                        task=spec.task,
                        finetune=spec.finetune,
                        prune=spec.prune,
                        cka=spec.cka,
                        runtime=spec.runtime,
                        search=spec.search,
                        axes={k: v for (k, _), v in zip(axes, point)},
                        base_dir=base_dir,
                    )
                )
    return runs


def _validate(raw: dict, name: str, params_model, report) -> ExperimentSpec | None:
    ok = True
    prune = raw.get("prune")
    if params_model is not None:
        params_raw = {k: v for k, v in prune.items() if k != "method"}
        try:
            raw["prune"] = PruneSpec(method=prune["method"], params=params_model.model_validate(params_raw))
        except ValidationError as e:
            ok = False
            report_errors(e, "prune", name, report, params_model, params_raw, method=prune["method"])
    try:
        spec = ExperimentSpec.model_validate(raw)
    except ValidationError as e:
        report_errors(
            e, "", name, report, ExperimentSpec, raw, skip_prefix="prune" if params_model is None or not ok else None
        )
        return None
    return spec if ok else None


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


__all__ = ["load_runs", "select", "find_experiment_names", "ConfigError", "Problem"]
