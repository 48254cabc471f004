#!/usr/bin/env python3
"""Memory benchmark: how much server memory each idle TCP connection costs on asyncio, uvloop 0.23,
rloop 0.5, before and ours.

    python bench/memory/run.py                 # default: 3 rounds of 5000 connections per loop, builds ours first
    python bench/memory/run.py --quick         # smoke test: 1 round, shorter settling
    python bench/memory/run.py --no-build --loops uvloop-0.23,before,ours --conns 10000 --output memory.md

For every round and loop (loop order rotated per round), a fresh echo server (bench/memory/server.py
in the loop's virtualenv: an asyncio.Protocol echo server made with loop.create_server on 127.0.0.1,
plus a control port) is started. This script is the client, with plain blocking sockets: it first
opens, echoes on and closes --warmup-conns connections (so that one-off costs, such as the first
transport's lazy imports and allocations, are not counted per connection), has the server run
gc.collect(), waits --settle seconds and reads the server's memory (/proc/PID/smaps_rollup: Rss
and Pss). Then it opens --conns connections, in batches of 100, sends one --size-byte message on
each and reads the echo back (checking it), so that every connection has been accepted and has
carried data, and leaves them idle; gc.collect() in the server, --settle seconds, memory again.
(after - before) / conns is the cost of one idle connection. Finally it closes every connection
and reads the memory a third time (what the server keeps once they are gone). Each cell is the
median over the rounds. Virtualenvs and the builds of ours and before come from bench/run.py's
set-up code. Progress goes to stderr; the markdown report goes to stdout (and to --output).
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

MEMORY_DIR = os.path.dirname(os.path.abspath(__file__))
BENCH_DIR = os.path.dirname(MEMORY_DIR)
ROOT = os.path.dirname(BENCH_DIR)
SERVER = os.path.join(MEMORY_DIR, "server.py")

SERVER_START_TIMEOUT = 30  # seconds for a server to print READY
BATCH = 100  # connections opened before their messages are sent and echoed (bounds the accept queue)
RATIO_TO = ("uvloop-0.23", "before")  # the "ours vs X" columns


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


def raise_fd_limit():
    """Soft RLIMIT_NOFILE up to the hard limit (this process is the client); returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


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
    """Creates or fixes every loop's venv (ours rebuilt unless --no-build, before built once per commit).

    Returns (venv interpreters, probe info, unavailable loop -> reason, the revisions ours and
    before were built from).
    """
    vpys, infos, unavailable, revs = {}, {}, {}, {}
    for kind in loops:
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
# The server process


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
    """Reads the server's stdout until "READY <echo port> <control port>"; returns both ports."""
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
    words = buf.split(b"\n", 1)[0].decode(errors="replace").split()
    if len(words) != 3 or words[0] != "READY":
        raise RuntimeError(f"unexpected server output: {' '.join(words)[:200]}")
    return int(words[1]), int(words[2])


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
    """Runs a server; yields (process, echo port, control port, stderr summary function); always
    stops it."""
    with tempfile.TemporaryFile() as stderr:
        def summary():
            stderr.seek(0)
            return describe_failure(stderr.read().decode(errors="replace"))

        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                cwd=MEMORY_DIR)
        try:
            try:
                port, control_port = wait_ready(proc, SERVER_START_TIMEOUT)
            except RuntimeError as e:
                stop_process(proc)
                raise RuntimeError(summary() or str(e)) from None
            yield proc, port, control_port, summary
        finally:
            stop_process(proc)


def memory_kib(pid):
    """The process's resident memory in KiB: {"rss", "pss"} from /proc/PID/smaps_rollup (pss None
    where only /proc/PID/status's VmRSS is available)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = dict(re.findall(r"^(\w+):\s+(\d+) kB$", f.read(), re.MULTILINE))
        return {"rss": int(fields["Rss"]), "pss": int(fields["Pss"])}
    except (OSError, KeyError):
        with open(f"/proc/{pid}/status") as f:
            return {"rss": int(re.search(r"^VmRSS:\s+(\d+) kB$", f.read(), re.MULTILINE)[1]), "pss": None}


class Control:
    """The server's control connection: one command line, one answer line."""

    def __init__(self, port, timeout):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def ask(self, command):
        """Sends `command`; returns the number in the answer ("live <n>" or "gc <n>": the server's
        live echo connections)."""
        try:
            self.sock.sendall(command.encode() + b"\n")
            answer = self.file.readline().decode(errors="replace").split()
        except (OSError, socket.timeout) as e:
            raise RuntimeError(f"control command {command!r} failed: {e or type(e).__name__}") from None
        if len(answer) != 2 or answer[0] != command:
            raise RuntimeError(f"control command {command!r}: unexpected answer {' '.join(answer)!r}")
        return int(answer[1])

    def wait_live(self, target, timeout):
        """Polls until the server has `target` live connections or `timeout` passes; returns the
        last count."""
        deadline = time.monotonic() + timeout
        while True:
            live = self.ask("live")
            if live == target or time.monotonic() >= deadline:
                return live
            time.sleep(0.05)

    def close(self):
        self.file.close()
        self.sock.close()


