"""`make test` from a clean clone, timed: the test loop's figure in the README (aim: 4 min, install included).

Clones this checkout's HEAD (or `--commit`) into a sibling folder, so that `../shared` resolves there as it does here,
empties the store templates' cache (`~/.cache/subnets`, as on a fresh machine), and runs `bash .ci/run`, what CI
runs: `make test`. It measures the wall time and the machine's busy CPU (all processes, from /proc/stat), and takes
pytest's own time from its summary line.

This machine's speed varies from day to day by up to 1.55x (other work on its host), so before and after the run it
times a speed check: the CPU seconds of `python -c "import runners.queue.worker"` in the clone (torch,
transformers, MLflow and Optuna imported from compiled bytecode). Compare runs only at similar speed checks, or
back to back: `--commit` runs another commit the same way.

    python benchmarks/test_loop.py [--commit REV] [--keep]

Progress goes to stdout; the last line is one JSON object. Takes as long as `make test` (5-6 minutes here).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from runners.tracking import provenance  # noqa: E402
from runners.tracking.templates import template_path  # noqa: E402

SPEED_CHECK = "import runners.queue.worker"


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (user, nice, system, irq, softirq)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def speed_check(clone: Path) -> float:
    """CPU seconds (user + system) of importing a worker's modules in a fresh interpreter of the clone's venv."""
    python = clone / ".venv" / "bin" / "python"
    before = os.times()
    subprocess.run([str(python), "-c", SPEED_CHECK], cwd=clone, check=True, capture_output=True)
    after = os.times()
    return round((after.children_user - before.children_user) + (after.children_system - before.children_system), 2)


def pytest_summary(output: str) -> tuple[int, int, float | None]:
    """(passed, failed, pytest's seconds) from the summary line of `make test`'s output."""
    line = next((x for x in reversed(output.splitlines()) if re.search(r"\d+ (passed|failed)", x)), "")
    passed = re.search(r"(\d+) passed", line)
    failed = re.search(r"(\d+) failed", line)
    seconds = re.search(r" in ([0-9.]+)s", line)
    return (
        int(passed.group(1)) if passed else 0,
        int(failed.group(1)) if failed else 0,
        float(seconds.group(1)) if seconds else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", default="HEAD", help="the commit to clone and test (default: this checkout's HEAD)")
    parser.add_argument("--keep", action="store_true", help="keep the clone (default: removed afterwards)")
    args = parser.parse_args()

    commit = subprocess.run(
        ["git", "rev-parse", "--short", args.commit], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    clone = ROOT.parent / f"{ROOT.name}-test-loop-{commit}"
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", commit], cwd=clone, check=True)
    shutil.rmtree(template_path("mlflow").parent, ignore_errors=True)  # the templates, made again by the suite

    print(f"clean clone of {commit} in {clone}: bash .ci/run", flush=True)
    wall0, cpu0 = time.monotonic(), busy_cpu_seconds()
    proc = subprocess.run(["bash", ".ci/run"], cwd=clone, capture_output=True, text=True)
    wall, cpu = time.monotonic() - wall0, busy_cpu_seconds() - cpu0
    output = proc.stdout + proc.stderr
    log = clone.parent / f"{clone.name}.log"
    log.write_text(output)
    passed, failed, pytest_s = pytest_summary(output)
    print(f"exit {proc.returncode}: {passed} passed, {failed} failed; {wall:.1f} s wall, {cpu:.0f} CPU-seconds")

    # the speed check needs the clone's venv, so it runs after `make test` made it: twice, around a pause
    speed = [speed_check(clone)]
    time.sleep(5)
    speed.append(speed_check(clone))
    if not args.keep:
        shutil.rmtree(clone, ignore_errors=True)
    print(
        json.dumps(
            {
                "benchmark": "test_loop",
                "machine": provenance.machine(),
                "commit": commit,
                "exit_code": proc.returncode,
                "passed": passed,
                "failed": failed,
                "wall_s": round(wall, 1),
                "busy_cpu_s": round(cpu),
                "pytest_s": pytest_s,
                "setup_docs_lint_s": round(wall - pytest_s, 1) if pytest_s is not None else None,
                "speed_check_cpu_s": speed,
                "log": str(log),
            }
        )
    )
    sys.exit(0 if proc.returncode == 0 else 1)


if __name__ == "__main__":
    main()
