"""Only in `run.sh --cpu-smoke`: makes this machine's Python refuse to import any installed package that the lent GPU
machine would not have, so the smoke run fails here where the device run would fail there.

Allowed: the standard library, this project, the packages of the device image (benchmarks/gpu/device-packages.txt,
copied from the device README's KINDS.md) and the wheels prepare.sh carries (benchmarks/gpu/wheels.txt). Any other
installed distribution's module raises ModuleNotFoundError, as it would there (code that guards an optional import
with try/except carries on, as it would there), and importlib.util.find_spec answers None for it (transformers asks so
whether datasets is there before importing Trainer). Blocked names go to $GPU_GUARD_LOG; the distributions a process did
import to $GPU_GUARD_USED (one line each), so the carried list can be trimmed to what is used.

Versions are not checked: the device has its own (python 3.12, transformers 5.17, ...); run.sh prints them there.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import sys
from importlib.abc import MetaPathFinder
from importlib.metadata import distributions
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The device's huggingface_hub (1.33) and transformers (5.17) are older than this machine's (2.x, 5.25), whose new
# dependencies (httpx2, httpcore2, kernels, ...) the device's versions do without: allowed, as what they pull in.
NEWER_HERE = ("huggingface-hub", "transformers")


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _names(path: Path) -> set[str]:
    out = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            out.add(_norm(line.split("==")[0].split(">=")[0].strip()))
    return out


def _pulled_in(roots: tuple[str, ...], device: set[str]) -> set[str]:
    """The distributions `roots` (as installed here) require, transitively, that the device does not have."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    seen, stack = set(), list(roots)
    while stack:
        try:
            reqs = distribution(stack.pop()).requires or []
        except PackageNotFoundError:
            continue
        for r in reqs:
            req = Requirement(r)
            name = _norm(req.name)
            if (req.marker and not req.marker.evaluate({"extra": ""})) or name in device or name in seen:
                continue
            seen.add(name)
            stack.append(name)
    return seen


class DeviceGuard(MetaPathFinder):
    def __init__(self) -> None:
        device = _names(HERE.parent / "device-packages.txt")
        self.allowed = device | _names(HERE.parent / "wheels.txt") | {"subnets"} | _pulled_in(NEWER_HERE, device)
        self.owners: dict[str, set[str]] | None = None  # "top" and "top.sub" module names -> distributions
        self.used: set[str] = set()
        self.blocked: set[str] = set()

    def _map(self) -> dict[str, set[str]]:
        owners: dict[str, set[str]] = {}
        for dist in distributions():
            name = _norm(dist.metadata["Name"] or "")
            for f in dist.files or ():
                parts = f.parts
                if not parts or parts[0].endswith((".dist-info", ".egg-info", ".data")) or parts[0] in ("..", "bin"):
                    continue
                stem = parts[-1].split(".")[0]
                mods = [*parts[:-1], stem] if parts[-1].endswith((".py", ".so", ".pyd")) else list(parts[:-1])
                mods = [m for m in mods if m != "__init__"]
                for depth in (1, 2):
                    if len(mods) >= depth:
                        owners.setdefault(".".join(mods[:depth]), set()).add(name)
        return owners

    def refused(self, fullname: str) -> set[str] | None:
        """The distributions a (top-level or second-level) module comes from when none is on the device."""
        parts = fullname.split(".")
        if len(parts) > 2 or parts[0] in sys.stdlib_module_names:
            return None
        if self.owners is None:
            self.owners = self._map()
        dists = self.owners.get(fullname)
        if not dists:
            return None
        ok = dists & self.allowed
        if ok:
            self.used |= ok
            return None
        self.blocked.add(f"{fullname} ({', '.join(sorted(dists))})")
        return dists

    def find_spec(self, fullname, path=None, target=None):
        dists = self.refused(fullname)
        if dists:
            raise ModuleNotFoundError(f"device guard: {fullname!r} comes from {sorted(dists)}, not on the GPU machine")
        return None


def _find_spec(guard: DeviceGuard, original):
    """importlib.util.find_spec as on the device: None for a missing top-level package (transformers asks so
    whether datasets is there before it imports Trainer); a dotted name imports its parent, which then fails."""

    def find_spec(name, package=None):
        if "." not in name and guard.refused(name):
            return None
        return original(name, package)

    return find_spec


def _report(guard: DeviceGuard) -> None:
    for env, lines in (("GPU_GUARD_LOG", guard.blocked), ("GPU_GUARD_USED", guard.used)):
        if os.environ.get(env) and lines:
            with open(os.environ[env], "a") as f:
                f.writelines(f"{x}\n" for x in sorted(lines))


if os.environ.get("GPU_GUARD", "") == "1":
    _guard = DeviceGuard()
    sys.meta_path.insert(0, _guard)
    importlib.util.find_spec = _find_spec(_guard, importlib.util.find_spec)
    atexit.register(_report, _guard)
