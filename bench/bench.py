#!/usr/bin/env python3
"""Runs a preset of the benchmark suite and writes one report with a chart per benchmark family.

    python bench/bench.py                   # `make bench`: the quick, representative set (a few minutes)
    python bench/bench.py --preset full     # `make bench-full`: the whole suite (35-40 minutes)
    python bench/bench.py --preset quick --no-build --loops asyncio,uvloop-0.23,rloop-0.5,before,ours

Each step runs one of the harnesses (bench/run.py, bench/echo/run.py, bench/http/run.py,
bench/memory/run.py) with the preset's options, in sequence; the first one builds ours, the others
get --no-build. Each harness writes its markdown report on stdout (kept by this script) and its raw
samples with --json into bench/results/raw/. Then bench/report.py, in its own virtualenv
(bench/.venvs/report, with matplotlib, set up in the background while the benchmarks run), merges
them into bench/results/<date>.md and draws one PNG per family, bench/results/<date>-<family>.png,
copied to bench/results/latest-<family>.png. <date> is the UTC date; a report already there for
the date is kept and the new one gets a suffix (<date>-2, <date>-3, ...).

Progress goes to stderr, one line per step and per measured run; set-up output (pip, cargo,
maturin) goes to a log file in the temporary directory, shown on a single self-erasing status line
when stderr is a terminal, and printed when a step fails.
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
RESULTS_DIR = os.path.join(BENCH_DIR, "results")
REPORT = os.path.join(BENCH_DIR, "report.py")
MATPLOTLIB_REQ = "matplotlib==3.11.2"  # in bench/.venvs/report, for bench/report.py's charts


import run as micro  # noqa: E402  (bench/run.py, beside this file: venv helpers, progress format)

fmt_duration = micro.fmt_duration

# --------------------------------------------------------------------------------------------------
# Presets

QUICK_MICRO_CASES = ("call_soon_batch", "call_soon_chain", "call_later", "task_gather", "sleep0",
                     "future_pingpong", "call_soon_threadsafe", "udp_echo_64")
PEER_LOOPS = "asyncio,uvloop-0.23,rloop-0.5,ours"


class Step:
    """One harness run: `name` names its raw JSON file, `family` the chart it feeds."""

    def __init__(self, name, family, script, options, summary, variant=None):
        self.name, self.family, self.script, self.options = name, family, script, options
        self.summary, self.variant = summary, variant


def preset_steps(preset):
    if preset == "quick":
        return [
            Step("micro", "micro", "bench/run.py",
                 ["--cases", ",".join(QUICK_MICRO_CASES), "--rounds", "3", "--repeat", "3"],
                 f"micro-benchmarks: {len(QUICK_MICRO_CASES)} headline cases, 3 rounds, 3 timed runs per process"),
            Step("echo", "echo", "bench/echo/run.py",
                 ["--sizes", "1024,102400", "--modes", "protocol,streams", "--loops", PEER_LOOPS,
                  "--rounds", "3", "--warmup", "0.5", "--duration", "2", "--retries", "0"],
                 "echo servers: 1 KiB and 100 KiB messages, protocol and streams modes, 3 rounds of 2 s"),
            Step("http", "http", "bench/http/run.py",
                 ["--cases", "httptools,httptools-close", "--loops", PEER_LOOPS,
                  "--rounds", "3", "--warmup", "1", "--duration", "3"],
                 "HTTP under wrk: keep-alive (httptools) and a new connection per request "
                 "(httptools-close), 3 rounds of 3 s"),
        ]
    return [
        Step("micro", "micro", "bench/run.py", [], "micro-benchmarks: every case, 5 rounds"),
        Step("echo", "echo", "bench/echo/run.py", [],
             "echo servers: 1, 10 and 100 KiB messages, every mode, 3 rounds of 3 s"),
        Step("echo-warm-heap", "echo", "bench/echo/run.py", ["--sizes", "102400", "--warm-heap"],
             "echo servers: 100 KiB messages with a warmed-up heap (--warm-heap), every mode", variant="warm heap"),
        Step("http", "http", "bench/http/run.py", [], "HTTP under wrk: every case, 3 rounds of 10 s"),
        Step("memory", "memory", "bench/memory/run.py", [], "memory per idle connection: 5000 connections, 3 rounds"),
    ]


# --------------------------------------------------------------------------------------------------
# Output: progress lines on stderr, everything else in the log


class Console:
    """Shows progress lines; sends the rest to the log file (and, on a terminal, to one status line
    that the next line overwrites)."""

    # progress-worthy lines that still repeat for every step: the probe of each venv, reused builds
    QUIET = re.compile(r"^\[venv\] [^:]+: \S+ \S+ -> |^\[ours\] --no-build|^\[before\] using the installed")

    def __init__(self, log_path):
        self.log = open(log_path, "a", encoding="utf-8")
        self.lock = threading.Lock()
        self.tty = sys.stderr.isatty()
        self.status_shown = False

    def write_log(self, text):
        with self.lock:
            self.log.write(text if text.endswith("\n") else text + "\n")
            self.log.flush()

    def _clear_status(self):
        if self.status_shown:
            sys.stderr.write("\r\x1b[K")
            self.status_shown = False

    def show(self, line):
        """A line for the person watching (and the log)."""
        self.write_log(line)
        with self.lock:
            self._clear_status()
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def child_line(self, line):
        """A line of a harness's stderr: shown if it is progress, else logged."""
        line = line.rstrip("\n")
        if line.startswith("[") and not self.QUIET.match(line):
            self.show("  " + line)
            return
        self.write_log(line)
        if self.tty and line.strip():
            width = shutil.get_terminal_size((100, 20)).columns - 4
            text = re.sub(r"\x1b\[[0-9;]*m", "", line.strip())[:width]
            with self.lock:
                sys.stderr.write("\r\x1b[K  \x1b[2m" + text + "\x1b[0m")
                sys.stderr.flush()
                self.status_shown = True

    def done(self):
        with self.lock:
            self._clear_status()
            sys.stderr.flush()


