"""Reading an experiments file: bytes -> UTF-8 text -> TOML, each failure a located problem in the README's
words (tomllib's own wording is translated, a UTF-16 file or a bad byte is named with its line)."""

from __future__ import annotations

import re

import tomllib

from registry.problems import ConfigError, Problem


def decode(raw: bytes, fname: str) -> str:
    """The file's text: UTF-8 (a UTF-8 byte-order mark is dropped); anything else is a located problem."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(
            [
                Problem(
                    fname,
                    1,
                    None,
                    "",
                    "UTF-16 text (it starts with a UTF-16 byte-order mark): "
                    "TOML files are UTF-8; save the file as UTF-8",
                )
            ]
        )
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:  # TOML is UTF-8; say where the offending byte is
        line = raw[: e.start].count(b"\n") + 1
        column = e.start - raw.rfind(b"\n", 0, e.start)
        raise ConfigError(
            [
                Problem(
                    fname,
                    line,
                    None,
                    "",
                    f"not UTF-8 text: byte 0x{raw[e.start]:02x} at column {column} (save the file as UTF-8)",
                )
            ]
        ) from None


_TOML_WORDS = (  # tomllib's wording -> the README's
    (re.compile(r"^Cannot overwrite a value"), "a key is set twice (or a table written twice)"),
    (
        re.compile(r"^Cannot declare \((.*)\) twice"),
        lambda m: (
            "the table ["
            + ".".join(re.findall(r"'([^']*)'", m.group(1)))
            + "] is declared twice (or was already set inline above)"
        ),
    ),
    (re.compile(r"^Invalid value"), 'invalid value (text needs quotes, e.g. name = "demo")'),
    (re.compile(r"^Illegal character '(.*)'"), lambda m: f"control character {m.group(1)} is not allowed in TOML text"),
)


def toml_problem(e: tomllib.TOMLDecodeError, text: str, fname: str) -> Problem:
    message = str(e)
    m = re.search(r"\(at line (\d+), column (\d+)\)$", message)
    if m:
        line, where = int(m.group(1)), f" (column {m.group(2)})"
    else:  # "at end of document": the last line that holds anything
        line = max((i for i, ln in enumerate(text.splitlines(), 1) if ln.strip()), default=None)
        where = " (at the end of the file)"
    message = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)$", "", message)
    for pattern, words in _TOML_WORDS:
        if hit := pattern.match(message):
            message = words(hit) if callable(words) else words
            break
    return Problem(fname, line, None, "", f"not valid TOML: {message}{where}")
