"""The method catalogue: every pruning recipe, by the name experiments.toml uses."""
from __future__ import annotations

from types import ModuleType

from runners.catalogue import Catalogue
from runners.methods import attribution, importance, magnitude
from runners.methods import l0

METHODS: Catalogue[ModuleType] = Catalogue("pruning method")
for _name, _module in (("magnitude", magnitude), ("importance", importance), ("attribution", attribution), ("l0", l0),):
    METHODS.add(_name, _module, _module.SUMMARY)
