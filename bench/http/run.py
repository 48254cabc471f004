#!/usr/bin/env python3
"""HTTP benchmark: asyncio, uvloop 0.23, rloop 0.5 and ours (and before) behind two small HTTP servers, under wrk,
plus a native one.

    python bench/http/run.py                  # default: 3 rounds, about 11 minutes, builds ours first
    python bench/http/run.py --quick          # smoke test: 1 round, 1 s warm-up, 3 s measured
    python bench/http/run.py --no-build --cases uvicorn --loops uvloop-0.23,ours --output http.md

Cases: `httptools`, a keep-alive HTTP/1.1 server on asyncio.Protocol + httptools
(server_httptools.py); `httptools-pipelined`, the same server with wrk sending 16 pipelined
requests per write (one wrk thread cannot keep the plain case's server busy on these machines, so
its req/s mostly measure wrk); `httptools-close`, the same server with wrk sending
`Connection: close` on every request, so that every request is a new TCP connection (accept, one
request, close); and `uvicorn`, a minimal ASGI app served by uvicorn with its
httptools protocol (app_uvicorn.py). The `native` column is `http-native` (bench/loadgen: Rust,
mio, one thread, the same responses), the reference point of the httptools cases: what the
server's CPU per request is when no Python runs. For every round, case and loop, a fresh server
runs in the loop's virtualenv (or http-native) pinned to one CPU (taskset), and `wrk -t1 -c<conns> --latency` pinned to another CPU
loads it: a warm-up run, then the measured run. The server's CPU time (utime + stime from
/proc/PID/stat) is read right before and after the measured run. Each cell reports wrk's requests/s
and the server's CPU µs per request, medians over the rounds; the loop order rotates per round and
per case. The virtualenvs and the builds of ours and before (this project at an earlier commit,
--before-commit) come from bench/run.py's set-up code; httptools and
uvicorn are installed into every venv at pinned versions. Progress goes to stderr; the markdown
report goes to stdout (and to --output).
"""

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import re
import resource
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HTTP_DIR = os.path.dirname(os.path.abspath(__file__))
# Requests per write in the pipelined case: enough that wrk's share per request is small and the
# server, not wrk, sets the pace on two CPUs.
PIPELINE_DEPTH = 16
# wrk script sending PIPELINE_DEPTH requests per write (wrk counts each response).
PIPELINE_SCRIPT = """
init = function(args)
  local batch = {}
  for i = 1, %d do batch[i] = wrk.format(nil, "/") end
  pipelined = table.concat(batch)
end
request = function() return pipelined end
"""
BENCH_DIR = os.path.dirname(HTTP_DIR)
ROOT = os.path.dirname(BENCH_DIR)
LOADGEN_DIR = os.path.join(BENCH_DIR, "loadgen")
HTTP_NATIVE = os.path.join(LOADGEN_DIR, "target", "release", "http-native")
NATIVE = "native"
NATIVE_CASES = ("httptools", "httptools-pipelined", "httptools-close")  # uvicorn needs Python

# case -> (server script, requests wrk sends per write: 1 is plain keep-alive, more is pipelining,
#          extra request headers wrk sends with -H)
CASES = {
    "httptools": ("server_httptools.py", 1, ()),
    "httptools-pipelined": ("server_httptools.py", PIPELINE_DEPTH, ()),
    # a new connection per request: the server answers "Connection: close" and closes; wrk reads the
    # response and reconnects
    "httptools-close": ("server_httptools.py", 1, ("Connection: close",)),
    "uvicorn": ("app_uvicorn.py", 1, ()),
}
CLOSE_CHECK_TIMEOUT = 2.0  # seconds the close check waits for the response, then for the server's FIN
PACKAGES = {"httptools": "0.9.0", "uvicorn": "0.54.0"}  # installed into every loop's venv
SERVER_START_TIMEOUT = 30  # seconds for a server to print READY
SATURATED_PCT = 90  # CPU use (%) from which a process counts as saturated
RUN_OVERHEAD = 1.0  # seconds per run beyond warm-up + measured run (start, stop), for estimates


