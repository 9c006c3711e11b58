"""Configuration problems: where (file, line, experiment, dotted key) and what was expected, in the
README's words (pydantic's error types are translated here, never shown)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

from registry.catalogue import did_you_mean


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    experiment: str | None
    key: str
    message: str
    in_defaults: bool = False  # the key is set in [defaults]: reported once, not once per experiment

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        exp = f" experiment {_shown(self.experiment)}," if self.experiment is not None else ""
        scope = " [defaults]," if self.in_defaults else ""
        key = f" key `{self.key}`:" if self.key else ""
        return f"{where}:{exp}{scope}{key} {self.message}"


def _shown(name: str) -> str:
    """An experiment name as printed: quoted, control characters escaped, at most 60 characters."""
    text = repr(name)
    return text if len(text) <= 60 else text[:56] + "...'"


class ConfigError(Exception):
    """Every problem found in one pass over experiments.toml."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# --- where a key is written ---------------------------------------------------------------------------


def locate(text: str, path: Sequence[str | int]) -> int | None:
    """1-based line where the deepest written prefix of `path` is, e.g. ("experiment", 0, "task", "ood",
    "yelp", "pred_map"): the key's own line when it is written, else its table's (a missing key, a key set
    by [defaults]). An array element may be named by its position or by its `name` value."""
    try:
        lines, names = _positions(text)
    except Exception:  # the text parsed as TOML already; a scanner slip only loses the line
        return None
    found, cur = None, ()
    for part in path:
        nxt = cur + (part,)
        if nxt not in lines and isinstance(part, str):
            if part.isdigit() and cur + (int(part),) in lines:
                nxt = cur + (int(part),)
            else:
                named = [p for p, n in names.items() if p[:-1] == cur and n == part]
                nxt = named[0] if named else nxt
        if nxt not in lines:
            break
        cur, found = nxt, lines[nxt]
    return found


@lru_cache(maxsize=8)
def _positions(text: str) -> tuple[dict[tuple, int], dict[tuple, str]]:
    scanner = _Scanner(text)
    scanner.document()
    return scanner.lines, scanner.names


class _Scanner:
    """A small TOML reader that keeps what tomllib drops: the line of every key and table header. It runs
    on text tomllib has accepted, so it need not report errors."""

    def __init__(self, text: str):
        self.s, self.i, self.line = text, 0, 1
        self.lines: dict[tuple, int] = {}
        self.names: dict[tuple, str] = {}  # array element path -> its `name` string
        self.arrays: dict[tuple, int] = {}  # array-of-tables path -> count so far

    def peek(self, n: int = 1) -> str:
        return self.s[self.i : self.i + n]

    def advance(self, n: int = 1) -> None:
        self.line += self.s.count("\n", self.i, self.i + n)
        self.i += n

    def blank(self, newlines: bool) -> None:
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.advance()
            elif c == "#":
                end = self.s.find("\n", self.i)
                self.advance((len(self.s) if end < 0 else end) - self.i)
            else:
                return

    def document(self) -> None:
        table: tuple = ()
        while True:
            self.blank(newlines=True)
            if self.i >= len(self.s):
                return
            if self.peek() == "[":
                table = self.header()
            else:
                self.keyval(table)

    def header(self) -> tuple:
        line, many = self.line, self.peek(2) == "[["
        self.advance(2 if many else 1)
        keys = self.key()
        self.blank(newlines=False)
        self.advance(2 if many else 1)
        path: tuple = ()
        for k in keys[:-1]:
            path += (k,)
            if path in self.arrays:
                path += (self.arrays[path] - 1,)
            self.lines.setdefault(path, line)  # a table first made by a deeper header
        path += (keys[-1],)
        if many:
            self.lines.setdefault(path, line)
            self.arrays[path] = self.arrays.get(path, 0) + 1
            path += (self.arrays[path] - 1,)
        self.lines[path] = line
        return path

    def key(self) -> list[str]:
        parts = []
        while True:
            self.blank(newlines=False)
            c = self.peek()
            if c in "\"'":
                parts.append(self.string())
            else:
                m = re.compile(r"[A-Za-z0-9_-]+").match(self.s, self.i)
                parts.append(m.group(0))
                self.advance(len(m.group(0)))
            self.blank(newlines=False)
            if self.peek() != ".":
                return parts
            self.advance()

    def keyval(self, table: tuple) -> None:
        line = self.line
        keys = self.key()
        path = table + tuple(keys)
        for n in range(len(table) + 1, len(path) + 1):
            self.lines.setdefault(path[:n], line)
        self.lines[path] = line
        self.blank(newlines=False)
        self.advance()  # =
        self.blank(newlines=False)
        value = self.value(path)
        if keys == ["name"] and isinstance(value, str) and table and isinstance(table[-1], int):
            self.names[table] = value

    def value(self, path: tuple) -> Any:
        c = self.peek()
        if c in "\"'":
            return self.string()
        if c == "{":
            self.advance()
            while True:
                self.blank(newlines=False)
                if self.peek() == "}":
                    self.advance()
                    return None
                if self.peek() == ",":
                    self.advance()
                    continue
                self.keyval(path)
        if c == "[":
            self.advance()
            index = 0
            while True:
                self.blank(newlines=True)
                if self.peek() == "]":
                    self.advance()
                    return None
                if self.peek() == ",":
                    self.advance()
                    continue
                self.lines.setdefault(path + (index,), self.line)
                self.value(path + (index,))
                index += 1
        m = re.compile(r"[^\s,\]}#]+").match(self.s, self.i)  # number, boolean, date
        self.advance(len(m.group(0)))
        return None

    def string(self) -> str:
        quote = self.peek()
        if self.peek(3) == quote * 3:
            end = self.s.find(quote * 3, self.i + 3)
            while self.s[end + 3 : end + 4] == quote:  # up to two quotes may close the content
                end += 1
            self.advance(end + 3 - self.i)
            return ""
        j = self.i + 1
        while self.s[j] != quote:
            j += 2 if quote == '"' and self.s[j] == "\\" else 1
        raw = self.s[self.i + 1 : j]
        self.advance(j + 1 - self.i)
        if quote == "'":
            return raw
        try:
            return json.loads('"' + raw + '"')
        except ValueError:
            return raw


