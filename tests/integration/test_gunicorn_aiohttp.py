"""3. gunicorn with aiohttp's GunicornUVLoopWebWorker, 2 workers on 127.0.0.1, as a subprocess
(apps/gunicorn_aiohttp_app.py).

The same command with aiohttp's GunicornWebWorker (stock asyncio) runs first, as the baseline.
Our run must serve from both workers, each on our loop (the app reports its pid and whether
its running loop is a uvloop.Loop), reload gracefully on SIGHUP (two new workers, the old ones
exit, requests still served), stop on SIGTERM with exit status 0, and log nothing at WARNING or
above (nor a warning or traceback) that the baseline does not.
"""

import http.client
import json
import re
import signal
import sys

import pytest

pytest.importorskip("gunicorn")
pytest.importorskip("aiohttp.worker")

from integration_support import (  # noqa: E402
    APPS, ServerProcess, free_port, http_get, notable_lines, worker_reports,
)

STREAM = b"".join(b"chunk %02d\n" % i for i in range(20))
WORKERS = {"asyncio": "aiohttp.GunicornWebWorker", "uvloop": "aiohttp.GunicornUVLoopWebWorker"}


# The master sends SIGTERM to the old workers after a reload on every turn of its loop until it
# has reaped them, so an old worker that is already past its event loop (signal handlers gone)
# can die of the second one. gunicorn 23 (the last for Python 3.9) logs that at ERROR; later
# gunicorns log it at INFO as expected in a graceful shutdown. It happens on stock asyncio as
# on ours (measured on 3.9: 5 of 8 reloads on asyncio, 7 of 8 on ours), so it is not counted.
SIGTERM_RACE = re.compile(r"\[ERROR\] Worker \(pid:\d+\) was sent SIGTERM!$")


def without_sigterm_race(log):
    return "\n".join(line for line in log.splitlines() if not SIGTERM_RACE.search(line))


def control_socket_off():
    """gunicorn 24+ opens a control socket in a fixed place by default: not for tests."""
    from gunicorn.config import Config

    return ["--no-control-socket"] if "control_socket_disable" in Config().settings else []


def run_gunicorn(kind, tmp_path, reload):
    port = free_port()
    args = [
        sys.executable, "-m", "gunicorn", "gunicorn_aiohttp_app:make_app", "--chdir", APPS,
        "-k", WORKERS[kind], "-w", "2", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "10",
        "--log-level", "info", *control_socket_off(),
    ]
    base = f"http://127.0.0.1:{port}"
    result = {}
    with ServerProcess(args, tmp_path / f"gunicorn-{kind}-{reload}.log") as server:
        server.wait_http(base + "/loop")
        result["first"] = worker_reports(base, 2)
        first_pids = {r["pid"] for r in result["first"]}
        result["stream"] = http_get(base + "/stream")
        if reload:
            # An idle keep-alive connection to an old worker stays open into the reload: the
            # worker closes it when it exits.
            keep_alive = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            try:
                keep_alive.request("GET", "/loop")
                response = keep_alive.getresponse()
                result["keep_alive_info"] = json.loads(response.read())
                assert not response.will_close
                server.send_signal(signal.SIGHUP)
                result["keep_alive_eof"] = keep_alive.sock.recv(1) == b""
            finally:
                keep_alive.close()
            # Every old worker exits gracefully, and two new ones serve.
            server.wait_until(
                lambda: all(f"Worker exiting (pid: {pid})" in server.log() for pid in first_pids),
                20, f"old workers {first_pids} exiting after SIGHUP",
            )
            result["after_reload"] = worker_reports(base, 2, exclude=first_pids)
            result["stream_after_reload"] = http_get(base + "/stream")
        server.send_signal(signal.SIGTERM)
        result["returncode"] = server.wait(30)
        result["log"] = server.log()
    return result


def check_run(baseline, ours, reload):
    for kind, run in (("asyncio", baseline), ("uvloop", ours)):
        reports = run["first"] + run.get("after_reload", [])
        assert {r["is_uvloop"] for r in reports} == {kind == "uvloop"}, reports
        assert run["stream"] == STREAM
    for report in ours["first"] + ours.get("after_reload", []):
        assert report["loop_type"] == "uvloop.Loop", report
    first_pids = {r["pid"] for r in ours["first"]}
    assert len(first_pids) == 2, ours["first"]
    log = without_sigterm_race(ours["log"])
    baseline_log = without_sigterm_race(baseline["log"])
    if reload:
        new_pids = {r["pid"] for r in ours["after_reload"]} - first_pids
        assert len(new_pids) == 2, ours["after_reload"]
        assert ours["stream_after_reload"] == STREAM
        assert "Handling signal: hup" in log, log
        assert ours["keep_alive_info"]["pid"] in first_pids
        assert ours["keep_alive_info"]["is_uvloop"] is True
        assert ours["keep_alive_eof"] is True
    assert "Handling signal: term" in log, log
    assert "Shutting down: Master" in log, log
    assert ours["returncode"] == 0 == baseline["returncode"], (ours["returncode"], log)
    assert "Traceback" not in log, log
    assert not re.search(r"\[(ERROR|CRITICAL)\]", log), log
    markers = ("[INFO]", "[DEBUG]")
    new = notable_lines(log, markers) - notable_lines(baseline_log, markers)
    assert not new, (
        "printed/logged at WARNING or above only with GunicornUVLoopWebWorker:\n"
        + "\n".join(sorted(new))
        + "\n\n--- uvloop log:\n" + ours["log"] + "\n--- asyncio log:\n" + baseline["log"]
    )


@pytest.mark.timeout(120)
def test_gunicorn_uvloop_worker_two_workers_sigterm(tmp_path):
    baseline = run_gunicorn("asyncio", tmp_path, reload=False)
    ours = run_gunicorn("uvloop", tmp_path, reload=False)
    check_run(baseline, ours, reload=False)


@pytest.mark.timeout(120)
def test_gunicorn_uvloop_worker_sighup_reload_then_sigterm(tmp_path):
    baseline = run_gunicorn("asyncio", tmp_path, reload=True)
    ours = run_gunicorn("uvloop", tmp_path, reload=True)
    check_run(baseline, ours, reload=True)
