#!/usr/bin/env python3
"""Echo benchmark: asyncio, uvloop 0.23, rloop 0.5 and ours (and before) as echo servers, plus a native one.

    python bench/echo/run.py                  # default: 3 rounds, about 11 minutes, builds ours first
    python bench/echo/run.py --quick          # smoke test: 1 round, short windows, about 1.5 minutes
    python bench/echo/run.py --no-build --modes protocol,streams --sizes 1024 --output echo.md

For every round, message size, server mode and loop, a fresh echo server (bench/echo/server.py in
the loop's virtualenv, or the native `echo-native`) is started pinned to one CPU, and the Rust load
generator (bench/loadgen, `loadgen`) pinned to another CPU keeps --conns connections doing
request/response ping-pong against it: a warm-up, then the measured window. The load generator
reads the server's CPU time (/proc/PID/stat) at the window's edges. Each cell reports the client's
requests/s and the server's CPU µs per request, medians over the rounds. The loop order rotates per
round and per mode. Virtualenvs and the builds of ours and before (this project at an earlier commit,
--before-commit) come from bench/run.py's set-up code. Progress
goes to stderr; the markdown report goes to stdout (and to --output).
"""

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import re
import selectors
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ECHO_DIR = os.path.dirname(os.path.abspath(__file__))
BENCH_DIR = os.path.dirname(ECHO_DIR)
ROOT = os.path.dirname(BENCH_DIR)
SERVER = os.path.join(ECHO_DIR, "server.py")
LOADGEN_DIR = os.path.join(BENCH_DIR, "loadgen")
LOADGEN = os.path.join(LOADGEN_DIR, "target", "release", "loadgen")
ECHO_NATIVE = os.path.join(LOADGEN_DIR, "target", "release", "echo-native")

MODES = ("protocol", "buffered", "streams", "sock")
SIZES = (1024, 10240, 102400)
NATIVE = "native"
CLIENT_BOUND_PCT = 90  # loadgen CPU use above which req/s says more about the client
NOISY_PCT = 10  # share of a pinned CPU used by other processes above which a run is retried / flagged
SERVER_START_TIMEOUT = 30  # seconds for a server to print READY
RUN_OVERHEAD = 0.3  # seconds per run beyond warm-up + window (start, connect, stop), for estimates


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


def build_loadgen():
    """Builds loadgen and echo-native (a no-op when they are up to date)."""
    micro.run_cmd(["cargo", "build", "--release", "--quiet", "--manifest-path",
                   os.path.join(LOADGEN_DIR, "Cargo.toml")])


def resolve_python(python):
    """(interpreter path, identity line, version) for --python, as bench/run.py checks it."""
    rc, real, err = micro.capture([shutil.which(python) or python, "-c", "import sys; print(sys.executable)"])
    if rc or not real:
        raise SystemExit(f"--python {python} does not run: {err}")
    rc, identity, err = micro.capture([real, "-c", micro.IDENTITY])
    if rc:
        raise SystemExit(f"--python {python} does not run: {err}")
    return real, identity, identity.split()[1]


def setup_loops(args, loops):
    """Creates or fixes every loop's venv (ours rebuilt unless --no-build).

    Returns (venv interpreters, probe info, unavailable loop -> reason, the revisions ours and
    before were built from).
    """
    vpys, infos, unavailable, revs = {}, {}, {}, {}
    for kind in loops:
        if kind == NATIVE:
            continue
        vpy = micro.ensure_venv(args.venvs, kind, args.python, args.identity)
        rev = micro.setup_loop(vpy, args.venvs, kind, args)
        if rev:
            revs[kind] = rev
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


def pinned(cpu):
    """A preexec_fn pinning the child to `cpu` (None: no pinning)."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


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
    """Reads the server's stdout until "READY <where>"; returns <where> or raises RuntimeError."""
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
    return line.split(" ", 1)[1]


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
def server_process(cmd, cpu):
    """Runs an echo server; yields (process, where it listens, its stderr file); always stops it."""
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                cwd=ECHO_DIR, preexec_fn=pinned(cpu))
        try:
            try:
                where = wait_ready(proc, SERVER_START_TIMEOUT)
            except RuntimeError as e:
                stop_process(proc)
                raise RuntimeError(server_error(stderr) or str(e)) from None
            yield proc, where, stderr
        finally:
            stop_process(proc)


