"""Memory checking: the Rust tests and a slice of the Python suite under valgrind's memcheck.

    python memcheck/run.py --python .venvs/py3.11/bin/python     # what `make memcheck` runs

Fails unless valgrind reports no invalid read or write, no use of uninitialised memory, no
invalid free, and no definite leak whose stack passes through our code (the extension module,
libuv in it, or the Rust test binary). valgrind tracks origins, so an uninitialised value that
our code made and CPython later reads counts too: its origin stack is ours. What stays wholly
inside CPython (its leaks at exit, and the uninitialised reads valgrind reports in CPython's own
code without the extension loaded, e.g. in `int.from_bytes`, which CPython's
Misc/valgrind-python.supp suppresses) is listed as CPython's and not counted; an error in any
other library counts. The Python slice runs with PYTHONMALLOC=malloc, so that valgrind sees
every allocation.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# The uvloop tests of these files: the loop core, TCP, UDP and pipes, subprocesses, signals.
PYTHON_SLICE = [
    "tests/test_scheduling.py", "tests/test_net_tcp.py", "tests/test_pipes_udp.py",
    "tests/test_subprocess.py", "tests/test_signals.py", "tests/test_closed_behind.py",
]
OURS = ("uvloop_rs", "loop.cpython", "libuv", "uv_")
# How deep into an allocation's stack (a leak's, an uninitialised value's origin) our code has to
# be for the error to be ours; half as deep into the stack of the error itself.
NEAR_FRAMES = 8
VALGRIND = [
    "valgrind", "--tool=memcheck", "--leak-check=full", "--show-leak-kinds=definite",
    "--errors-for-leak-kinds=definite", "--num-callers=40", "--track-origins=yes", "--xml=yes",
]


def _has_ours(frames):
    return any(mark in frame for frame in frames for mark in OURS)


def is_ours(kind, stacks):
    """Whether an error is ours: a leak whose allocation's first frames are ours (but for PyO3's
    type objects, made once per process and kept for its life), or another error whose own
    first frames, or whose origin's first frames, are ours. An error wholly inside CPython or
    a library, whose stack only passes through our loop further down because the loop ran the
    Python code (e.g. glibc's resolver state of a libuv pool thread that ran getaddrinfo), is
    not; one in no known library at all is."""
    if kind.startswith("Leak_"):
        frames = stacks[0] if stacks else []
        return _has_ours(frames[:NEAR_FRAMES]) and not any(
            "create_type_object" in f for f in frames
        )
    if not stacks or not stacks[0]:
        return True
    if _has_ours(stacks[0][:NEAR_FRAMES // 2]) or any(
        _has_ours(origin[:NEAR_FRAMES]) for origin in stacks[1:]
    ):
        return True
    return not any(lib in stacks[0][0] for lib in ("libpython", "libc.so", "lib-dynload"))


def errors(xml_path):
    """([(kind, first frames)] of the errors that count, how many were CPython's own)."""
    counted, cpython_own = [], 0
    with open(xml_path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        # A forked child that exec'd stopped writing its file half-way (valgrind does not
        # follow exec): what it wrote before is still read.
        try:
            root = ET.fromstring(text + "</valgrindoutput>")
        except ET.ParseError as exc:
            return [("unreadable valgrind output", [f"{xml_path}: {exc}"])], 0
    for error in root.iter("error"):
        kind = error.findtext("kind")
        stacks = [
            [" ".join(filter(None, (f.findtext("fn"), f.findtext("obj"), f.findtext("file"))))
             for f in stack.iter("frame")]
            for stack in error.findall("stack")
        ]
        frames = [frame for stack in stacks for frame in stack]
        if is_ours(kind, stacks):
            counted.append((kind, frames[:8]))
        else:
            cpython_own += 1
    return counted, cpython_own


def run(name, command, env, out):
    # One XML file per process (%p): a forked child that has not yet exec'd would otherwise
    # write into its parent's file.
    print(f"=== memcheck: {name}: {' '.join(command)}", flush=True)
    result = subprocess.run(
        [*VALGRIND, f"--xml-file={os.path.join(out, name)}.%p.xml", *command], env=env, cwd=ROOT
    )
    found, cpython_own = [], 0
    for xml_path in sorted(glob.glob(os.path.join(out, f"{name}.*.xml"))):
        counted, theirs = errors(xml_path)
        found += counted
        cpython_own += theirs
    print(f"=== memcheck: {name}: exit {result.returncode}, {len(found)} error(s) that count, "
          f"{cpython_own} wholly inside CPython (not counted)")
    for kind, frames in found[:20]:
        print(f"  {kind}")
        for frame in frames:
            print(f"      {frame}")
    return result.returncode == 0 and not found


def rust_test_binaries(python):
    libdir = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"], text=True
    ).strip()
    env = {**os.environ, "PYO3_PYTHON": python, "LD_LIBRARY_PATH": libdir}
    messages = subprocess.check_output(
        ["cargo", "test", "--lib", "--no-run", "--message-format=json"], env=env, cwd=ROOT,
        text=True,
    )
    binaries = []
    for line in messages.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            if message["target"]["name"] == "uvloop_rs":
                binaries.append(message["executable"])
    return binaries, env


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", required=True, help="interpreter with uvloop and pytest")
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "memcheck"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for old in glob.glob(os.path.join(args.out, "*.xml")):
        os.remove(old)
    ok = True
    binaries, env = rust_test_binaries(args.python)
    for index, binary in enumerate(binaries):
        ok &= run(f"rust-tests-{index}", [binary, "--test-threads=1"], env, args.out)
    env = {**os.environ, "PYTHONMALLOC": "malloc"}
    command = [args.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout", "1200",
               "-k", "uvloop", *PYTHON_SLICE]
    ok &= run("python-slice", command, env, args.out)
    print("memcheck: clean" if ok else "memcheck: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
