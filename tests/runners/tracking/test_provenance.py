"""What a run records about the machine it ran on (runners/tracking/provenance.py): the processor and the cores it may
use, so that two runs' timings are compared only where they are comparable."""

from __future__ import annotations

import os
import platform

import pytest

from runners.tracking import provenance

# /proc/cpuinfo of a 2-core virtual machine (abridged): a block per processor, the first one read
CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD   EPYC
flags\t\t: fpu vme

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: Another CPU
"""

# aarch64's /proc/cpuinfo names no model
CPUINFO_ARM = """processor\t: 0
BogoMIPS\t: 50.00
CPU implementer\t: 0x41
CPU part\t: 0xd0c
"""


def test_the_processor_is_the_first_blocks_model_name_with_its_family_and_model(tmp_path):
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    assert provenance.cpu_model(tmp_path / "cpuinfo") == "AMD EPYC (family 25, model 1)"
    (tmp_path / "intel").write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n")
    assert provenance.cpu_model(tmp_path / "intel") == "Intel(R) Xeon(R) CPU @ 2.20GHz"


@pytest.mark.parametrize("cpuinfo", ["arm", "absent"])
def test_without_a_model_name_the_platform_names_the_processor(tmp_path, monkeypatch, cpuinfo):
    path = tmp_path / "cpuinfo"
    if cpuinfo == "arm":
        path.write_text(CPUINFO_ARM)
    monkeypatch.setattr(platform, "processor", lambda: "arm")
    assert provenance.cpu_model(path) == "arm"
    monkeypatch.setattr(platform, "processor", lambda: "")
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert provenance.cpu_model(path) == "aarch64"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="this platform cannot restrict a process's cores")
def test_the_cores_are_those_the_process_may_use_not_the_machines():
    """As under Slurm's --cpus-per-task or taskset: a process restricted to one core reports one."""
    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})
        assert provenance.usable_cores() == 1
        assert provenance.machine() == f"{platform.machine()}, 1 core, {provenance.cpu_model()}"
    finally:
        os.sched_setaffinity(0, allowed)
    assert provenance.usable_cores() == len(allowed)
    assert provenance.machine().startswith(f"{platform.machine()}, {len(allowed)} core")