def server_error(stderr):
    """What the server printed on stderr, summarized."""
    stderr.seek(0)
    return describe_failure(stderr.read().decode(errors="replace"))


def server_command(kind, mode, vpys, unix_path, warm_heap):
    """The command line of the echo server for one loop and mode."""
    if kind == NATIVE:
        where = ["--unix", unix_path] if unix_path else ["--addr", "127.0.0.1:0"]
        return [ECHO_NATIVE, *where]
    where = ["--unix", unix_path] if unix_path else ["--port", "0"]
    heap = ["--warm-heap"] if warm_heap else []
    return [vpys[kind], "-I", SERVER, "--loop", kind, "--mode", mode, *where, *heap]


def run_loadgen(args, size, where, server_pid):
    """Runs one loadgen invocation; returns its JSON result or raises RuntimeError."""
    target = ["--unix", where] if args.unix else ["--addr", f"127.0.0.1:{where}"]
    cmd = [LOADGEN, *target, "--conns", str(args.conns), "--size", str(size),
           "--duration", str(args.duration), "--warmup", str(args.warmup), "--server-pid", str(server_pid)]
    timeout = args.warmup + args.duration + 30
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=pinned(args.client_cpu))
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"loadgen timed out after {timeout:g}s") from None
    if proc.returncode:
        raise RuntimeError(micro.last_line(proc.stderr) or f"loadgen exit {proc.returncode}")
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise RuntimeError(f"unparsable loadgen output: {proc.stdout[:200]!r}") from None


def measure(args, kind, mode, size, vpys):
    """One fresh server and one loadgen run; returns (result, None) or (None, error message)."""
    unix_path = os.path.join(args.tmpdir, "echo.sock") if args.unix else None
    cmd = server_command(kind, mode, vpys, unix_path, args.warm_heap)
    try:
        with server_process(cmd, args.server_cpu) as (proc, where, stderr):
            try:
                result = run_loadgen(args, size, where, proc.pid)
            except RuntimeError as e:
                # a server that died (it exits on its first error) explains the failure better
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(1)
                raise RuntimeError(server_error(stderr) if proc.poll() is not None else str(e)) from None
    except RuntimeError as e:
        return None, str(e) or "failed"
    except OSError as e:
        return None, f"could not run {shlex.join(cmd[:2])}: {e}"
    if not result["requests"]:
        return None, "no request completed in the measured window (the server never answered)"
    return result, None


def others_pct(result, args):
    """How busy the two pinned CPUs were with anything but the server and loadgen (percent, the
    larger of the two), from loadgen's /proc/stat readings; None without pinning."""
    busy = result.get("cpu_busy_pct") or []
    if args.server_cpu is None or max(args.server_cpu, args.client_cpu) >= len(busy):
        return None
    server_pct = result["server_cpu_us"] / (result["duration_s"] * 1e4)
    return max(0.0, busy[args.server_cpu] - server_pct, busy[args.client_cpu] - result["client_cpu_pct"])


def measure_quietly(args, kind, mode, size, vpys):
    """measure(), rerun up to --retries times while other processes disturb the pinned CPUs;
    keeps the least disturbed run. The result gets an "others_pct" entry."""
    best = None
    for attempt in range(args.retries + 1):
        result, error = measure(args, kind, mode, size, vpys)
        if error:
            return None, error
        result["others_pct"] = others_pct(result, args)
        if best is None or (result["others_pct"] or 0) < (best["others_pct"] or 0):
            best = result
        if (best["others_pct"] or 0) <= NOISY_PCT:
            break
        if attempt < args.retries:
            log(f"[echo] other processes took {result['others_pct']:.0f}% of a pinned CPU, running again")
    return best, None


# --------------------------------------------------------------------------------------------------
# Schedule


def rotated(seq, k):
    return micro.rotated(seq, k) if seq else []


def schedule(rnd, sizes, modes, loops):
    """The (size, mode, loop) runs of round `rnd`.

    For each size: one block per mode with the Python loops in an order rotated by round and mode,
    and a block holding the native server alone (its mode is "-"); the blocks' order rotates too.
    """
    py_loops = [k for k in loops if k != NATIVE]
    jobs = []
    for size in sizes:
        blocks = [[(size, mode, kind) for kind in rotated(py_loops, rnd + mi)]
                  for mi, mode in enumerate(modes)]
        if NATIVE in loops:
            blocks.append([(size, "-", NATIVE)])
        for block in rotated(blocks, rnd):
            jobs.extend(block)
    return jobs


