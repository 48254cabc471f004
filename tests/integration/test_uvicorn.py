"""2. uvicorn with `--loop uvloop` serving an ASGI app (apps/asgi_app.py), as a subprocess.

The same command runs with `--loop asyncio` first, as the baseline: our run must serve HTTP
(a JSON report, a chunked stream, a 1 MiB echo) and a WebSocket from our loop (the app reports
`isinstance(asyncio.get_running_loop(), uvloop.Loop)`, in the lifespan startup, the HTTP handler
and the WebSocket handler), shut down on SIGINT / SIGTERM as the baseline does (an idle
keep-alive connection and the open WebSocket closed by the server, with the baseline's close
code, "Finished server process", no traceback, the same exit status), and log nothing at
WARNING or above, nor print a warning, that the baseline does not. Once more with
`--workers 2` (uvicorn's supervisor and two spawned workers, both answering on our loop).
"""

import contextlib
import http.client
import json
import os
import signal
import sys

import pytest

uvicorn = pytest.importorskip("uvicorn")
websockets_sync = pytest.importorskip("websockets.sync.client")
websockets_exceptions = pytest.importorskip("websockets.exceptions")

from integration_support import (  # noqa: E402
    APPS, ServerProcess, free_port, http_get, http_post, notable_lines, worker_reports,
)

STREAM = b"".join(b"chunk %02d\n" % i for i in range(20))


def ws_implementations():
    from uvicorn.config import WS_PROTOCOLS

    return WS_PROTOCOLS


def run_uvicorn(loop, sig, ws, tmp_path, workers=1):
    port = free_port()
    args = [
        sys.executable, "-m", "uvicorn", "asgi_app:app", "--app-dir", APPS,
        "--host", "127.0.0.1", "--port", port, "--loop", loop, "--ws", ws, "--lifespan", "on",
        *(["--workers", workers] if workers > 1 else []),
    ]
    base = f"http://127.0.0.1:{port}"
    with ServerProcess(args, tmp_path / f"uvicorn-{loop}.log") as server:
        server.wait_http(base + "/loop")
        info = json.loads(http_get(base + "/loop"))
        workers_seen = worker_reports(base, workers) if workers > 1 else [info]
        stream = http_get(base + "/stream")
        payload = os.urandom(1024 * 1024)
        echo_ok = http_post(base + "/echo", payload) == payload
        with contextlib.ExitStack() as stack:
            ws_conn = stack.enter_context(
                websockets_sync.connect(f"ws://127.0.0.1:{port}/ws", max_size=2 ** 21)
            )
            keep_alive = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            stack.callback(keep_alive.close)
            ws_info = json.loads(ws_conn.recv(timeout=10))
            ws_conn.send("hello")
            ws_text = ws_conn.recv(timeout=10)
            blob = os.urandom(512 * 1024)
            ws_conn.send(blob)
            ws_binary_ok = ws_conn.recv(timeout=10) == blob
            # An idle keep-alive connection and the WebSocket stay open into the shutdown:
            # uvicorn closes both.
            keep_alive.request("GET", "/loop")
            response = keep_alive.getresponse()
            keep_alive_info = json.loads(response.read())
            assert not response.will_close
            server.send_signal(sig)
            try:
                ws_conn.recv(timeout=10)
                ws_close = "not closed"
            except websockets_exceptions.ConnectionClosed as exc:
                ws_close = [exc.rcvd.code, exc.rcvd.reason] if exc.rcvd else None
            keep_alive_eof = keep_alive.sock.recv(1) == b""
        returncode = server.wait(20)
        log = server.log()
    return {
        "info": info, "stream": stream, "echo_ok": echo_ok, "ws_info": ws_info,
        "ws_text": ws_text, "ws_binary_ok": ws_binary_ok, "returncode": returncode, "log": log,
        "keep_alive_info": keep_alive_info, "keep_alive_eof": keep_alive_eof,
        "ws_close": ws_close, "workers_seen": workers_seen,
    }


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "sig, workers",
    [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGINT, 2)],
    ids=["SIGINT", "SIGTERM", "workers2-SIGINT"],
)
def test_uvicorn_loop_uvloop(sig, workers, tmp_path):
    # `--ws websockets` (websockets' legacy protocol), and for the SIGTERM run the sans-I/O one
    # where this uvicorn has it. With --workers 2, uvicorn's supervisor spawns the workers
    # (multiprocessing), each making its loop with the `--loop` factory.
    ws = "websockets"
    if sig == signal.SIGTERM and "websockets-sansio" in ws_implementations():
        ws = "websockets-sansio"
    baseline = run_uvicorn("asyncio", sig, ws, tmp_path, workers)
    ours = run_uvicorn("uvloop", sig, ws, tmp_path, workers)

    assert baseline["info"]["is_uvloop"] is False, baseline["info"]
    assert len({report["pid"] for report in ours["workers_seen"]}) == workers
    for where in (ours["info"], ours["info"]["startup"], ours["ws_info"],
                  ours["keep_alive_info"], *ours["workers_seen"]):
        assert where["is_uvloop"] is True, where
        assert where["loop_type"] == "uvloop.Loop", where
    assert ours["stream"] == STREAM
    assert ours["echo_ok"] and ours["ws_binary_ok"]
    assert ours["ws_text"] == "hello"
    # At shutdown uvicorn closed the idle keep-alive connection and the WebSocket (1012,
    # "service restart"... whatever the baseline got).
    assert ours["keep_alive_eof"] is True
    assert ours["ws_close"] == baseline["ws_close"], (ours["ws_close"], baseline["ws_close"])

    log = ours["log"]
    assert log.count("Finished server process") == workers, log
    assert "Traceback" not in log, log
    # uvicorn (0.29 and later) re-raises the signal it caught once it has shut down cleanly:
    # SIGINT ends as KeyboardInterrupt, which its CLI turns into exit status 0, and SIGTERM
    # kills it with SIGTERM (-15), on stock asyncio just as on ours.
    assert ours["returncode"] == baseline["returncode"], (ours["returncode"], log)
    assert ours["returncode"] in (0, -sig), (ours["returncode"], log)

    markers = ("INFO:", "DEBUG:")
    new = notable_lines(log, markers) - notable_lines(baseline["log"], markers)
    assert not new, (
        "printed/logged at WARNING or above only with --loop uvloop:\n" + "\n".join(sorted(new))
        + "\n\n--- uvloop log:\n" + log + "\n--- asyncio log:\n" + baseline["log"]
    )