# --------------------------------------------------------------------------------------------------
# The client


def message(i, size):
    """The message of connection i: its number, then filler, `size` bytes."""
    head = f"{i}:".encode()
    return (head + b"x" * size)[:size] if size >= len(head) else b"x" * size


def recv_exactly(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise RuntimeError(f"connection closed by the server after {len(data)} of {size} echoed bytes")
        data += chunk
    return data


def open_connections(port, n, size, timeout, deadline, first=0):
    """Opens n connections in batches of BATCH: connect all of a batch, send each its message, read
    each echo back and check it. Returns the open sockets (closes them all on failure)."""
    socks = []
    i = first
    try:
        for start in range(first, first + n, BATCH):
            if time.monotonic() > deadline:
                raise RuntimeError(f"opening {n} connections took longer than the run's timeout "
                                   f"({len(socks)} open)")
            group = []
            for i in range(start, min(first + n, start + BATCH)):
                sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
                socks.append(sock)
                group.append((i, sock))
            for i, sock in group:
                sock.sendall(message(i, size))
            for i, sock in group:
                got = recv_exactly(sock, size)
                if got != message(i, size):
                    raise RuntimeError(f"connection {i}: wrong echo {got[:20]!r}...")
    except socket.timeout:
        close_all(socks)
        raise RuntimeError(f"connection {i - first + 1} of {n}: no connect or echo within {timeout:g}s") from None
    except OSError as e:
        close_all(socks)
        raise RuntimeError(f"connection {i - first + 1} of {n}: {e}") from None
    except BaseException:
        close_all(socks)
        raise
    return socks


def close_all(socks):
    for sock in socks:
        sock.close()
    socks.clear()


def settle(control, seconds):
    """gc.collect() in the server, then `seconds` of quiet; returns the server's live count."""
    live = control.ask("gc")
    time.sleep(seconds)
    return live


def measure(args, kind, vpy):
    """One fresh server: memory after the warm-up, with --conns idle connections, and after closing
    them. Returns (result, None) or (None, error)."""
    cmd = [vpy, "-I", SERVER, "--loop", kind, "--port", "0"]
    deadline = time.monotonic() + args.timeout
    notes = []
    try:
        with server_process(cmd) as (proc, port, control_port, summary):
            control = socks = None
            try:
                control = Control(control_port, args.io_timeout)
                stale = 0  # warm-up connections the server has not noticed closing
                if args.warmup_conns:
                    warm = open_connections(port, args.warmup_conns, args.size, args.io_timeout, deadline)
                    close_all(warm)
                    live = stale = control.wait_live(0, args.io_timeout)
                    if live:
                        notes.append(f"{live} of the {args.warmup_conns} warm-up connections still open "
                                     f"on the server {args.io_timeout:g}s after the client closed them")
                settle(control, args.settle)
                before = memory_kib(proc.pid)
                socks = open_connections(port, args.conns, args.size, args.io_timeout, deadline,
                                         first=args.warmup_conns)
                live = settle(control, args.settle)
                with_conns = memory_kib(proc.pid)
                if live != args.conns + stale:
                    notes.append(f"the server counted {live} live connections with {args.conns} open")
                close_all(socks)
                live = control.wait_live(0, args.io_timeout)
                if live:
                    notes.append(f"{live} of {args.conns} connections still open on the server "
                                 f"{args.io_timeout:g}s after the client closed them")
                settle(control, args.settle)
                after_close = memory_kib(proc.pid)
            except (RuntimeError, OSError) as e:
                # a server that died (it exits on its first error) explains the failure better
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(1)
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited (exit {proc.returncode}): "
                                       f"{summary() or 'no error output'}") from None
                raise RuntimeError(str(e) or type(e).__name__) from None
            finally:
                if socks:
                    close_all(socks)
                if control:
                    control.close()
    except RuntimeError as e:
        return None, str(e) or "failed"
    except OSError as e:
        return None, f"could not run {shlex.join(cmd[:3])}: {e}"
    result = {"before_kib": before, "with_conns_kib": with_conns, "after_close_kib": after_close,
              "rss_per_conn_kib": (with_conns["rss"] - before["rss"]) / args.conns,
              "kept_per_conn_kib": (after_close["rss"] - before["rss"]) / args.conns,
              "notes": notes}
    if before["pss"] is not None:
        result["pss_per_conn_kib"] = (with_conns["pss"] - before["pss"]) / args.conns
    return result, None


