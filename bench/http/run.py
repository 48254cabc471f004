#!/usr/bin/env python3
"""HTTP benchmark: asyncio, uvloop 0.23, rloop 0.5 and ours behind two small HTTP servers, under wrk.

    python bench/http/run.py                  # default: 3 rounds, about 9 minutes, builds ours first
    python bench/http/run.py --quick          # smoke test: 1 round, 1 s warm-up, 3 s measured
    python bench/http/run.py --no-build --cases uvicorn --loops uvloop-0.23,ours --output http.md

Cases: `httptools`, a keep-alive HTTP/1.1 server on asyncio.Protocol + httptools
(server_httptools.py); `httptools-pipelined`, the same server with wrk sending 16 pipelined
requests per write (one wrk thread cannot keep the plain case's server busy on these machines, so
its req/s mostly measure wrk); and `uvicorn`, a minimal ASGI app served by uvicorn with its
httptools protocol (app_uvicorn.py). For every round, case and loop, a fresh server runs in the loop's
virtualenv pinned to one CPU (taskset), and `wrk -t1 -c<conns> --latency` pinned to another CPU
loads it: a warm-up run, then the measured run. The server's CPU time (utime + stime from
/proc/PID/stat) is read right before and after the measured run. Each cell reports wrk's requests/s
and the server's CPU µs per request, medians over the rounds; the loop order rotates per round and
per case. The virtualenvs and the build of ours come from bench/run.py's set-up code; httptools and
uvicorn are installed into every venv at pinned versions. Progress goes to stderr; the markdown
report goes to stdout (and to --output).
"""

import argparse
import contextlib
import datetime
import importlib.util
import os
import platform
import re
import resource
import selectors
import shlex
import shutil
import signal
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

# case -> (server script, requests wrk sends per write: 1 is plain keep-alive, more is pipelining)
CASES = {
    "httptools": ("server_httptools.py", 1),
    "httptools-pipelined": ("server_httptools.py", PIPELINE_DEPTH),
    "uvicorn": ("app_uvicorn.py", 1),
}
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

    Returns (venv interpreters, probe info, unavailable loop -> reason, the revision ours came from).
    """
    vpys, infos, unavailable, ours_rev = {}, {}, {}, "n/a"
    for kind in loops:
        vpy = micro.ensure_venv(args.venvs, kind, args.python, args.identity)
        if kind == "ours":
            ours_rev = micro.setup_ours(vpy, args.venvs, build=not args.no_build)
        else:
            micro.setup_peer(vpy, kind)
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
    return vpys, infos, unavailable, ours_rev


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


def parse_wrk(text):
    """requests, requests/s, p50/p99 latency (ms), socket errors and non-2xx count from wrk's output."""
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
    return {
        "requests": int(find(r"^\s+(\d+) requests in")[1]),
        "rps": float(find(r"^Requests/sec:\s+([\d.]+)")[1]),
        "p50_ms": latency(50),
        "p99_ms": latency(99),
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
        "non2xx": int(non2xx[1]) if non2xx else 0,
    }


def run_wrk(args, port, seconds, depth):
    """One pinned wrk run of `seconds` (whole seconds: wrk takes no fractions), `depth` requests
    per write; returns its stdout."""
    cmd = ["taskset", "-c", str(args.client_cpu), "wrk", "-t1", f"-c{args.conns}", f"-d{seconds}s",
           "--latency", f"http://127.0.0.1:{port}/"]
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


def died(proc, summary):
    """Why a server exited during a run: its exit status and the gist of its stderr."""
    return f"server exited during the run (exit {proc.returncode}): {summary() or 'no error output'}"


def measure(args, case, kind, vpy):
    """A fresh server, a warm-up wrk run, then the measured one; returns (result, None) or (None, error)."""
    script, depth = CASES[case]
    cmd = ["taskset", "-c", str(args.server_cpu), vpy, "-I", os.path.join(HTTP_DIR, script),
           "--loop", kind, "--port", "0"]
    try:
        with server_process(cmd) as (proc, port, summary):
            try:
                if args.warmup:
                    run_wrk(args, port, args.warmup, depth)
                cpu0, wrk0, ticks0, t0 = (cpu_seconds(proc.pid), children_cpu_seconds(),
                                          cpu_ticks(args.server_cpu), time.monotonic())
                out = run_wrk(args, port, args.duration, depth)
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
            "socket_errors")
    return {k: statistics.median(s[k] for s in samples) for k in keys}


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
    got, errs = samples.get((case, kind), []), errors.get((case, kind), [])
    if not got:
        reason = errs[0] if errs else "not run"
        return f"n/a {notes.ref(f'{kind} / {case}: {reason}')}", None
    m = medians(got)
    text = f"{fmt_rps(m['rps'])} · {fmt_us(m['server_us_per_req'])}"
    if errs:
        text += " " + notes.ref(f"{kind} / {case}: failed in {len(errs)} of {args.rounds} rounds: {errs[0]}")
    if m["socket_errors"]:
        text += " " + notes.ref(f"{kind} / {case}: wrk reported socket errors (median "
                                f"{m['socket_errors']:.0f} per run)")
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