# --------------------------------------------------------------------------------------------------
# Report


def fmt_size(size):
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def fmt_rps(rps):
    return f"{rps:,.0f}"


def fmt_us(us):
    return f"{us:.2f}" if us < 10 else f"{us:.1f}"


def fmt_cell(m):
    return f"{fmt_rps(m['rps'])} · {fmt_us(m['us'])}"


def medians(samples):
    """Median req/s, server µs/req, loadgen CPU % and others' CPU % over a cell's samples."""
    return {
        "rps": statistics.median(s["rps"] for s in samples),
        "us": statistics.median(s["server_us_per_req"] for s in samples),
        "client": statistics.median(s["client_cpu_pct"] for s in samples),
        "others": statistics.median(s["others_pct"] or 0 for s in samples),
    }


class Notes:
    """Numbered footnotes, each text once."""

    def __init__(self):
        self.texts = []

    def ref(self, text):
        text = " ".join(text.split())
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"


def cell_text(key, args, samples, errors, notes):
    """A table cell: medians plus footnote marks, or n/a with the reason in a footnote."""
    size, mode, kind = key
    got, errs = samples.get(key, []), errors.get(key, [])
    where = f"{kind} / {mode} / {fmt_size(size)}" if kind != NATIVE else f"native / {fmt_size(size)}"
    if not got:
        reason = errs[0] if errs else "not run"
        return f"n/a {notes.ref(f'{where}: {reason}')}", None
    m = medians(got)
    text = fmt_cell(m) + micro.spread(s["server_us_per_req"] for s in got)
    if errs:
        text += " " + notes.ref(f"{where}: failed in {len(errs)} of {args.rounds} rounds: {errs[0]}")
    if m["client"] >= CLIENT_BOUND_PCT:
        text += " " + notes.ref(f"loadgen at or above {CLIENT_BOUND_PCT}% of its CPU: req/s is "
                                f"limited by the client, compare µs/req")
    if m["others"] > NOISY_PCT:
        text += " " + notes.ref(f"other processes used more than {NOISY_PCT}% of a pinned CPU during "
                                f"the measured window (median over rounds): req/s is unreliable")
    return text, m


def ratio_cells(med):
    """'ours vs best peer' for req/s (ours / best) and µs/req (best / ours); above 1.00x: ours better."""
    peers = [med[k] for k in micro.PEERS if med.get(k)]
    ours = med.get("ours")
    if not ours or not peers:
        return ["n/a", "n/a"]
    best_rps = max(p["rps"] for p in peers)
    best_us = min(p["us"] for p in peers)
    return [f"{ours['rps'] / best_rps:.2f}x", f"{best_us / ours['us']:.2f}x"]


def before_cells(med):
    """'ours vs before', as ratio_cells: ours / before for req/s, before / ours for µs/req."""
    ours, before = med.get("ours"), med.get("before")
    if not ours or not before:
        return ["n/a", "n/a"]
    return [f"{ours['rps'] / before['rps']:.2f}x", f"{before['us'] / ours['us']:.2f}x"]


def render_size(size, args, modes, loops, samples, errors, notes):
    """The markdown table for one message size, and the native line under it."""
    py_loops = [k for k in loops if k != NATIVE]
    with_ratio = "ours" in py_loops and any(p in py_loops for p in micro.PEERS)
    with_before = "ours" in py_loops and "before" in py_loops
    header = ["mode", *py_loops] + (["ours vs best peer (req/s)", "ours vs best peer (µs/req)"]
                                    if with_ratio else []) + (["ours vs before (req/s)", "ours vs before (µs/req)"]
                                                              if with_before else [])
    out = [f"### {fmt_size(size)} messages", ""]
    if py_loops:
        out += ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        for mode in modes:
            cells, med = [], {}
            for kind in py_loops:
                text, med[kind] = cell_text((size, mode, kind), args, samples, errors, notes)
                cells.append(text)
            if with_ratio:
                cells += ratio_cells(med)
            if with_before:
                cells += before_cells(med)
            out.append("| " + " | ".join([mode, *cells]) + " |")
        out.append("")
    if NATIVE in loops:
        text, _ = cell_text((size, "-", NATIVE), args, samples, errors, notes)
        out += [f"native (`echo-native`, Rust, single-threaded epoll): {text}", ""]
    return out