# --------------------------------------------------------------------------------------------------
# Report

# rows of the table: (label, function of one result -> number or None, unit)
ROWS = (
    ("RSS per connection", lambda r: r["rss_per_conn_kib"], "kib"),
    ("PSS per connection", lambda r: r.get("pss_per_conn_kib"), "kib"),
    ("RSS kept per connection after closing them all", lambda r: r["kept_per_conn_kib"], "kib"),
    ("server RSS before (after the warm-up)", lambda r: r["before_kib"]["rss"], "mib"),
    ("server RSS with the connections open", lambda r: r["with_conns_kib"]["rss"], "mib"),
)


def fmt_value(value, unit):
    if unit == "mib":
        return f"{value / 1024:.1f} MiB"
    return f"{value:.2f} KiB"


class Notes:
    """Numbered footnotes, each text once."""

    def __init__(self):
        self.texts = []

    def ref(self, text):
        text = " ".join(text.split())
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"


def table(header, rows):
    return ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def render(args, loops, infos, samples, errors, revs):
    """The whole markdown report."""
    notes = Notes()
    ratio_to = [k for k in RATIO_TO if k in loops and "ours" in loops and k != "ours"]
    header = ["", *loops, *(f"ours vs {k}" for k in ratio_to)]
    rows = []
    for label, get, unit in ROWS:
        cells, med = [], {}
        for kind in loops:
            got = [v for v in (get(r) for r in samples.get(kind, [])) if v is not None]
            errs = errors.get(kind, [])
            if not got:
                reason = errs[0] if errs else ("not available (no /proc/PID/smaps_rollup)"
                                               if samples.get(kind) else "not run")
                cells.append(f"n/a {notes.ref(f'{kind}: {reason}')}")
                continue
            med[kind] = statistics.median(got)
            text = fmt_value(med[kind], unit) + micro.spread(got)
            if errs:
                text += " " + notes.ref(f"{kind}: failed in {len(errs)} of {args.rounds} rounds: {errs[0]}")
            for note in dict.fromkeys(n for r in samples[kind] for n in r["notes"]):
                text += " " + notes.ref(f"{kind}: {note}")
            cells.append(text)
        for other in ratio_to:
            # other / ours, as every other ratio here: above 1.00x ours uses less memory
            ok = med.get("ours", 0) > 0 and med.get(other, 0) > 0
            cells.append(f"{med[other] / med['ours']:.2f}x" if ok else "n/a")
        rows.append([label, *cells])
    per = f"{args.conns} connections"
    out = [
        "## Memory benchmark",
        "",
        f"- Command (from the repository root): `{args.command}`",
        f"- Date: {args.started.strftime('%Y-%m-%d %H:%M UTC')}; load average at start: {args.loadavg}",
        f"- Python: {platform.python_implementation()} {args.python_version} (`{micro.shown_path(args.python)}`)",
        f"- CPU: {micro.cpu_model()}, {os.cpu_count()} logical CPUs; {platform.system()} {platform.release()}; "
        f"fd limit (soft, raised to the hard limit in client and server): {args.fd_limit}",
        "- Loops: " + "; ".join(micro.loop_label(k, infos.get(k)) for k in loops) + micro.built_from(revs, loops),
        f"- Server (bench/memory/server.py): `asyncio.Protocol` echo server from `loop.create_server` on "
        f"127.0.0.1, a fresh process per run; {args.rounds} round(s), loop order rotated per round.",
        f"- Client (this script, blocking sockets): {args.warmup_conns} warm-up connections opened, echoed on "
        f"and closed; gc.collect() in the server, {args.settle:g} s, memory read; then {per} opened "
        f"(batches of {BATCH}), one {args.size}-byte message echoed on each, left idle; gc.collect(), "
        f"{args.settle:g} s, memory read again; then all closed, gc.collect(), {args.settle:g} s, a third "
        f"read. Memory: Rss and Pss of /proc/PID/smaps_rollup (KiB = 1024 bytes).",
        f"- **per connection** = (memory with the {per} open − memory before) / {args.conns}; **kept per "
        f"connection after closing** = (memory once they are all closed − memory before) / {args.conns}. "
        f"Medians over rounds (± half the range over rounds); lower is better. **ours vs X** = X / ours: above 1.00x ours uses less.",
        "",
        *table(header, rows),
        "",
        *(f"[{i}] {text}  " for i, text in enumerate(notes.texts, 1)),
    ]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 round, 0.5 s settling (unless given explicitly)")
    p.add_argument("--rounds", type=int, help="rounds (default 3; 1 with --quick)")
    p.add_argument("--conns", type=int, default=5000, help="idle connections measured (default 5000)")
    p.add_argument("--warmup-conns", type=int, default=100,
                   help="connections opened and closed before the first reading (default 100)")
    p.add_argument("--size", type=int, default=100, help="bytes echoed once on each connection (default 100)")
    p.add_argument("--settle", type=float, help="seconds between gc.collect() and each reading (default 1; "
                                                "0.5 with --quick)")
    p.add_argument("--io-timeout", type=float, default=10,
                   help="seconds allowed for each connect, echo or control answer (default 10)")
    p.add_argument("--timeout", type=float, default=300, help="seconds allowed per run (default 300)")
    micro.add_loop_options(p)
    p.add_argument("--no-build", action="store_true", help="do not rebuild and reinstall ours")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter for every venv (default: the one running this script)")
    p.add_argument("--venvs", default=micro.DEFAULT_VENVS, help="where the virtualenvs live (default bench/.venvs)")
    p.add_argument("--output", help="also write the markdown report to this file")
    p.add_argument("--json", help="also write every raw result and error to this JSON file")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.settle = args.settle if args.settle is not None else (0.5 if args.quick else 1.0)
    if args.rounds < 1 or args.conns < 1 or args.size < 1 or args.warmup_conns < 0 or args.settle < 0:
        p.error("--rounds, --conns and --size must be at least 1, --warmup-conns and --settle at least 0")
    text = micro.loops_option(args)
    loops = [k for k in text.split(",") if k]
    bad = [k for k in loops if k not in micro.LOOPS]
    if bad or not loops:
        p.error(f"expected a comma-separated subset of {','.join(micro.LOOPS)}, got {text!r}")
    args.venvs = os.path.abspath(args.venvs)
    args.fd_limit = raise_fd_limit()
    need = args.conns + args.warmup_conns + 64
    if args.fd_limit != resource.RLIM_INFINITY and args.fd_limit < need:
        p.error(f"--conns {args.conns} needs about {need} file descriptors, the hard limit is {args.fd_limit}")
    return args, [k for k in micro.LOOPS if k in loops]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, loops = parse_args(argv)
    args.started = datetime.datetime.now(datetime.timezone.utc)
    args.command = shlex.join([os.path.basename(sys.executable), os.path.relpath(__file__, ROOT), *argv])
    args.loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    args.python, args.identity, args.python_version = resolve_python(args.python)
    os.makedirs(args.venvs, exist_ok=True)

    vpys, infos, unavailable, revs = setup_loops(args, loops)
    samples, errors, raw = {}, {}, []
    t0 = time.monotonic()
    progress = micro.Progress("memory", args.rounds * len(loops), args.rounds)
    for rnd in range(args.rounds):
        for kind in micro.rotated(loops, rnd):
            if kind in unavailable:
                result, error = None, f"loop unavailable: {unavailable[kind]}"
            else:
                result, error = measure(args, kind, vpys[kind])
            raw.append({"round": rnd, "loop": kind, "result": result, "error": error})
            if error is None:
                samples.setdefault(kind, []).append(result)
                shown = (f"RSS {result['before_kib']['rss'] / 1024:.1f} -> "
                         f"{result['with_conns_kib']['rss'] / 1024:.1f} MiB: "
                         f"{result['rss_per_conn_kib']:.2f} KiB/conn"
                         + (f", PSS {result['pss_per_conn_kib']:.2f} KiB/conn" if "pss_per_conn_kib" in result
                            else "")
                         + f"; kept after close {result['kept_per_conn_kib']:.2f} KiB/conn"
                         + "".join(f"; {n}" for n in result["notes"]))
            else:
                errors.setdefault(kind, []).append(error)
                shown = "FAILED: " + error
            progress.line(rnd, f"{args.conns} connections on {kind}", shown)
    log(f"[done] measured in {time.monotonic() - t0:.0f}s")

    report = render(args, loops, infos, samples, errors, revs)
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
