"""Memory checking: the Rust tests and a slice of the Python suite under valgrind's memcheck.

    python memcheck/run.py --python .venvs/py3.11/bin/python     # what `make memcheck` runs

Fails unless valgrind reports no invalid read or write, no use of uninitialised memory, no
invalid free, and no definite leak whose allocation stack passes through our code (the
extension module or the Rust test binary). Leaks of CPython itself at exit are not ours and are
not counted; every other error counts wherever it is. The Python slice runs with
PYTHONMALLOC=malloc, so that valgrind sees every allocation.
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
VALGRIND = [
    "valgrind", "--tool=memcheck", "--leak-check=full", "--show-leak-kinds=definite",
    "--errors-for-leak-kinds=definite", "--num-callers=40", "--xml=yes",
]


def errors(xml_path):
    """[(kind, first frames)] of the errors that count."""
    counted = []
    for error in ET.parse(xml_path).getroot().iter("error"):
        kind = error.findtext("kind")
        frames = [
            " ".join(filter(None, (f.findtext("fn"), f.findtext("obj"), f.findtext("file"))))
            for f in error.iter("frame")
        ]
        if kind.startswith("Leak_"):
            if not any(mark in frame for frame in frames for mark in OURS):
                continue
        counted.append((kind, frames[:8]))
    return counted


def run(name, command, env, out):
    xml_path = os.path.join(out, f"{name}.xml")
    print(f"=== memcheck: {name}: {' '.join(command)}", flush=True)
    result = subprocess.run([*VALGRIND, f"--xml-file={xml_path}", *command], env=env, cwd=ROOT)
    found = errors(xml_path)
    print(f"=== memcheck: {name}: exit {result.returncode}, {len(found)} error(s) that count")
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