def table(header, rows):
    return ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def render(args, cases, loops, infos, samples, errors, ours_rev):
    """The whole markdown report."""
    notes = Notes()
    with_ratio = "ours" in loops and any(p in loops for p in micro.PEERS)
    main_rows, latency_rows = [], []
    for case in cases:
        cells, med = [], {}
        for kind in loops:
            text, med[kind] = main_cell(case, kind, args, samples, errors, notes)
            cells.append(text)
        main_rows.append([case, *cells, *(ratio_cells(med) if with_ratio else [])])
        latency_rows.append([case, *(detail_cell(med[k]) for k in loops)])
    packages = ", ".join(f"{d} {v}" for d, v in PACKAGES.items())
    out = [
        "## HTTP benchmark",
        "",
        f"- Command (from the repository root): `{args.command}`",
        f"- Date: {args.started.strftime('%Y-%m-%d %H:%M UTC')}; load average at start: {args.loadavg}",
        f"- Python: {platform.python_implementation()} {args.python_version} (`{args.python}`)",
        f"- CPU: {micro.cpu_model()}, {os.cpu_count()} logical CPUs, server pinned to CPU {args.server_cpu}, "
        f"wrk to CPU {args.client_cpu} (taskset); {platform.system()} {platform.release()}",
        f"- Client: {args.wrk_version}: `wrk -t1 -c{args.conns} -d{args.duration}s --latency`, "
        f"after a {args.warmup} s warm-up run on the same server",
        "- Loops: " + "; ".join(micro.loop_label(k, infos.get(k)) for k in loops)
        + (f"; ours built from {ours_rev}" if "ours" in loops else ""),
        f"- Servers (bench/http/): `httptools`: asyncio.Protocol + httptools parser, fixed "
        f"response with a 13-byte body, keep-alive; `httptools-pipelined`: the same server, wrk sending "
        f"{PIPELINE_DEPTH} requests per write (`-s` with a Lua script); "
        f"`uvicorn`: minimal ASGI app under uvicorn (http=httptools, no access "
        f"log) on the loop under test. Packages in every venv: {packages}.",
        f"- A fresh server per run; {args.rounds} round(s), loop order rotated per round and case. "
        "Cell: **req/s** from wrk (higher is better) · **server CPU µs per request** (user + system "
        f"from /proc/PID/stat over the measured run, {1000 // os.sysconf('SC_CLK_TCK')} ms ticks; lower is "
        "better), medians over rounds. "
        "**ours vs best peer**: ours / best peer for req/s, best peer / ours for µs/req; above 1.00x "
        "ours is better.",
        "",
        *table(["case", *loops, *(["ours vs best peer (req/s)", "ours vs best peer (µs/req)"]
                                  if with_ratio else [])], main_rows),
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
    p.add_argument("--loops", default=",".join(micro.LOOPS), help=f"subset of {','.join(micro.LOOPS)}")
    p.add_argument("--server-cpu", type=int, default=0, help="CPU the server is pinned to (default 0)")
    p.add_argument("--client-cpu", type=int, default=1, help="CPU wrk is pinned to (default 1)")
    p.add_argument("--no-build", action="store_true", help="do not rebuild and reinstall ours")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter for every venv (default: the one running this script)")
    p.add_argument("--venvs", default=micro.DEFAULT_VENVS, help="where the virtualenvs live (default bench/.venvs)")
    p.add_argument("--output", help="also write the markdown report to this file")
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
    return args, parse_list(p, args.cases, list(CASES)), parse_list(p, args.loops, micro.LOOPS)


def run_all(args, cases, loops, vpys, unavailable):
    """Every round's runs; returns (samples, errors), keyed by (case, loop)."""
    samples, errors = {}, {}
    total, done = args.rounds * len(cases) * len(loops), 0
    for rnd in range(args.rounds):
        for ci, case in enumerate(cases):
            for kind in micro.rotated(loops, rnd + ci):
                done += 1
                if kind in unavailable:
                    result, error = None, f"loop unavailable: {unavailable[kind]}"
                else:
                    result, error = measure(args, case, kind, vpys[kind])
                if error is None:
                    samples.setdefault((case, kind), []).append(result)
                    shown = (f"{fmt_rps(result['rps'])} req/s, {fmt_us(result['server_us_per_req'])} µs/req, "
                             f"CPU server {result['server_cpu_pct']:.0f}% wrk {result['wrk_cpu_pct']:.0f}% "
                             f"(server's CPU busy {result['server_cpu_busy_pct']:.0f}%), "
                             f"p50 {fmt_ms(result['p50_ms'])}")
                else:
                    errors.setdefault((case, kind), []).append(error)
                    shown = "FAILED: " + error
                log(f"[{done}/{total}] round {rnd + 1} {case:9} {kind:12} {shown}")
    return samples, errors


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, cases, loops = parse_args(argv)
    args.started = datetime.datetime.now(datetime.timezone.utc)
    args.command = shlex.join([os.path.basename(sys.executable), os.path.relpath(__file__, ROOT), *argv])
    args.loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    args.python, args.identity, args.python_version = resolve_python(args.python)
    os.makedirs(args.venvs, exist_ok=True)

    args.wrk_version = ensure_wrk()
    vpys, infos, unavailable, ours_rev = setup_loops(args, loops)
    runs = args.rounds * len(cases) * len(loops)
    log(f"[http] {runs} runs, about {runs * (args.warmup + args.duration + RUN_OVERHEAD) / 60:.1f} min")

    t0 = time.monotonic()
    samples, errors = run_all(args, cases, loops, vpys, unavailable)
    log(f"[done] measured in {time.monotonic() - t0:.0f}s")

    report = render(args, cases, loops, infos, samples, errors, ours_rev)
    sys.stdout.write(report)
    sys.stdout.flush()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(report)


if __name__ == "__main__":
    main()
