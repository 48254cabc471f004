"""The shipped stubs (`uvloop/*.pyi`) against the installed package, with mypy's stubtest.

Run on every Python here with a mypy that still supports it, so that the stubs' branches on
`sys.version_info` are each checked against the Python they describe.
"""

import os
import subprocess
import sys

import pytest

ALLOWLIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stubtest-allowlist.txt")


def test_stubtest(tmp_path):
    pytest.importorskip("mypy.stubtest", reason="mypy is not installed for this Python")
    # Run outside the checkout, so that the installed package is what is checked.
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "uvloop", "--allowlist", ALLOWLIST],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_typed_usage_passes_mypy(tmp_path):
    """A program using the public API type-checks in strict mode against the stubs."""
    pytest.importorskip("mypy.api", reason="mypy is not installed for this Python")
    program = tmp_path / "program.py"
    program.write_text(
        "import asyncio\n"
        "import uvloop\n"
        "\n"
        "async def main() -> int:\n"
        "    loop = asyncio.get_running_loop()\n"
        "    loop.call_soon(print, 1).cancel()\n"
        "    return await loop.run_in_executor(None, sum, [1, 2])\n"
        "\n"
        "loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()\n"
        "own: uvloop.Loop = uvloop.Loop()\n"
        "result: int = uvloop.run(main())\n"
        "asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(program)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
