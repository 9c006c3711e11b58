"""Configuration problems: where (file, line, experiment, dotted key) and what was expected."""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    experiment: str | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        exp = f" experiment {self.experiment!r}," if self.experiment else ""
        key = f" key `{self.key}`:" if self.key else ""
        return f"{where}:{exp}{key} {self.message}"


class ConfigError(Exception):
    """Every problem found in one pass over experiments.toml."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")


def locate(text: str, experiment: str | None, key: str) -> int | None:
    """Best-effort 1-based line of `key` (dotted) inside the block of `experiment`, else in [defaults].

    tomllib keeps no positions for values, so this scans the text: it finds the experiment's block by
    its `name = "..."` line, then the key's last component under the right table header or inline table.
    """
    lines = text.splitlines()
    blocks = _blocks(lines)
    parts = [p for p in key.split(".") if not p.isdigit()] or [""]
    candidates = []
    if experiment is not None:
        name_re = re.compile(r"^\s*name\s*=\s*[\"']" + re.escape(experiment) + r"[\"']")
        candidates += [b for b in blocks if b[0] == "experiment" and any(name_re.match(lines[i]) for i in range(b[1], b[2]))]
    candidates += [b for b in blocks if b[0] == "defaults"]
    for _, start, end in candidates:
        hit = _find_key(lines, start, end, parts)
        if hit is not None:
            return hit + 1
    if experiment is not None and candidates and candidates[0][0] == "experiment":
        return candidates[0][1] + 1
    return None


def _blocks(lines: list[str]) -> list[tuple[str, int, int]]:
    """(top-level table, first line, end line) for each [[experiment]] element and [defaults]."""
    starts = []
    for i, line in enumerate(lines):
        m = _HEADER.match(line)
        if not m:
            continue
        top = m.group(1).split(".")[0].strip().strip("\"'")
        if line.lstrip().startswith("[[") and top == "experiment" and m.group(1).strip() == "experiment":
            starts.append(("experiment", i))
        elif top == "defaults" and m.group(1).strip() == "defaults":
            starts.append(("defaults", i))
        elif "." not in m.group(1):
            starts.append((top, i))
    return [(kind, s, starts[j + 1][1] if j + 1 < len(starts) else len(lines)) for j, (kind, s) in enumerate(starts)]


def _find_key(lines: list[str], start: int, end: int, parts: list[str]) -> int | None:
    last = parts[-1]
    section = ".".join(parts[:-1])
    key_re = re.compile(r"^\s*[\"']?" + re.escape(last) + r"[\"']?\s*=")
    inline_re = re.compile(r"\b" + re.escape(last) + r"\s*=")
    current = ""
    for i in range(start, end):
        m = _HEADER.match(lines[i])
        if m:
            current = ".".join(m.group(1).split(".")[1:]).strip()
            continue
        if current == section and key_re.match(lines[i]):
            return i
        if section and current == "" and re.match(r"^\s*" + re.escape(parts[0]) + r"\s*=", lines[i]):
            if inline_re.search(lines[i].split("=", 1)[1]) or len(parts) == 1:
                return i
    if section:  # the section itself, when the key is missing
        sec_re = re.compile(r"^\s*\[\s*\w+\." + re.escape(section) + r"\s*\]|^\s*" + re.escape(parts[0]) + r"\s*=")
        for i in range(start, end):
            if sec_re.match(lines[i]):
                return i
    return None