# --- pydantic errors in the README's words ------------------------------------------------------------

_TYPES = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "text in quotes",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list [...]",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "dataclass_type": "a table",
    "none_required": "nothing",
}

# patterns of the schema's string fields, in words
PATTERN_WORDS = {
    r"^[a-z0-9][a-z0-9_-]{0,63}$": (
        "a slug: 1 to 64 lower-case letters, digits, - and _, starting with a letter or digit"
    ),
    r"^(auto|cpu|cuda|cuda:[0-9]+|mps)$": "auto, cpu, cuda, cuda:N (a GPU number) or mps",
}


def toml_value(value: Any, limit: int = 60) -> str:
    """A value as it would be written in TOML (true, "text", [1, 2], { a = 1 }), shortened."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value)
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(toml_value(v, limit) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{ " + ", ".join(f"{k} = {toml_value(v, limit)}" for k, v in value.items()) + " }" if value else "{}"
    elif value is None:
        text = "nothing"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def expectations(errors: list[dict]) -> str | None:
    """What a value of a union of types should have been, e.g. "a number, text in quotes or true or false"."""
    words = list(dict.fromkeys(_TYPES[e["type"]] for e in errors if e["type"] in _TYPES))
    if not words or len(words) != len(errors):
        return None
    if "a number" in words and "a whole number" in words:
        words.remove("a whole number")
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def describe(error: dict, known: Sequence[str] = ()) -> str:
    """One pydantic error as a sentence in the README's words; `known` (the keys of the table) gives
    "did you mean" for an unknown key."""
    kind, ctx = error["type"], error.get("ctx") or {}
    given = error.get("input")
    got = "" if "input" not in error else " (got a table)" if isinstance(given, dict) else f" (got {toml_value(given)})"
    if kind == "extra_forbidden":
        name = str(error["loc"][-1]) if error.get("loc") else ""
        return "unknown key" + did_you_mean(name, known)
    if kind == "missing":
        return "required key is missing"
    if kind in _TYPES:
        return f"expected {_TYPES[kind]}{got}"
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = did_you_mean(given, options) if isinstance(given, str) else ""
        return f"expected {_one_of(options)}{got}{hint}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = {
            "greater_than": ("more than", "gt"),
            "greater_than_equal": ("at least", "ge"),
            "less_than": ("less than", "lt"),
            "less_than_equal": ("at most", "le"),
        }[kind]
        return f"must be {bound[0]} {_number(ctx.get(bound[1]))}{got}"
    if kind in ("too_short", "too_long"):
        n = ctx.get("min_length" if kind == "too_short" else "max_length")
        return (
            f"needs at least {n} value{'s' * (n != 1)}" if kind == "too_short" else f"takes at most {n} values"
        ) + got
    if kind == "string_pattern_mismatch":
        return f"expected {PATTERN_WORDS.get(ctx.get('pattern'), 'text of another form')}{got}"
    if kind in ("string_too_short", "string_too_long"):
        return (
            "must not be empty"
            if kind == "string_too_short"
            else f"is too long (at most {ctx.get('max_length')} characters)"
        ) + got
    if kind == "finite_number":
        return f"must be a finite number{got}"
    if isinstance(given, dict):
        got = ""
    if kind in ("value_error", "assertion_error"):
        return str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    # a kind the schema does not produce today: keep pydantic's sentence, in our words
    return (
        str(error["msg"])
        .replace("Input should be", "expected")
        .replace("Extra inputs are not permitted", "unknown key")
        + got
    )


def _one_of(options: list[str]) -> str:
    quoted = [json.dumps(o) for o in options]
    return quoted[0] if len(quoted) == 1 else "one of " + ", ".join(quoted)


def _number(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)
