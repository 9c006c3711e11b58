"""Names a package imports from their modules when first asked for (PEP 562): runners.queue and runners.training,
whose light users (the coordinator of local workers, the hub check of `subnets run`) need neither torch nor
transformers."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_names(package: str, home: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of `package`, whose names `home` maps to the modules that define them."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home[name]), name)
        namespace[name] = value  # asked once
        return value

    def __dir__() -> list[str]:
        return sorted([*namespace, *home])

    return __getattr__, __dir__
