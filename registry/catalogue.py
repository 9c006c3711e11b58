"""Named catalogues (methods, tasks, built-in models) with "did you mean" lookups.

A catalogue maps a user-visible name to an entry and a one-line summary. Unknown names raise
`UnknownName`, whose message lists close matches and everything that exists.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


def did_you_mean(name: str, options, cutoff: float = 0.6) -> str:
    """ "; did you mean 'x'?" for the close matches of `name` among `options`, or ""."""
    hits = difflib.get_close_matches(name, list(options), n=2, cutoff=cutoff)
    return f"; did you mean {' or '.join(repr(h) for h in hits)}?" if hits else ""


class UnknownName(KeyError):
    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        self.suggestions = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        super().__init__(str(self))

    def __str__(self) -> str:
        hint = f"; did you mean {' or '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        return f"unknown {self.kind} {self.name!r}{hint} (known: {', '.join(self.known)})"


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    value: T
    summary: str


class Catalogue(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, value: T, summary: str) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = Entry(name, value, summary)
        return value

    def get(self, name: str) -> T:
        try:
            return self._entries[name].value
        except KeyError:
            raise UnknownName(self.kind, name, self.names()) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def close_match(self, name: str, cutoff: float = 0.8) -> str | None:
        hits = difflib.get_close_matches(name, self.names(), n=1, cutoff=cutoff)
        return hits[0] if hits else None
