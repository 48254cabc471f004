"""asyncio's private names: all looked up in one module at import, and a missing one is named."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import uvloop
from uvloop import _asyncio_private

PACKAGE = Path(uvloop.__file__).parent
ASYNCIO_MODULES = {
    "asyncio", "base_events", "base_subprocess", "constants", "coroutines", "events",
    "format_helpers", "futures", "log", "protocols", "runners", "selector_events", "sslproto",
    "streams", "tasks", "transports", "trsock", "unix_events",
}


def private_uses(path):
    """`module._name` and `from asyncio... import _name` for asyncio's modules in `path`."""
    tree = ast.parse(path.read_text())
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            if isinstance(base, ast.Name) and base.id.lstrip("_") in ASYNCIO_MODULES:
                uses.append(f"{base.id}.{node.attr}")
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("asyncio"):
            uses += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    return uses


def test_no_private_asyncio_name_outside_the_one_module():
    found = {}
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name != "_asyncio_private.py":
            uses = private_uses(path)
            if uses:
                found[path.name] = uses
    assert found == {}


def test_every_name_is_listed_with_the_pythons_checked():
    names = [name for name, _, _ in _asyncio_private.PRIVATE_NAMES]
    assert len(names) == len(set(names))
    assert "asyncio.events._set_running_loop" in names
    for name, checked, purpose in _asyncio_private.PRIVATE_NAMES:
        assert checked.startswith(("3.9", "3.11")) and checked.count("3.15") == 1, name
        assert purpose, name


def test_a_missing_name_fails_the_import_with_its_name():
    code = (
        "import asyncio.format_helpers as f\n"
        "del f._format_callback_source\n"
        "import uvloop\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        env={**os.environ},
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("uvloop._asyncio_private.MissingAsyncioName: uvloop needs asyncio's "
                           "private asyncio.format_helpers._format_callback_source"), last
    assert f"Python {sys.version.split()[0]} does not have" in last
