"""Print `export UV_...` lines that give uv the package sources pip is configured with (pip.conf, PIP_* variables):
its find-links, index, extra indexes and constraints. uv reads none of pip's configuration; with these it resolves
from the same places, taking the best version over every index as pip does (`make setup`).

    python .ci/uv_env.py [OTHER_PYTHON ...]   # pip's configuration as this Python's pip reads it, else the others'
"""

import subprocess
import sys

# pip's option -> uv's variable (uv takes several values separated by spaces)
NAMES = {
    "find-links": "UV_FIND_LINKS",
    "index-url": "UV_INDEX_URL",
    "extra-index-url": "UV_EXTRA_INDEX_URL",
    "constraint": "UV_CONSTRAINT",
}


def pip_config(pythons: list[str]) -> str:
    """`pip config list` from the first of these Pythons that has pip (each pip reads the same files and variables)."""
    for python in pythons:
        try:
            done = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False)
        except OSError:  # no such Python
            continue
        if done.returncode == 0:
            return done.stdout
    return ""


def main() -> None:
    listing = pip_config([sys.executable, *sys.argv[1:]])  # this Python, then those named (the venv's)
    found: dict[str, list[str]] = {}
    for line in listing.splitlines():  # e.g. global.find-links='/opt/wheels' or :env:.find-links='/opt/wheels'
        key, _, value = line.partition("=")
        option = key.rsplit(".", 1)[-1]
        if option in NAMES:
            for v in value.strip("'\"").split():
                found.setdefault(NAMES[option], [])
                if v not in found[NAMES[option]]:
                    found[NAMES[option]].append(v)
    print("export UV_INDEX_STRATEGY=unsafe-best-match")  # pip's rule: the best version wherever it is
    for name, values in found.items():
        print(f"export {name}='{' '.join(values)}'")


if __name__ == "__main__":
    main()