def load_micro():
    """bench/run.py as a module (its venv and build helpers); the name `run` is this file's too."""
    spec = importlib.util.spec_from_file_location("bench_micro", os.path.join(BENCH_DIR, "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


micro = load_micro()
log = micro.log
LOOPS = (*micro.LOOPS, NATIVE)
DEFAULT_LOOPS = (*micro.DEFAULT_LOOPS, NATIVE)


# --------------------------------------------------------------------------------------------------
# Set-up


def ensure_wrk():
    """Installs wrk with apt-get (sudo unless root) when it is missing; returns its version line."""
    if not shutil.which("taskset"):
        raise SystemExit("taskset is missing: install util-linux")
    if not shutil.which("wrk"):
        log("[wrk] missing: installing it with apt-get")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        try:
            micro.run_cmd([*sudo, "apt-get", "update", "-qq"])
            micro.run_cmd([*sudo, "apt-get", "install", "-y", "-qq", "wrk"])
        except (OSError, SystemExit) as e:
            raise SystemExit(f"could not install wrk ({e}): install it (e.g. apt-get install wrk) and rerun")
    _, out, err = micro.capture(["wrk", "-v"])  # prints its version and usage, exits 1
    return (out or err).splitlines()[0].split(" Copyright")[0].strip()


def resolve_python(python):
    """(interpreter path, identity line, version) for --python, checked as bench/run.py does."""
    rc, real, err = micro.capture([shutil.which(python) or python, "-c", "import sys; print(sys.executable)"])
    if rc or not real:
        raise SystemExit(f"--python {python} does not run: {err}")
    rc, identity, err = micro.capture([real, "-c", micro.IDENTITY])
    if rc:
        raise SystemExit(f"--python {python} does not run: {err}")
    return real, identity, identity.split()[1]


def setup_loops(args, loops):
    """Creates or fixes every loop's venv (ours rebuilt unless --no-build) and installs PACKAGES.

    Returns (venv interpreters, probe info, unavailable loop -> reason, the revisions ours and
    before were built from).
    """
    vpys, infos, unavailable, revs = {}, {}, {}, {}
    for kind in loops:
        if kind == NATIVE:
            micro.run_cmd(["cargo", "build", "--release", "--quiet", "--manifest-path",
                           os.path.join(LOADGEN_DIR, "Cargo.toml")])
            continue
        vpy = micro.ensure_venv(args.venvs, kind, args.python, args.identity)
        rev = micro.setup_loop(vpy, args.venvs, kind, args)
        if rev:
            revs[kind] = rev
        missing = [f"{d}=={v}" for d, v in PACKAGES.items() if micro.dist_version(vpy, d) != v]
        if missing:
            log(f"[venv] {kind}: installing {' '.join(missing)}")
            micro.pip_install(vpy, *missing)
        vpys[kind] = vpy
        info, error = micro.probe(vpy, kind)
        if info is None:
            log(f"[venv] {kind}: unusable: {error}")
            unavailable[kind] = error
        else:
            infos[kind] = info
            log(f"[venv] {kind}: {info['module']} {info['version']} -> {info['loop_type']}")
    return vpys, infos, unavailable, revs


# --------------------------------------------------------------------------------------------------
# One measurement


def describe_failure(stderr):
    """The gist of error output: its last line, plus where it was raised if it is a traceback."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', stderr)
    if not frames:
        return lines[-1]
    path, line, func = frames[-1]
    return f"{lines[-1]} in {func}() ({os.path.basename(path)}:{line})"


def wait_ready(proc, timeout):
    """Reads the server's stdout until "READY <port>"; returns the port or raises RuntimeError."""
    deadline = time.monotonic() + timeout
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"server not ready after {timeout}s")
            if sel.select(left):
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    raise RuntimeError("server exited before it was ready")
                buf += chunk
    line = buf.split(b"\n", 1)[0].decode(errors="replace").strip()
    if not line.startswith("READY "):
        raise RuntimeError(f"unexpected server output: {line[:200]}")
    return int(line.split()[1])


def stop_process(proc):
    """SIGTERM, then SIGKILL if the process has not exited after 5 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    proc.stdout.close()


@contextlib.contextmanager
def server_process(cmd):
    """Runs a server; yields (process, port, stderr summary function); always stops it."""
    with tempfile.TemporaryFile() as stderr:
        def summary():
            stderr.seek(0)
            return describe_failure(stderr.read().decode(errors="replace"))

        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                cwd=HTTP_DIR)
        try:
            try:
                port = wait_ready(proc, SERVER_START_TIMEOUT)
            except RuntimeError as e:
                stop_process(proc)
                raise RuntimeError(summary() or str(e)) from None
            yield proc, port, summary
        finally:
            stop_process(proc)


def cpu_seconds(pid):
    """User + system CPU time of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def cpu_ticks(cpu):
    """(busy, total) ticks of one CPU since boot, from /proc/stat; idle and iowait are not busy."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                ticks = [int(x) for x in line.split()[1:9]]  # user nice system idle iowait irq softirq steal
                return sum(ticks) - ticks[3] - ticks[4], sum(ticks)
    raise RuntimeError(f"CPU {cpu} not found in /proc/stat")


def children_cpu_seconds():
    """User + system CPU time of this process's reaped children: around one wrk run, wrk's own."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
SOCKET_ERRORS = ("connect", "read", "write", "timeout")  # wrk's "Socket errors:" line, in its order


def parse_wrk(text):
    """requests, requests/s, p50/p99 latency (ms), socket errors (total and by kind) and non-2xx
    count from wrk's output."""
    def find(pattern):
        m = re.search(pattern, text, re.MULTILINE)
        if not m:
            raise RuntimeError(f"unparsable wrk output: {text.strip()[-200:]!r}")
        return m

    def latency(pct):
        m = find(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$")
        return float(m.group(1)) * UNITS[m.group(2)]

    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    by_kind = dict(zip(SOCKET_ERRORS, map(int, errors.groups()))) if errors else dict.fromkeys(SOCKET_ERRORS, 0)
    return {
        **{f"errors_{kind}": n for kind, n in by_kind.items()},
        "requests": int(find(r"^\s+(\d+) requests in")[1]),
        "rps": float(find(r"^Requests/sec:\s+([\d.]+)")[1]),
        "p50_ms": latency(50),
        "p99_ms": latency(99),
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
        "non2xx": int(non2xx[1]) if non2xx else 0,
    }


def run_wrk(args, port, seconds, depth, headers=()):
    """One pinned wrk run of `seconds` (whole seconds: wrk takes no fractions), `depth` requests
    per write, `headers` added to every request; returns its stdout."""
    cmd = ["taskset", "-c", str(args.client_cpu), "wrk", "-t1", f"-c{args.conns}", f"-d{seconds}s",
           *(x for h in headers for x in ("-H", h)), "--latency", f"http://127.0.0.1:{port}/"]
    with tempfile.TemporaryDirectory() as scratch:
        if depth > 1:
            script = os.path.join(scratch, "pipeline.lua")
            with open(script, "w") as f:
                f.write(PIPELINE_SCRIPT % depth)
            cmd[-1:-1] = ["-s", script]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"wrk timed out after {seconds + 30}s") from None
    if proc.returncode:
        raise RuntimeError(micro.last_line(proc.stderr or proc.stdout) or f"wrk exit {proc.returncode}")
    return proc.stdout


def complete_response(data):
    """The head of the first HTTP response in `data` if all of it (head and Content-Length body)
    is there, else None."""
    head, sep, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    return head if sep and length and len(body) >= int(length[1]) else None


def check_close(port):
    """Sends one request with `Connection: close` on a fresh connection, as wrk does in the
    httptools-close case, and reads until the server closes the connection. Raises RuntimeError if
    no complete "200" response with "Connection: close" comes back within CLOSE_CHECK_TIMEOUT;
    returns None if the server then closed the connection (EOF) within CLOSE_CHECK_TIMEOUT more, or
    a note saying it did not."""
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    data, head, eof = b"", None, False
    with socket.create_connection(("127.0.0.1", port), timeout=CLOSE_CHECK_TIMEOUT) as sock:
        sock.sendall(request)
        deadline = time.monotonic() + CLOSE_CHECK_TIMEOUT  # for the response, then for the FIN
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                eof = True  # closed, if abruptly: the response must be complete (checked below)
                break
            if not chunk:
                eof = True
                break
            data += chunk
            if head is None and (head := complete_response(data)) is not None:
                deadline = time.monotonic() + CLOSE_CHECK_TIMEOUT
    head = head or complete_response(data)
    if head is None:
        raise RuntimeError(f"close check: no complete response to a `Connection: close` request within "
                           f"{CLOSE_CHECK_TIMEOUT:g}s (got {len(data)} bytes{', then EOF' if eof else ''})")
    if not head.startswith(b"HTTP/1.1 200") or not re.search(rb"(?im)^connection:\s*close\s*$", head):
        raise RuntimeError(f"close check: unexpected response to a `Connection: close` request: "
                           f"{head.splitlines()[0].decode(errors='replace')!r}, without `Connection: close`")
    if not eof:
        return (f"the server answered a `Connection: close` request but did not close the connection "
                f"(no FIN within {CLOSE_CHECK_TIMEOUT:g}s); wrk closes each connection itself once it has "
                f"read the response, so the run does not stall")
    return None


def open_fds(pid):
    """How many file descriptors a process holds."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def leftover_fds(pid, baseline, wait=2.0):
    """How many more fds than `baseline` the process still holds, given up to `wait` seconds to
    close the connections wrk has just closed."""
    deadline = time.monotonic() + wait
    while True:
        extra = open_fds(pid) - baseline
        if extra <= 0 or time.monotonic() >= deadline:
            return max(0, extra)
        time.sleep(0.05)


def died(proc, summary):
    """Why a server exited during a run: its exit status and the gist of its stderr."""
    return f"server exited during the run (exit {proc.returncode}): {summary() or 'no error output'}"


def measure(args, case, kind, vpy):
    """A fresh server, a warm-up wrk run, then the measured one; returns (result, None) or (None, error)."""
    script, depth, headers = CASES[case]
    if kind == NATIVE:
        cmd = ["taskset", "-c", str(args.server_cpu), HTTP_NATIVE, "--addr", "127.0.0.1:0"]
    else:
        cmd = ["taskset", "-c", str(args.server_cpu), vpy, "-I", os.path.join(HTTP_DIR, script),
               "--loop", kind, "--port", "0"]
    try:
        with server_process(cmd) as (proc, port, summary):
            try:
                closing = "Connection: close" in headers
                close_note = check_close(port) if closing else None
                fds0 = open_fds(proc.pid) if closing else None
                if args.warmup:
                    run_wrk(args, port, args.warmup, depth, headers)
                cpu0, wrk0, ticks0, t0 = (cpu_seconds(proc.pid), children_cpu_seconds(),
                                          cpu_ticks(args.server_cpu), time.monotonic())
                out = run_wrk(args, port, args.duration, depth, headers)
                cpu1, wrk1, ticks1, t1 = (cpu_seconds(proc.pid), children_cpu_seconds(),
                                          cpu_ticks(args.server_cpu), time.monotonic())
            except (RuntimeError, OSError) as e:
                # a server that died explains the failure better than wrk does
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(1)
                raise RuntimeError(died(proc, summary) if proc.poll() is not None else str(e)) from None
            if proc.poll() is not None:
                raise RuntimeError(died(proc, summary))
            result = parse_wrk(out)
            result["close_note"] = close_note
            # connections the server never closed (every one is closed by wrk by now)
            result["leaked_fds"] = leftover_fds(proc.pid, fds0) if closing else 0
    except RuntimeError as e:
        return None, str(e) or "failed"
    except OSError as e:
        return None, f"could not run {shlex.join(cmd[:4])}: {e}"
    if not result["requests"]:
        return None, "no request completed"
    if result["non2xx"]:
        return None, f"{result['non2xx']} of {result['requests']} responses were not 2xx/3xx"
    result["server_us_per_req"] = (cpu1 - cpu0) * 1e6 / result["requests"]
    result["server_cpu_pct"] = 100 * (cpu1 - cpu0) / (t1 - t0)
    result["wrk_cpu_pct"] = 100 * (wrk1 - wrk0) / (t1 - t0)
    result["server_cpu_busy_pct"] = 100 * (ticks1[0] - ticks0[0]) / max(1, ticks1[1] - ticks0[1])
    return result, None


# --------------------------------------------------------------------------------------------------
# Report


def fmt_rps(rps):
    return f"{rps:,.0f}"


def fmt_us(us):
    return f"{us:.2f}" if us < 10 else f"{us:.1f}"


def fmt_ms(ms):
    return f"{ms * 1000:.0f} µs" if ms < 1 else f"{ms:.2f} ms"


def medians(samples):
    """Median of every number over a cell's samples."""
    keys = ("rps", "server_us_per_req", "server_cpu_pct", "wrk_cpu_pct", "server_cpu_busy_pct", "p50_ms", "p99_ms",
            "socket_errors", *(f"errors_{kind}" for kind in SOCKET_ERRORS))
    m = {k: statistics.median(s[k] for s in samples) for k in keys}
    m["close_note"] = next((s["close_note"] for s in samples if s.get("close_note")), None)
    m["leaked_fds"] = statistics.median(s.get("leaked_fds", 0) for s in samples)
    return m


class Notes:
    """Numbered footnotes, each text once."""

    def __init__(self):
        self.texts = []

    def ref(self, text):
        text = " ".join(text.split())
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"


def main_cell(case, kind, args, samples, errors, notes):
    """A main-table cell: "req/s · µs/req" plus footnote marks, or n/a with the reason in a footnote."""
    if kind == NATIVE and case not in NATIVE_CASES:
        return "—", None
    got, errs = samples.get((case, kind), []), errors.get((case, kind), [])
    if not got:
        reason = errs[0] if errs else "not run"
        return f"n/a {notes.ref(f'{kind} / {case}: {reason}')}", None
    m = medians(got)
    text = (f"{fmt_rps(m['rps'])} · {fmt_us(m['server_us_per_req'])}"
            + micro.spread(s["server_us_per_req"] for s in got))
    if errs:
        text += " " + notes.ref(f"{kind} / {case}: failed in {len(errs)} of {args.rounds} rounds: {errs[0]}")
    if m["socket_errors"]:
        by_kind = ", ".join(f"{k} {m[f'errors_{k}']:.0f}" for k in SOCKET_ERRORS)
        text += " " + notes.ref(f"{kind} / {case}: wrk reported socket errors (median "
                                f"{m['socket_errors']:.0f} per run; by kind: {by_kind})")
    if m["close_note"]:
        text += " " + notes.ref(f"{kind} / {case}: {m['close_note']}")
    if m["leaked_fds"]:
        text += " " + notes.ref(f"{kind} / {case}: 2 s after the measured run the server still held "
                                f"{m['leaked_fds']:.0f} more file descriptors than before the warm-up "
                                f"(median per run): connections it never closed")
    if m["wrk_cpu_pct"] >= SATURATED_PCT:
        text += " " + notes.ref(f"wrk used {SATURATED_PCT}% or more of its CPU: req/s is limited by the client "
                                f"too; compare µs/req")
    if m["server_cpu_pct"] < SATURATED_PCT:
        busy = m["server_cpu_busy_pct"]
        why = ("other processes competed for it" if busy >= SATURATED_PCT
               else "the server waited (for wrk, or stalled)")
        text += " " + notes.ref(f"{kind} / {case}: the server used {m['server_cpu_pct']:.0f}% of CPU "
                                f"{args.server_cpu}, which was busy {busy:.0f}% of the time: {why}; req/s "
                                f"understates the loop, compare µs/req")
    return text, m


def detail_cell(m):
    """A second-table cell: latency percentiles and both processes' CPU use."""
    if m is None:
        return "n/a"
    return (f"{fmt_ms(m['p50_ms'])} / {fmt_ms(m['p99_ms'])} · "
            f"{m['server_cpu_pct']:.0f}% / {m['wrk_cpu_pct']:.0f}%")


def ratio_cells(med):
    """'ours vs best peer' for req/s (ours / best) and µs/req (best / ours); above 1.00x: ours better."""
    peers = [med[k] for k in micro.PEERS if med.get(k)]
    ours = med.get("ours")
    if not ours or not peers:
        return ["n/a", "n/a"]
    best_rps = max(p["rps"] for p in peers)
    best_us = min(p["server_us_per_req"] for p in peers)
    return [f"{ours['rps'] / best_rps:.2f}x", f"{best_us / ours['server_us_per_req']:.2f}x"]


def before_cells(med):
    """'ours vs before', as ratio_cells: ours / before for req/s, before / ours for µs/req."""
    ours, before = med.get("ours"), med.get("before")
    if not ours or not before:
        return ["n/a", "n/a"]
    return [f"{ours['rps'] / before['rps']:.2f}x", f"{before['server_us_per_req'] / ours['server_us_per_req']:.2f}x"]


def table(header, rows):
    return ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def render(args, cases, loops, infos, samples, errors, revs):
    """The whole markdown report."""
    notes = Notes()
    with_ratio = "ours" in loops and any(p in loops for p in micro.PEERS)
    with_before = "ours" in loops and "before" in loops
    main_rows, latency_rows = [], []
    for case in cases:
        cells, med = [], {}
        for kind in loops:
            text, med[kind] = main_cell(case, kind, args, samples, errors, notes)
            cells.append(text)
        main_rows.append([case, *cells, *(ratio_cells(med) if with_ratio else []),
                          *(before_cells(med) if with_before else [])])
        latency_rows.append([case, *("—" if k == NATIVE and case not in NATIVE_CASES else detail_cell(med[k])
                                     for k in loops)])
    packages = ", ".join(f"{d} {v}" for d, v in PACKAGES.items())
    out = [
        "## HTTP benchmark",
        "",
        f"- Command (from the repository root): `{args.command}`",
        f"- Date: {args.started.strftime('%Y-%m-%d %H:%M UTC')}; load average at start: {args.loadavg}",
        f"- Python: {platform.python_implementation()} {args.python_version} (`{micro.shown_path(args.python)}`)",
        f"- CPU: {micro.cpu_model()}, {os.cpu_count()} logical CPUs, server pinned to CPU {args.server_cpu}, "
        f"wrk to CPU {args.client_cpu} (taskset); {platform.system()} {platform.release()}",
        f"- Client: {args.wrk_version}: `wrk -t1 -c{args.conns} -d{args.duration}s --latency`, "
        f"after a {args.warmup} s warm-up run on the same server",
        "- Loops: " + "; ".join("native: `http-native` (bench/loadgen, Rust, mio, one thread; the "
                                "httptools cases only)" if k == NATIVE else micro.loop_label(k, infos.get(k))
                                for k in loops)
        + micro.built_from(revs, loops),
        f"- Servers (bench/http/): `httptools`: asyncio.Protocol + httptools parser, fixed "
        f"response with a 13-byte body, keep-alive; `httptools-pipelined`: the same server, wrk sending "
        f"{PIPELINE_DEPTH} requests per write (`-s` with a Lua script); `httptools-close`: the same server, "
        f"wrk sending `Connection: close` with every request (`-H`), so every request is a new connection "
        f"that the server closes after its response (req/s = connections/s, µs/req = server CPU per "
        f"connection; wrk's latency runs from the request's write, without the connect); "
        f"`uvicorn`: minimal ASGI app under uvicorn (http=httptools, no access "
        f"log) on the loop under test. Packages in every venv: {packages}.",
        f"- A fresh server per run; {args.rounds} round(s), loop order rotated per round and case. "
        "Cell: **req/s** from wrk (higher is better) · **server CPU µs per request** (user + system "
        f"from /proc/PID/stat over the measured run, {1000 // os.sysconf('SC_CLK_TCK')} ms ticks; lower is "
        "better), medians over rounds, ± half the range of µs/req over rounds. "
        "**ours vs best peer**: ours / best peer for req/s, best peer / ours for µs/req; above 1.00x "
        "ours is better" + ("; **ours vs before** the same against before." if with_before else "."),
        "",
        *table(["case", *loops, *(["ours vs best peer (req/s)", "ours vs best peer (µs/req)"]
                                  if with_ratio else []),
                *(["ours vs before (req/s)", "ours vs before (µs/req)"] if with_before else [])], main_rows),
        "",
        "Latency p50 / p99 (wrk) · CPU use of the server / of wrk over the measured run, medians over rounds:",
        "",
        *table(["case", *loops], latency_rows),
        "",
        *(f"[{i}] {text}  " for i, text in enumerate(notes.texts, 1)),
    ]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------------------------------


def parse_list(p, text, allowed):
    """A comma-separated option, checked against `allowed`, in `allowed`'s order."""
    items = [x for x in text.split(",") if x]
    if not items or any(x not in allowed for x in items):
        p.error(f"expected a comma-separated subset of {','.join(allowed)}, got {text!r}")
    return [x for x in allowed if x in items]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 round, 1 s warm-up, 3 s measured (unless given explicitly)")
    p.add_argument("--rounds", type=int, help="rounds (default 3; 1 with --quick)")
    p.add_argument("--duration", type=int, help="measured seconds per run (default 10; 3 with --quick)")
    p.add_argument("--warmup", type=int, help="warm-up seconds per run, 0 for none (default 2; 1 with --quick)")
    p.add_argument("--conns", type=int, default=50, help="wrk connections (default 50)")
    p.add_argument("--cases", default=",".join(CASES), help=f"subset of {','.join(CASES)}")
    micro.add_loop_options(p, LOOPS, DEFAULT_LOOPS)
    p.add_argument("--server-cpu", type=int, default=0, help="CPU the server is pinned to (default 0)")
    p.add_argument("--client-cpu", type=int, default=1, help="CPU wrk is pinned to (default 1)")
    p.add_argument("--no-build", action="store_true", help="do not rebuild and reinstall ours")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter for every venv (default: the one running this script)")
    p.add_argument("--venvs", default=micro.DEFAULT_VENVS, help="where the virtualenvs live (default bench/.venvs)")
    p.add_argument("--output", help="also write the markdown report to this file")
    p.add_argument("--json", help="also write every raw result and error to this JSON file")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (3 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if args.rounds < 1 or args.conns < 1 or args.duration < 1 or args.warmup < 0:
        p.error("--rounds, --conns and --duration must be at least 1, --warmup at least 0")
    usable = os.sched_getaffinity(0)
    if args.server_cpu not in usable or args.client_cpu not in usable or args.server_cpu == args.client_cpu:
        p.error(f"--server-cpu and --client-cpu must be two different CPUs of {sorted(usable)}")
    args.venvs = os.path.abspath(args.venvs)
    return args, parse_list(p, args.cases, list(CASES)), parse_list(p, micro.loops_option(args, DEFAULT_LOOPS), LOOPS)


def run_all(args, cases, loops, vpys, unavailable):
    """Every round's runs; returns (samples, errors), keyed by (case, loop), and the raw records."""
    samples, errors, raw = {}, {}, []
    runs = [(case, kind) for case in cases for kind in loops if kind != NATIVE or case in NATIVE_CASES]
    progress = micro.Progress("http", args.rounds * len(runs), args.rounds)
    for rnd in range(args.rounds):
        for ci, case in enumerate(cases):
            for kind in micro.rotated(loops, rnd + ci):
                if (case, kind) not in runs:
                    continue
                if kind in unavailable:
                    result, error = None, f"loop unavailable: {unavailable[kind]}"
                else:
                    result, error = measure(args, case, kind, vpys.get(kind))
                raw.append({"round": rnd, "case": case, "loop": kind, "result": result, "error": error})
                if error is None:
                    samples.setdefault((case, kind), []).append(result)
                    shown = (f"{fmt_rps(result['rps'])} req/s, {fmt_us(result['server_us_per_req'])} µs/req, "
                             f"CPU server {result['server_cpu_pct']:.0f}% wrk {result['wrk_cpu_pct']:.0f}% "
                             f"(server's CPU busy {result['server_cpu_busy_pct']:.0f}%), "
                             f"p50 {fmt_ms(result['p50_ms'])}")
                else:
                    errors.setdefault((case, kind), []).append(error)
                    shown = "FAILED: " + error
                progress.line(rnd, f"{case} on {kind}", shown)
    return samples, errors, raw


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, cases, loops = parse_args(argv)
    args.started = datetime.datetime.now(datetime.timezone.utc)
    args.command = shlex.join([os.path.basename(sys.executable), os.path.relpath(__file__, ROOT), *argv])
    args.loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    args.python, args.identity, args.python_version = resolve_python(args.python)
    os.makedirs(args.venvs, exist_ok=True)

    args.wrk_version = ensure_wrk()
    vpys, infos, unavailable, revs = setup_loops(args, loops)
    runs = args.rounds * sum(1 for c in cases for k in loops if k != NATIVE or c in NATIVE_CASES)
    log(f"[http] {runs} runs, about {runs * (args.warmup + args.duration + RUN_OVERHEAD) / 60:.1f} min")

    t0 = time.monotonic()
    samples, errors, raw = run_all(args, cases, loops, vpys, unavailable)
    log(f"[done] measured in {time.monotonic() - t0:.0f}s")

    report = render(args, cases, loops, infos, samples, errors, revs)
    sys.stdout.write(report)
    sys.stdout.flush()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(report)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"command": args.command, "date": args.started.isoformat(), "infos": infos, "runs": raw},
                      f, indent=1)


if __name__ == "__main__":
    main()
