"""Print `export UV_...` lines that give uv the package sources pip is configured with (pip.conf, PIP_* variables):
its find-links, index, extra indexes and constraints. uv reads none of pip's configuration; with these it resolves
from the same places, taking the best version over every index as pip does (`make setup`)."""

import subprocess
import sys

# pip's option -> uv's variable (uv takes several values separated by spaces)
NAMES = {
    "find-links": "UV_FIND_LINKS",
    "index-url": "UV_INDEX_URL",
    "extra-index-url": "UV_EXTRA_INDEX_URL",
    "constraint": "UV_CONSTRAINT",
}


def main() -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
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