def render(args, sizes, modes, loops, infos, samples, errors, revs):
    """The whole markdown report."""
    notes = Notes()
    labels = [micro.loop_label(k, infos.get(k)) for k in loops if k != NATIVE]
    if NATIVE in loops:
        labels.append("native: `echo-native` (bench/loadgen, mio)")
    pin = (f"server pinned to CPU {args.server_cpu}, loadgen to CPU {args.client_cpu}"
           if args.server_cpu is not None else "no pinning")
    transport = "Unix socket" if args.unix else "TCP over 127.0.0.1 (TCP_NODELAY)"
    out = [
        "## Echo benchmark",
        "",
        f"- Command (from the repository root): `{args.command}`",
        f"- Date: {args.started.strftime('%Y-%m-%d %H:%M UTC')}; load average at start: {args.loadavg}",
        f"- Python: {platform.python_implementation()} {args.python_version} (`{micro.shown_path(args.python)}`)",
        f"- CPU: {micro.cpu_model()}, {os.cpu_count()} logical CPUs, {pin}; "
        f"{platform.system()} {platform.release()}",
        "- Loops: " + "; ".join(labels) + micro.built_from(revs, loops),
        f"- {args.conns} connections over {transport}, each in request/response ping-pong (write a "
        f"message, read all of it back, repeat); {args.warmup:g} s warm-up, then {args.duration:g} s "
        f"measured; a fresh server per run; {args.rounds} round(s), loop order rotated per round and mode; "
        f"a run during which other processes took more than {NOISY_PCT}% of a pinned CPU is rerun "
        f"(up to {args.retries} time(s), the least disturbed run is kept)"
        + ("; every server allocates and frees 4 MiB before serving (`--warm-heap`, see "
           "bench/echo/server.py)." if args.warm_heap else "."),
        "- Cell: **req/s** completed by the client (higher is better) · **server CPU µs per request** "
        "(user + system from /proc/PID/stat over the window, 10 ms ticks; lower is better), medians over "
        "rounds, ± half the range of µs/req over rounds. **ours vs best peer**: ours / best peer for req/s, best peer / ours for µs/req; above "
        "1.00x ours is better" + ("; **ours vs before** the same against before." if {"ours", "before"} <= set(loops)
                                  else "."),
        "",
    ]
    for size in sizes:
        out += render_size(size, args, modes, loops, samples, errors, notes)
    out += [f"[{i}] {text}  " for i, text in enumerate(notes.texts, 1)]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------------------------------


