"""What the integration tests share: running a scenario or a server on both loops, and the
differential check of what each run logged.

Every scenario and server runs in a subprocess of its own (sys.executable, so in the test
virtualenv): the event loop policy, signal handlers and framework state never leak into the
other tests, and a hang is cut by a timeout.
"""

import concurrent.futures
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

APPS = Path(__file__).resolve().parent / "apps"
SCENARIOS = APPS / "scenarios.py"

# `uvloop.install()` warns on 3.12+ by design, as MagicStack's uvloop does (the baseline run
# never calls it, so the warning would otherwise count as one only our loop emits).
INSTALL_DEPRECATION = (
    "DeprecationWarning",
    "uvloop.install() is deprecated on Python 3.12 and later; use uvloop.run() instead.",
)

# In debug mode (-X dev) asyncio warns of every callback or task step that took longer than
# 0.1 s: a matter of how busy this 2-core machine is at that moment, on either loop, not of
# behaviour, so it is not compared.
SLOW_CALLBACK = re.compile(r"^Executing .* took \d+\.\d+ seconds$")


def normalise(text):
    """Takes out what differs from run to run: addresses, ports, pids, times, counts."""
    text = re.sub(r"0x[0-9a-fA-F]+", "0x?", text)
    text = re.sub(r"\d+", "N", text)
    return " ".join(text.split())


def subprocess_env(warnings=None):
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONASYNCIODEBUG", None)
    if warnings:
        env["PYTHONWARNINGS"] = warnings
    return env


# --- in-process scenarios (apps/scenarios.py) ---------------------------------------------------


def run_scenario(name, kind, dev=False, timeout=30):
    """Runs scenario `name` on `kind` ("asyncio" or "uvloop") in a subprocess, in Python's
    development mode (`-X dev`: asyncio's debug mode, ResourceWarnings shown) if `dev`; its
    report."""
    try:
        proc = subprocess.run(
            [sys.executable, *(["-X", "dev"] if dev else []), str(SCENARIOS), name, kind],
            cwd=str(APPS), env=subprocess_env(), capture_output=True, text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed it
        raise AssertionError(
            f"scenario {name} on {kind} did not finish in {timeout} s\n"
            f"stdout:\n{exc.stdout}\nstderr:\n{exc.stderr}"
        ) from None
    assert proc.returncode == 0, (
        f"scenario {name} on {kind} failed (exit {proc.returncode})\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT: ")]
    assert len(lines) == 1, f"no report from {name} on {kind}:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(lines[0][len("RESULT: "):])
    report["stderr"] = proc.stderr
    return report


def scenario_diagnostics(report):
    """The warnings, log records (WARNING and above) and stderr lines of one run, normalised."""
    seen = set()
    for category, message in report["warnings"]:
        if (category, message) == INSTALL_DEPRECATION:
            continue  # by design, see INSTALL_DEPRECATION
        seen.add(("warning", category, normalise(message)))
    for logger, level, message in report["logs"]:
        if logger == "asyncio" and SLOW_CALLBACK.match(message):
            continue  # debug mode's timing report, see SLOW_CALLBACK
        seen.add(("log", logger, level, normalise(message)))
    for line in report["stderr"].splitlines():
        if line.strip():
            seen.add(("stderr", normalise(line)))
    return seen


def assert_no_new_diagnostics(baseline, ours, what):
    """Our loop logged, warned and printed nothing the same run on stock asyncio did not."""
    new = ours - baseline
    assert not new, (
        f"{what}: logged/warned only on uvloop (not on stock asyncio):\n"
        + "\n".join(map(repr, sorted(new)))
        + "\n\nstock asyncio's:\n" + "\n".join(map(repr, sorted(baseline)))
    )