# --------------------------------------------------------------------------------------------------
# The report's virtualenv (matplotlib), set up in the background


class ReportVenv(threading.Thread):
    """Creates bench/.venvs/report with matplotlib while the benchmarks run (pip mostly waits on
    the network); .python is its interpreter, or None if that failed (.error says why)."""

    def __init__(self, venvs, python, identity, console):
        super().__init__(daemon=True)
        self.venvs, self.python_, self.identity, self.console = venvs, python, identity, console
        self.python, self.error = None, None

    def run_logged(self, cmd):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        self.console.write_log(f"[report venv] $ {shlex.join(cmd)}\n{proc.stdout}{proc.stderr}")
        if proc.returncode:
            raise RuntimeError(f"{shlex.join(cmd)} failed (exit {proc.returncode}): "
                               f"{micro.last_line(proc.stderr) or micro.last_line(proc.stdout)}")

    def run(self):
        path = os.path.join(self.venvs, "report")
        vpy = micro.venv_python(self.venvs, "report")
        try:
            if os.path.exists(vpy):
                rc, out, _ = micro.capture([vpy, "-c", micro.IDENTITY])
                if rc or out != self.identity:
                    shutil.rmtree(path)
            if not os.path.exists(vpy):
                self.run_logged([self.python_, "-m", "venv", path])
            want = MATPLOTLIB_REQ.split("==")[1]
            if micro.dist_version(vpy, "matplotlib") != want:
                self.run_logged([vpy, "-m", "pip", "install", "-q", "--disable-pip-version-check", MATPLOTLIB_REQ])
            self.python = vpy
        except (OSError, RuntimeError) as e:
            self.error = str(e)


# --------------------------------------------------------------------------------------------------