def parse_list(p, text, allowed, convert=str):
    """A comma-separated option, checked against `allowed`, in `allowed`'s order."""
    try:
        items = [convert(x) for x in text.split(",") if x]
    except ValueError:
        p.error(f"bad list: {text}")
    bad = [x for x in items if x not in allowed] if allowed else []
    if bad or not items:
        p.error(f"expected a comma-separated subset of {','.join(map(str, allowed))}, got {text!r}")
    return [x for x in allowed if x in items] if allowed else items


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 round, 0.5 s warm-up, 1 s window (unless given explicitly)")
    p.add_argument("--rounds", type=int, help="rounds (default 3; 1 with --quick)")
    p.add_argument("--duration", type=float, help="measured seconds per run (default 3; 1 with --quick)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per run (default 1; 0.5 with --quick)")
    p.add_argument("--conns", type=int, default=10, help="connections per run (default 10)")
    p.add_argument("--modes", default=",".join(MODES), help=f"subset of {','.join(MODES)}")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)),
                   help="message sizes in bytes (default 1024,10240,102400)")
    micro.add_loop_options(p, LOOPS, DEFAULT_LOOPS)
    p.add_argument("--unix", action="store_true", help="Unix sockets instead of TCP (rloop 0.5 has none)")
    p.add_argument("--warm-heap", action="store_true",
                   help="servers allocate and free 4 MiB first (see server.py: glibc's thresholds)")
    p.add_argument("--server-cpu", type=int, default=0, help="CPU the server is pinned to (default 0)")
    p.add_argument("--client-cpu", type=int, default=1, help="CPU loadgen is pinned to (default 1)")
    p.add_argument("--no-pin", action="store_true", help="pin nothing")
    p.add_argument("--retries", type=int, default=1,
                   help=f"reruns of a run during which other processes took more than {NOISY_PCT}%% of a "
                        f"pinned CPU; the least disturbed one is kept (default 1)")
    p.add_argument("--no-build", action="store_true", help="do not rebuild and reinstall ours")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter for every venv (default: the one running this script)")
    p.add_argument("--venvs", default=micro.DEFAULT_VENVS, help="where the virtualenvs live (default bench/.venvs)")
    p.add_argument("--output", help="also write the markdown report to this file")
    p.add_argument("--json", help="also write every raw loadgen result and error to this JSON file")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (1.0 if args.quick else 3.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    if args.rounds < 1 or args.conns < 1 or args.duration <= 0 or args.warmup < 0 or args.retries < 0:
        p.error("--rounds, --conns and --duration must be above 0, --warmup and --retries at least 0")
    modes = parse_list(p, args.modes, MODES)
    sizes = parse_list(p, args.sizes, None, int)
    loops = parse_list(p, micro.loops_option(args, DEFAULT_LOOPS), LOOPS)
    if any(s < 1 for s in sizes):
        p.error("--sizes must be positive")
    if args.no_pin:
        args.server_cpu = args.client_cpu = None
    else:
        usable = os.sched_getaffinity(0)
        if args.server_cpu not in usable or args.client_cpu not in usable or args.server_cpu == args.client_cpu:
            p.error(f"--server-cpu and --client-cpu must be two different CPUs of {sorted(usable)} (or --no-pin)")
    args.venvs = os.path.abspath(args.venvs)
    return args, sizes, modes, loops


def run_all(args, sizes, modes, loops, vpys, unavailable):
    """Every round's runs; returns (samples, errors, raw records), keyed by (size, mode, loop)."""
    samples, errors, raw = {}, {}, []
    progress = micro.Progress("echo", args.rounds * len(schedule(0, sizes, modes, loops)), args.rounds)
    for rnd in range(args.rounds):
        for key in schedule(rnd, sizes, modes, loops):
            size, mode, kind = key
            if kind in unavailable:
                result, error = None, f"loop unavailable: {unavailable[kind]}"
            else:
                result, error = measure_quietly(args, kind, mode, size, vpys)
            raw.append({"round": rnd, "size": size, "mode": mode, "loop": kind, "result": result, "error": error})
            if error is None:
                samples.setdefault(key, []).append(result)
                shown = (f"{fmt_rps(result['rps'])} req/s, {fmt_us(result['server_us_per_req'])} µs/req, "
                         f"loadgen {result['client_cpu_pct']:.0f}%, others {result['others_pct'] or 0:.0f}%")
            else:
                errors.setdefault(key, []).append(error)
                shown = "FAILED: " + error
            what = f"{fmt_size(size)} {mode} on {kind}" if kind != NATIVE else f"{fmt_size(size)} on native"
            progress.line(rnd, what, shown)
    return samples, errors, raw


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, sizes, modes, loops = parse_args(argv)
    args.started = datetime.datetime.now(datetime.timezone.utc)
    args.command = shlex.join([os.path.basename(sys.executable), os.path.relpath(__file__, ROOT), *argv])
    args.loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    args.python, args.identity, args.python_version = resolve_python(args.python)
    os.makedirs(args.venvs, exist_ok=True)

    build_loadgen()
    vpys, infos, unavailable, revs = setup_loops(args, loops)
    runs = args.rounds * len(schedule(0, sizes, modes, loops))
    log(f"[echo] {runs} runs, about {runs * (args.warmup + args.duration + RUN_OVERHEAD) / 60:.1f} min")

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="echo-bench-") as args.tmpdir:
        samples, errors, raw = run_all(args, sizes, modes, loops, vpys, unavailable)
    log(f"[done] measured in {time.monotonic() - t0:.0f}s")

    report = render(args, sizes, modes, loops, infos, samples, errors, revs)
    sys.stdout.write(report)
    sys.stdout.flush()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(report)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