def check_scenario(name, dev=False):
    """Runs scenario `name` on stock asyncio, then on ours (both in development mode if `dev`),
    and checks the differential part:

    - every loop seen on ours (running loops in coroutines, handlers and callbacks, loops made
      by policies and frameworks) is a uvloop.Loop, and none on the baseline is;
    - the same places were reached on both, and what was observed (bodies, exit codes, counts)
      is the same;
    - ours logged and warned nothing the baseline did not.

    Returns both reports for the test's own assertions.
    """
    baseline = run_scenario(name, "asyncio", dev)
    ours = run_scenario(name, "uvloop", dev)
    assert ours["loops"], f"{name}: no loop recorded"
    not_ours = [entry for entry in ours["loops"] if not entry[2]]
    assert not not_ours, f"{name}: not our loop (uvloop.Loop) at: {not_ours}"
    uvloop_in_baseline = [entry for entry in baseline["loops"] if entry[2]]
    assert not uvloop_in_baseline, f"{name}: the baseline ran on uvloop: {uvloop_in_baseline}"
    assert {e[0] for e in ours["loops"]} == {e[0] for e in baseline["loops"]}
    assert ours["checks"] == baseline["checks"]
    assert_no_new_diagnostics(scenario_diagnostics(baseline), scenario_diagnostics(ours), name)
    return baseline, ours


@pytest.fixture(params=["default", "dev"], ids=["default-mode", "dev-mode"])
def check(request):
    """check("scenario") runs the scenario on stock asyncio and on ours and compares them
    (check_scenario above); returns (baseline report, our report). Each test using it runs
    twice: in Python's default mode and in its development mode (`-X dev`: asyncio's debug
    mode, ResourceWarnings shown).

    (A fixture here, imported by the test modules, rather than in a conftest.py of this
    directory: the tests one level up import their own conftest by that name.)"""
    return functools.partial(check_scenario, dev=request.param == "dev")


# --- servers in subprocesses (uvicorn, gunicorn) ------------------------------------------------


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A server command in a session of its own, its stdout and stderr in one log file; on exit
    the whole session (master, workers) is killed, whatever happened."""

    def __init__(self, args, log_path, cwd=None):
        self.args = [str(a) for a in args]
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.proc = None

    def __enter__(self):
        # Warnings shown (once per place), so that the log comparison sees them too.
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.args, cwd=self.cwd, env=subprocess_env("default"), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        return self

    def __exit__(self, *exc):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def log(self):
        return self.log_path.read_text(errors="replace")

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.args} did not exit within {timeout} s; log:\n{self.log()}"
            ) from None

    def assert_running(self):
        if self.proc.poll() is not None:
            raise AssertionError(
                f"{self.args} exited early ({self.proc.returncode}); log:\n{self.log()}"
            )

    def wait_until(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_running()
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"{what} not within {timeout} s; log:\n{self.log()}")

    def wait_http(self, url, timeout=20):
        def answers():
            try:
                http_get(url, timeout=2)
                return True
            except OSError:
                return False

        self.wait_until(answers, timeout, f"{url} answering")


def http_get(url, timeout=10):
    request = urllib.request.Request(url, headers={"Connection": "close"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def http_post(url, data, timeout=10):
    request = urllib.request.Request(
        url, data=data, headers={"Connection": "close", "Content-Type": "application/octet-stream"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def worker_reports(base, pids_wanted, exclude=(), timeout=15):
    """GETs `base`/block (whose handler blocks its worker process for 0.2 s, so that another
    worker takes the next connection) four at a time until `pids_wanted` distinct worker pids
    outside `exclude` answered; all the JSON reports."""
    reports = []
    deadline = time.monotonic() + timeout
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        while time.monotonic() < deadline:
            reports.extend(pool.map(lambda _: json.loads(http_get(base + "/block")), range(4)))
            if len({r["pid"] for r in reports} - set(exclude)) >= pids_wanted:
                return reports
    raise AssertionError(f"not {pids_wanted} workers answering within {timeout} s: {reports}")


def notable_lines(log, info_markers):
    """The log's lines that are not at INFO or DEBUG level (warnings, errors, tracebacks,
    anything printed), normalised (timestamps, pids, ports)."""
    notable = set()
    for line in log.splitlines():
        if not line.strip() or any(marker in line for marker in info_markers):
            continue
        line = re.sub(r"^\[\d{4}-\d\d-\d\d [\d:]+ [+-]\d{4}\] ", "", line)  # gunicorn's time
        notable.add(normalise(line))
    return notable