def output_stem(results_dir, date):
    """<date>, or <date>-2, -3, ... if a report for the date is already there (it is kept)."""
    stem, n = date, 1
    while os.path.exists(os.path.join(results_dir, stem + ".md")):
        n += 1
        stem = f"{date}-{n}"
    return stem


def environment(python, identity):
    rc, rev, _ = micro.capture(["git", "-C", ROOT, "rev-parse", "HEAD"])
    return {
        "python": f"{identity.split()[0]} {identity.split()[1]}",
        "python_path": micro.shown_path(python),
        "cpu": micro.cpu_model(),
        "cpus": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "git_head": rev if rc == 0 else "unknown",
        "ours_revision": micro.git_describe(),  # replaced by what the build records, once it ran
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def step_command(step, python, args, raw_json):
    """The harness's command line: the preset's options, --no-build past the first step, --loops and
    --before-commit when given, --json into bench/results/raw/."""
    cmd = [python, step.script, *step.options]
    if step.name != "micro" or args.no_build:
        cmd.append("--no-build")
    if args.loops:  # replaces the preset's own --loops
        if "--loops" in cmd:
            i = cmd.index("--loops")
            del cmd[i:i + 2]
        loops = args.loops.split(",")
        if step.family not in ("echo", "http"):  # the harnesses with a native server
            loops = [k for k in loops if k != "native"]
        cmd += ["--loops", ",".join(loops)]
    if args.before_commit:
        cmd += ["--before-commit", args.before_commit]
    return cmd + ["--json", os.path.relpath(raw_json, ROOT)]


def run_step(step, index, total, python, args, raw_json, console):
    """Runs one harness; returns (exit code, its markdown report, seconds, its command line as shown)."""
    cmd = step_command(step, python, args, raw_json)
    shown_cmd = shlex.join([os.path.basename(python), *cmd[1:]])
    console.show(f"[step {index}/{total}] {step.summary}")
    console.write_log(f"$ {shown_cmd}")
    with contextlib.suppress(FileNotFoundError):
        os.remove(raw_json)  # left by an earlier run that stopped before its report
    t0 = time.monotonic()
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as stdout:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
                                text=True, encoding="utf-8", errors="replace", bufsize=1)
        try:
            for line in proc.stderr:
                console.child_line(line)
        finally:
            rc = proc.wait()
        stdout.seek(0)
        markdown = stdout.read()
    console.done()
    seconds = time.monotonic() - t0
    if rc:
        console.show(f"[step {index}/{total}] FAILED (exit {rc}) after {fmt_duration(seconds)}: {shown_cmd}")
        with open(console.log.name, encoding="utf-8") as f:
            tail = f.read().splitlines()[-25:]
        for line in tail:
            console.show("    | " + line)
    else:
        console.show(f"[step {index}/{total}] done in {fmt_duration(seconds)}")
    return rc, markdown, seconds, shown_cmd


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=("quick", "full"), default="quick",
                   help="quick: the headline cases (`make bench`); full: the whole suite (`make bench-full`)")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter for the harnesses and every venv (default: the one running this script)")
    p.add_argument("--no-build", action="store_true", help="keep the installed build of ours")
    p.add_argument("--loops", help="passed to every harness (default: each harness's own; the quick echo "
                                   "and HTTP steps leave out `native`)")
    p.add_argument("--before-commit", metavar="COMMIT", help="passed to every harness (adds `before`)")
    p.add_argument("--results", default=RESULTS_DIR, help="where the report and charts go (default bench/results)")
    p.add_argument("--dry-run", action="store_true", help="print the steps' commands and stop")
    return p.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    steps = preset_steps(args.preset)
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.monotonic()
    results = os.path.abspath(args.results)
    raw_dir = os.path.join(results, "raw")

    if args.dry_run:
        stem = output_stem(results, started.strftime("%Y-%m-%d"))
        for i, step in enumerate(steps, 1):
            cmd = step_command(step, args.python, args, os.path.join(raw_dir, f"{stem}-{step.name}.json"))
            print(f"step {i}/{len(steps) + 1}: {step.summary}\n  {shlex.join(cmd)}")
        print(f"step {len(steps) + 1}/{len(steps) + 1}: bench/report.py -> "
              f"{os.path.relpath(os.path.join(results, stem), ROOT)}.md and charts")
        return 0

    rc, real, err = micro.capture([shutil.which(args.python) or args.python, "-c", "import sys; print(sys.executable)"])
    rc2, identity, err2 = micro.capture([real, "-c", micro.IDENTITY]) if not rc else (rc, "", err)
    if rc or rc2:
        raise SystemExit(f"--python {args.python} does not run: {err or err2}")
    python = real
    os.makedirs(raw_dir, exist_ok=True)
    stem = output_stem(results, started.strftime("%Y-%m-%d"))
    log_file = tempfile.NamedTemporaryFile(prefix=f"uvloop-bench-{stem}-", suffix=".log", delete=False)
    log_file.close()
    console = Console(log_file.name)
    # run by `make bench` / `make bench-full` (make sets MAKELEVEL in its commands' environment)?
    target = ("make bench" if args.preset == "quick" else "make bench-full") if "MAKELEVEL" in os.environ else None
    total = len(steps) + 1
    console.show(f"[bench] {args.preset} preset: {len(steps)} benchmark steps and the report, "
                 f"into {os.path.relpath(os.path.join(results, stem), ROOT)}.md; set-up output in {log_file.name}")

    venvs = micro.DEFAULT_VENVS
    os.makedirs(venvs, exist_ok=True)
    env = environment(python, identity)
    report_venv = ReportVenv(venvs, python, identity, console)
    report_venv.start()

    done = []
    for i, step in enumerate(steps, 1):
        raw_json = os.path.join(raw_dir, f"{stem}-{step.name}.json")
        rc, markdown, seconds, command = run_step(step, i, total, python, args, raw_json, console)
        done.append({"name": step.name, "family": step.family, "variant": step.variant, "summary": step.summary,
                     "command": command, "returncode": rc, "seconds": round(seconds, 1), "markdown": markdown,
                     "json": os.path.relpath(raw_json, ROOT) if os.path.exists(raw_json) else None})

    console.show(f"[step {total}/{total}] report and charts")
    report_venv.join()
    report_python, no_charts = report_venv.python, []
    if report_python is None:
        console.show(f"  [report] no matplotlib ({report_venv.error}): writing the report without charts")
        report_python, no_charts = python, ["--no-charts"]
    env["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with contextlib.suppress(OSError), open(os.path.join(venvs, "ours", "BUILT_FROM")) as f:
        env["ours_revision"] = f.read().strip() or env["ours_revision"]  # the build the steps measured
    manifest = {
        "stem": stem, "preset": args.preset, "make_target": target,
        "driver_command": shlex.join([os.path.basename(python), os.path.relpath(__file__, ROOT), *argv]),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "benchmark_seconds": round(time.monotonic() - t_start, 1),
        "environment": env, "steps": done,
    }
    manifest_path = os.path.join(raw_dir, f"{stem}.json")
    with open(manifest_path, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.write("\n")
    cmd = [report_python, REPORT, os.path.relpath(manifest_path, ROOT), "--results", results, *no_charts]
    console.write_log(f"$ {shlex.join(cmd)}")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    console.write_log(proc.stdout + proc.stderr)
    for line in proc.stdout.splitlines():
        console.show("  " + line)
    if proc.returncode:
        console.show(f"[step {total}/{total}] FAILED (exit {proc.returncode}): {micro.last_line(proc.stderr)}")
    failed = [s["name"] for s in done if s["returncode"]] + (["report"] if proc.returncode else [])
    console.show(f"[bench] {'done' if not failed else 'FAILED: ' + ', '.join(failed) + ';'} "
                 f"in {fmt_duration(time.monotonic() - t_start)}")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the harness running got the same SIGINT from the terminal
        print("\n[bench] interrupted", file=sys.stderr)
        sys.exit(130)
