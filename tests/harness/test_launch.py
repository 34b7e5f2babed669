"""Per-process settings every launcher applies (`configure_torch`), checked in a fresh process."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Ten rounds of what a CQL update does to memory: hold several 16 MB activations at once (three
# here), then free them all; prints the page faults of the rounds after three warm-up rounds.
FAULTS = """
import resource, sys, torch
from harness.launch import configure_torch
if sys.argv[1] == "configured":
    configure_torch(1)
def round_():
    activations = [torch.empty(4 << 20).fill_(1.0) for _ in range(3)]
    del activations
for _ in range(3):
    round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    round_()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    proc = subprocess.run([sys.executable, "-c", FAULTS, mode], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_configured_process_reuses_freed_large_blocks_instead_of_faulting_them_in_again():
    # glibc's default adapts its thresholds to the process's history, so how many blocks it hands
    # back varies (all but one of each round in a bare interpreter, fewer under pytest); once
    # configured, none is: no fresh pages after the warm-up rounds.
    pages = 10 * 3 * (16 << 20) // 4096  # what 30 fresh 16 MB blocks fault in with 4 kB pages
    assert page_faults("configured") < pages // 100
