"""Tests of ``bench/benchlib/allocator.py``: freed memory stays warm after keep_freed_memory()."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

PROBE = textwrap.dedent(
    """
    import resource, sys
    sys.path.insert(0, {bench!r})
    from benchlib.allocator import keep_freed_memory, release_freed_memory
    if {warm}:
        print(keep_freed_memory(), file=sys.stderr)
    def faults_of_a_step():
        # Like a training step: eight 4 MiB activations alive together, then all freed.
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        blocks = [bytearray(4 << 20) for _ in range(8)]
        for block in blocks:
            block[::4096] = b"x" * len(block[::4096])  # touch every page
        after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        del blocks
        return after - before
    rounds = [faults_of_a_step() for _ in range(4)]
    assert release_freed_memory()
    print(min(rounds[1:]))
    """
)


def probe(warm: bool) -> int:
    code = PROBE.format(bench=str(BENCH), warm=warm)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_keep_freed_memory_avoids_page_faults_on_reuse() -> None:
    pages = (32 << 20) // 4096
    cold, warm = probe(warm=False), probe(warm=True)
    if cold < pages // 2:
        pytest.skip(f"this C library keeps freed memory by default ({cold} faults)")
    assert warm < pages // 20, f"{warm} page faults re-using 32 MiB freed by the last step"
