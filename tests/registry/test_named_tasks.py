"""A task declared once as [tasks.NAME] and used by name (`task = "NAME"`) by experiments or [defaults]: the same
resolved config (so the same fingerprints) as the table written inline, and problems located at both ends."""

from __future__ import annotations

import pytest

from registry.loader import load_runs
from registry.problems import ConfigError
from tests.helpers import PROJECT_ROOT

TASK = """name = "synthetic-nli"
max_length = 32
params = { n_train = 64, n_id_eval = 32, n_ood_per_subcase = 4 }
"""

INLINE = f"""
[defaults.model]
name = "micro-bert"

[[experiment]]
name = "a"
seeds = [0, 1]
[experiment.task]
{TASK}
[experiment.prune]
method = "magnitude"

[[experiment]]
name = "b"
[experiment.task]
{TASK}
[experiment.prune]
method = "importance"
"""

NAMED = f"""
[defaults.model]
name = "micro-bert"

[tasks.small-nli]
{TASK}
[[experiment]]
name = "a"
seeds = [0, 1]
task = "small-nli"
[experiment.prune]
method = "magnitude"

[[experiment]]
name = "b"
task = "small-nli"
[experiment.prune]
method = "importance"
"""

IN_DEFAULTS = f"""
[defaults]
task = "small-nli"
model = {{ name = "micro-bert" }}

[tasks.small-nli]
{TASK}
[[experiment]]
name = "a"
seeds = [0, 1]
[experiment.prune]
method = "magnitude"

[[experiment]]
name = "b"
[experiment.prune]
method = "importance"
"""


@pytest.mark.parametrize("text", [NAMED, IN_DEFAULTS], ids=["experiments", "defaults"])
def test_a_named_task_gives_the_fingerprints_of_the_inline_table(write_toml, text):
    inline = load_runs(write_toml(INLINE, "inline.toml"))
    named = load_runs(write_toml(text, "named.toml"))
    assert [r.fingerprint for r in named] == [r.fingerprint for r in inline]
    assert len(named) == 3 and {r.task.max_length for r in named} == {32}


def test_an_unknown_task_name_is_located_where_it_is_used(write_toml):
    path = write_toml(
        NAMED.replace(
            'task = "small-nli"\n[experiment.prune]\nmethod = "importance"',
            'task = "smal-nli"\n[experiment.prune]\nmethod = "importance"',
        )
    )
    with pytest.raises(ConfigError) as e:
        load_runs(path)
    (problem,) = e.value.problems
    line = path.read_text().splitlines().index('task = "smal-nli"') + 1
    assert str(problem) == (
        f"{path}:{line}: experiment 'b', key `task`: no task table named 'smal-nli'; "
        "did you mean 'small-nli'? (named tasks: small-nli)"
    )


def test_a_bad_key_in_a_named_task_is_located_in_its_table_once_with_the_line_that_uses_it(write_toml):
    path = write_toml(NAMED.replace("max_length = 32", "max_lenght = 32"))
    with pytest.raises(ConfigError) as e:
        load_runs(path)
    lines = path.read_text().splitlines()
    defined = lines.index("max_lenght = 32") + 1
    used = lines.index('task = "small-nli"') + 1  # experiment a, the first to use it
    (problem,) = [p for p in e.value.problems if "max_lenght" in p.key]
    assert problem.line == defined and problem.key == "tasks.small-nli.max_lenght"
    assert f"used by experiment 'a' at line {used}" in problem.message and "max_length" in problem.message


def test_the_shipped_offline_study_names_its_tasks_and_keeps_its_fingerprints(shared_data, minilm):
    """studies/offline-minilm.toml declares SST-2 and CoLA once each; its 18 runs keep the fingerprints they had
    when every experiment spelled its task out (these are those fingerprints). Its data and model live in
    ../shared, so it validates only where that exists."""

    study = PROJECT_ROOT / "studies" / "offline-minilm.toml"
    assert study.read_text().count("[tasks.") == 2 and "[experiment.task]" not in study.read_text()
    runs = load_runs(study)
    assert sorted(r.fingerprint for r in runs) == [
        "09f9fc7ee5a2f45a",
        "1a3beab84465598c",
        "1adc09cbf1f91434",
        "2f23dff71507a23e",
        "37823c4c7eb03f60",
        "3fc086bdfee83603",
        "44a5e4efdb26d86c",
        "7080aeb8ce1aba23",
        "9ade4ac77b8b3f90",
        "9fd02295b0bdfec5",
        "aa3ebde013c984e9",
        "b5dc1dc9256ac6f9",
        "bebf444a728af2e6",
        "bec285756d65b16a",
        "bf2820cbcf16d1cc",
        "c9c7677a46a2a09e",
        "d3692ec710303d36",
        "fa52e878555d177e",
    ]
