#!/usr/bin/env python3
"""Side-by-side event-loop micro-benchmarks: asyncio, uvloop 0.23, rloop 0.5 and ours (and before).

    python bench/run.py                 # default run: 5 rounds, builds and reinstalls ours first
    python bench/run.py --quick         # smoke test: 1 round, n / 10, 1 timed run per process
    python bench/run.py --no-build --cases call_soon_chain,sleep0 --rounds 3 --output bench/RESULTS.md

Each loop lives in its own virtualenv under bench/.venvs/ (ours is also named `uvloop`), all made
with one Python (--python, default: the interpreter running this script). The venvs are created or
fixed up on every run; ours is rebuilt with `maturin build --release` and reinstalled unless
--no-build. With `before` in --loops (or --before-commit given), this project as it was at an
earlier commit (default b889859) is built from `git archive` of that commit in a temporary
directory and installed into bench/.venvs/before, once per commit. Then, for each round, every
case runs on every loop, each in a fresh `python -I bench/workloads.py` process, with the loop
order rotated per round and per case so that no loop always goes first. Each cell of the table is
the median over the rounds. Progress and build output go to stderr; the markdown report goes to
stdout (and to --output).
"""

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
WORKLOADS = os.path.join(BENCH_DIR, "workloads.py")
DEFAULT_VENVS = os.path.join(BENCH_DIR, ".venvs")

# every loop kind, in column order; "before" is this project built from an earlier commit
LOOPS = ("asyncio", "uvloop-0.23", "rloop-0.5", "before", "ours")
DEFAULT_LOOPS = ("asyncio", "uvloop-0.23", "rloop-0.5", "ours")  # --loops' default (+ before with --before-commit)
PEERS = ("asyncio", "uvloop-0.23", "rloop-0.5")  # what "ours vs best peer" compares ours to
DEFAULT_BEFORE_COMMIT = "b889859"  # the last commit before the port of the I/O onto libuv handles
# distribution name and exact version installed from PyPI into each peer's venv
PYPI = {"uvloop-0.23": ("uvloop", "0.23.0"), "rloop-0.5": ("rloop", "0.5.0")}
MATURIN_REQ = "maturin>=1.9,<2"  # as in pyproject.toml's build-system


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def fmt_duration(seconds):
    """47s, 3m05s, 1h02m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """The progress lines every harness prints on stderr, one per run:
    "[micro 12/96] round 2/3 call_soon_batch on rloop-0.5: 346 ns · ~1m05s left"."""

    def __init__(self, family, total, rounds):
        self.family, self.total, self.rounds = family, total, rounds
        self.done = 0
        self.started = time.monotonic()

    def line(self, rnd, what, shown):
        """Logs one finished run (`rnd` counts from 0); the time left is extrapolated from the runs so far."""
        self.done += 1
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done)
        eta = f" · ~{fmt_duration(left)} left" if self.done < self.total else ""
        log(f"[{self.family} {self.done}/{self.total}] round {rnd + 1}/{self.rounds} {what}: {shown}{eta}")


def run_cmd(cmd, **kw):
    """Run a set-up command with its output on stderr; raise with the command on failure."""
    log("$ " + shlex.join(cmd))
    proc = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, **kw)
    if proc.returncode:
        raise SystemExit(f"command failed (exit {proc.returncode}): {shlex.join(cmd)}")


def capture(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return proc.returncode, proc.stdout.strip(), proc.stderr.strip()


# --------------------------------------------------------------------------------------------------
# Virtualenvs


IDENTITY = "import sys, platform; print(platform.python_implementation(), platform.python_version(), sys.base_prefix)"


def venv_python(venvs, kind):
    return os.path.join(venvs, kind, "bin", "python")


def ensure_venv(venvs, kind, python, identity):
    """Create bench/.venvs/<kind> with `python` unless it already exists for the same interpreter."""
    path = os.path.join(venvs, kind)
    vpy = venv_python(venvs, kind)
    if os.path.exists(vpy):
        rc, out, _ = capture([vpy, "-c", IDENTITY])
        if rc == 0 and out == identity:
            return vpy
        log(f"[venv] {kind}: made by another Python ({out or 'broken'}), recreating")
        shutil.rmtree(path)
    log(f"[venv] creating {os.path.relpath(path, ROOT)}")
    run_cmd([python, "-m", "venv", path])
    return vpy


def dist_version(vpy, dist):
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    rc, out, _ = capture([vpy, "-I", "-c", code])
    return out if rc == 0 else None


def pip_install(vpy, *args):
    run_cmd([vpy, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args])


def setup_peer(vpy, kind):
    if kind in PYPI:
        dist, version = PYPI[kind]
        have = dist_version(vpy, dist)
        if have != version:
            log(f"[venv] {kind}: installing {dist}=={version} (have: {have})")
            pip_install(vpy, f"{dist}=={version}")
    else:  # asyncio: the venv must not hold either uvloop
        for dist in ("uvloop", "rloop"):
            if dist_version(vpy, dist):
                run_cmd([vpy, "-m", "pip", "uninstall", "-q", "-y", dist])


def git_describe():
    rc, head, _ = capture(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    if rc:
        return "unknown"
    rc, status, _ = capture(["git", "--no-optional-locks", "-C", ROOT, "status", "--porcelain", "--", "src", "python",
                             "Cargo.toml", "Cargo.lock", "build.rs", "pyproject.toml"])
    return head + ("+dirty" if status else "")


def setup_ours(vpy, venvs, build):
    """Build ours from the repository with maturin and force-reinstall the wheel into its venv."""
    stamp = os.path.join(venvs, "ours", "BUILT_FROM")  # the revision the installed wheel came from
    if not build:
        if dist_version(vpy, "uvloop") is None:
            raise SystemExit("--no-build, but bench/.venvs/ours has no build of ours yet: run without it")
        log("[ours] --no-build: using the installed build")
        try:
            with open(stamp) as f:
                return f.read().strip()
        except OSError:
            return "an earlier build (revision unknown)"
    rev = git_describe()
    maturin = os.path.join(os.path.dirname(vpy), "maturin")
    if not os.path.exists(maturin):
        pip_install(vpy, MATURIN_REQ)
    wheels = os.path.join(venvs, "wheels")
    shutil.rmtree(wheels, ignore_errors=True)
    log(f"[ours] building {ROOT} at {rev} (release)")
    t0 = time.monotonic()
    run_cmd([maturin, "build", "--release", "-i", vpy, "-o", wheels], cwd=ROOT)
    built = sorted(f for f in os.listdir(wheels) if f.endswith(".whl"))
    if len(built) != 1:
        raise SystemExit(f"expected one wheel in {wheels}, found {built}")
    log(f"[ours] built {built[0]} in {time.monotonic() - t0:.0f}s")
    pip_install(vpy, "--force-reinstall", "--no-deps", os.path.join(wheels, built[0]))
    with open(stamp, "w") as f:
        f.write(rev + "\n")
    return rev


def resolve_commit(commit):
    """The full hash of `commit` in this repository, or exit with an error."""
    rc, full, err = capture(["git", "-C", ROOT, "rev-parse", "--verify", "--quiet", commit + "^{commit}"])
    if rc or not full:
        raise SystemExit(f"--before-commit {commit}: not a commit of {ROOT} {err}".rstrip())
    return full


def export_commit(commit, dest):
    """Writes the tree of `commit` into `dest` (`git archive | tar -x`): the working tree, the index
    and the refs are left alone."""
    log(f"$ git -C {shlex.quote(ROOT)} archive {commit} | tar -x -C {shlex.quote(dest)}")
    archive = subprocess.Popen(["git", "-C", ROOT, "archive", "--format=tar", commit], stdout=subprocess.PIPE)
    tar = subprocess.run(["tar", "-x", "-C", dest], stdin=archive.stdout, stderr=sys.stderr)
    archive.stdout.close()
    if archive.wait() or tar.returncode:
        raise SystemExit(f"could not export commit {commit} (git archive exit {archive.returncode}, "
                         f"tar exit {tar.returncode})")


def setup_before(vpy, venvs, commit):
    """Builds this project as it was at `commit` and installs it into the `before` venv, unless the
    venv already holds that build (bench/.venvs/before/BUILT_FROM names the commit). The sources come
    from `git archive` into a temporary directory outside the repository (deleted afterwards), so
    the working tree, and whoever is editing it, is not touched. Returns the short commit."""
    full = resolve_commit(commit)
    _, short, _ = capture(["git", "-C", ROOT, "rev-parse", "--short", full])
    stamp = os.path.join(venvs, "before", "BUILT_FROM")
    try:
        with open(stamp) as f:
            have = f.read().strip()
    except OSError:
        have = None
    if have == full and dist_version(vpy, "uvloop") is not None:
        log(f"[before] using the installed build of {short}")
        return short
    with contextlib.suppress(OSError):
        os.remove(stamp)  # no stale stamp if the build below fails
    maturin = os.path.join(os.path.dirname(vpy), "maturin")
    if not os.path.exists(maturin):
        pip_install(vpy, MATURIN_REQ)
    with tempfile.TemporaryDirectory(prefix="uvloop-before-") as tmp:
        src, wheels = os.path.join(tmp, "src"), os.path.join(tmp, "wheels")
        os.mkdir(src)
        export_commit(full, src)
        log(f"[before] building {short} in {src} (release)")
        t0 = time.monotonic()
        # its own target directory (inside tmp): the repository's target/ is not shared
        env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(tmp, "target"))
        run_cmd([maturin, "build", "--release", "-i", vpy, "-o", wheels], cwd=src, env=env)
        built = sorted(f for f in os.listdir(wheels) if f.endswith(".whl"))
        if len(built) != 1:
            raise SystemExit(f"expected one wheel in {wheels}, found {built}")
        log(f"[before] built {built[0]} in {time.monotonic() - t0:.0f}s")
        pip_install(vpy, "--force-reinstall", "--no-deps", os.path.join(wheels, built[0]))
    with open(stamp, "w") as f:
        f.write(full + "\n")
    return short


def setup_loop(vpy, venvs, kind, args):
    """Installs loop `kind` into its venv `vpy`: ours built from the working tree (unless
    args.no_build), before built from args.before_commit, the peers from PyPI. Returns the revision
    ours or before was built from (None for the peers)."""
    if kind == "ours":
        return setup_ours(vpy, venvs, build=not args.no_build)
    if kind == "before":
        return setup_before(vpy, venvs, args.before_commit)
    setup_peer(vpy, kind)
    return None


def built_from(revs, loops):
    """"; before built from X; ours built from Y" for the report's Loops line."""
    return "".join(f"; {k} built from {revs.get(k, 'n/a')}" for k in ("before", "ours") if k in loops)


def add_loop_options(p, loops=LOOPS, default=DEFAULT_LOOPS):
    """--loops (default: `default`, plus before when --before-commit is given) and --before-commit."""
    p.add_argument("--loops", help=f"comma-separated subset of {','.join(loops)} (default "
                                   f"{','.join(default)}; before is added when --before-commit is given)")
    p.add_argument("--before-commit", metavar="COMMIT",
                   help=f"commit the `before` loop is built from (default {DEFAULT_BEFORE_COMMIT})")


def loops_option(args, default=DEFAULT_LOOPS):
    """The --loops text, its default filled in (with before if --before-commit was given); also sets
    args.before_commit's default."""
    if args.loops is None:
        args.loops = ",".join([*default, *(["before"] if args.before_commit else [])])
    args.before_commit = args.before_commit or DEFAULT_BEFORE_COMMIT
    return args.loops


def probe(vpy, kind):
    """Ask workloads.py which module, version and loop class the venv gives for `kind`."""
    rc, out, err = capture([vpy, "-I", WORKLOADS, "--loop", kind, "--info"], cwd=BENCH_DIR, timeout=60)
    if rc:
        return None, last_line(err) or f"exit {rc}"
    return json.loads(out)["info"], None


# --------------------------------------------------------------------------------------------------
# Measuring


def last_line(text):
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def run_one(vpy, kind, case, args):
    """One fresh process: returns (sec_per_op, None) or (None, error message)."""
    cmd = [vpy, "-I", WORKLOADS, "--loop", kind, "--case", case, "--repeat", str(args.repeat)]
    if args.quick:
        cmd.append("--quick")
    if args.n:
        cmd += ["--n", str(args.n)]
    try:
        rc, out, err = capture(cmd, cwd=BENCH_DIR, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {args.timeout:g}s", None
    if rc:
        return None, last_line(err) or f"exit {rc}", None
    try:
        result = json.loads(out.splitlines()[-1])["results"][0]
    except (ValueError, IndexError, KeyError):
        return None, "unparsable output: " + (last_line(out) or last_line(err))[:200], None
    if "error" in result:
        return None, result["error"], result
    return result["sec_per_op"], None, result


def rotated(seq, k):
    k %= len(seq)
    return list(seq[k:]) + list(seq[:k])


# --------------------------------------------------------------------------------------------------
# Report


def spread(values):
    """How far the rounds of a cell stray: half their range over their median, as " ±N%" (empty
    for a single round). A lead smaller than the spreads of the two cells is not one."""
    values = list(values)
    med = statistics.median(values) if values else 0
    if len(values) < 2 or not med:
        return ""
    return f" ±{100 * (max(values) - min(values)) / 2 / abs(med):.0f}%"


def fmt_time(sec):
    ns = sec * 1e9
    if ns < 1000:
        return f"{ns:.0f} ns" if ns >= 100 else f"{ns:.1f} ns"
    us = ns / 1000
    if us < 10:
        return f"{us:.2f} µs"
    if us < 100:
        return f"{us:.1f} µs"
    return f"{us:.0f} µs"


def shown_path(path):
    """`path` as a report shows it: under the home directory as ~/..., not this machine's home."""
    home = os.path.expanduser("~")
    return "~" + path[len(home):] if path.startswith(home + os.sep) else path


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loop_label(kind, info):
    if info is None:
        return f"{kind}: unavailable"
    if kind == "asyncio":
        return f"asyncio: `{info['loop_type']}`"
    return f"{kind}: {info['module']} {info['version']} (`{info['loop_type']}`)"


def render(args, cases, loops, infos, samples, errors, command, started, revs):
    """samples[(case, kind)] -> list of sec/op; errors[(case, kind)] -> list of messages."""
    out = []
    w = out.append
    w("## Event-loop micro-benchmarks")
    w("")
    w(f"- Command (from the repository root): `{command}`")
    w(f"- Date: {started.strftime('%Y-%m-%d %H:%M UTC')}")
    w(f"- Python: {platform.python_implementation()} {args.python_version} (`{shown_path(args.python)}`)")
    w(f"- CPU: {cpu_model()}, {os.cpu_count()} logical CPUs, no pinning; "
      f"{platform.system()} {platform.release()}")
    w(f"- Loops: " + "; ".join(loop_label(k, infos.get(k)) for k in loops)
      + built_from(revs, loops))
    mode = "quick (n / 10, 1 timed run per process)" if args.quick else f"{args.repeat} timed runs per process"
    w(f"- {args.rounds} round(s), loops interleaved in rotated order, a fresh process per case and loop, "
      f"warm-up run first; {mode}. Each cell is the median over rounds of the process's median time "
      f"per operation (lower is better), ± half the range over rounds. **ours vs best peer** = fastest peer's time / ours "
      f"(above 1.00x: ours is faster)"
      + (", **ours vs before** = before's time / ours." if {"ours", "before"} <= set(loops) else "."))
    w("")
    header = ["case", *loops]
    with_peer = "ours" in loops and any(p in loops for p in PEERS)
    with_before = "ours" in loops and "before" in loops
    if with_peer:
        header.append("ours vs best peer")
    if with_before:
        header.append("ours vs before")
    w("| " + " | ".join(header) + " |")
    w("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")

    notes = []  # footnote texts, numbered from 1

    def note(text):
        text = " ".join(text.split())  # one line, whatever the error message held
        if text not in notes:
            notes.append(text)
        return notes.index(text) + 1

    ratios, before_ratios = [], []
    for case in cases:
        med = {}
        cells = []
        for kind in loops:
            got = samples.get((case, kind), [])
            errs = errors.get((case, kind), [])
            if got:
                med[kind] = statistics.median(got)
        best = min(med.values()) if med else None
        for kind in loops:
            errs = errors.get((case, kind), [])
            if kind in med:
                cell = fmt_time(med[kind])
                if med[kind] == best and len(med) > 1:
                    cell = f"**{cell}**"
                cell += spread(samples[(case, kind)])
                if errs:
                    cell += f" [{note(f'{kind} / {case}: failed in {len(errs)} of {args.rounds} rounds: {errs[0]}')}]"
            else:
                msg = errs[0] if errs else "not run"
                cell = f"n/a [{note(f'{kind} / {case}: {msg}')}]"
            cells.append(cell)
        if with_peer:
            peer_times = [med[k] for k in PEERS if k in med]
            if "ours" in med and peer_times:
                r = min(peer_times) / med["ours"]
                ratios.append(r)
                cells.append(f"{r:.2f}x")
            else:
                cells.append("n/a")
        if with_before:
            if "ours" in med and "before" in med:
                r = med["before"] / med["ours"]
                before_ratios.append(r)
                cells.append(f"{r:.2f}x")
            else:
                cells.append("n/a")
        w("| " + " | ".join([case, *cells]) + " |")

    def geomean(rs):
        return f"{math.exp(sum(math.log(r) for r in rs) / len(rs)):.2f}x" if rs else "n/a"

    if (with_peer and ratios) or (with_before and before_ratios):
        w("| " + " | ".join(["geometric mean", *([""] * len(loops)), *([geomean(ratios)] if with_peer else []),
                             *([geomean(before_ratios)] if with_before else [])]) + " |")
    if notes:
        w("")
        for i, text in enumerate(notes, 1):
            w(f"[{i}] {text}  ")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------


def parse_args(argv):
    sys.dont_write_bytecode = True
    sys.path.insert(0, BENCH_DIR)
    from workloads import CASES  # noqa: E402  (the case list lives with the workloads)

    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="cases: " + ", ".join(CASES))
    p.add_argument("--python", default=sys.executable,
                   help="interpreter for every venv (default: the one running this script)")
    p.add_argument("--rounds", type=int, help="rounds (default 5; 1 with --quick)")
    p.add_argument("--repeat", type=int, help="timed runs inside each process (default 5; 1 with --quick)")
    p.add_argument("--n", type=int, help="operations per timed run for every case (default: per case)")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 round, n / 10, 1 timed run")
    p.add_argument("--cases", default="all", help="comma-separated cases (default: all)")
    add_loop_options(p)
    p.add_argument("--no-build", action="store_true", help="do not rebuild and reinstall ours")
    p.add_argument("--venvs", default=DEFAULT_VENVS, help="where the virtualenvs live (default bench/.venvs)")
    p.add_argument("--timeout", type=float, default=120, help="seconds allowed per process (default 120)")
    p.add_argument("--output", help="also write the markdown report to this file")
    p.add_argument("--json", help="also write every raw sample and error to this JSON file")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.repeat = args.repeat or (1 if args.quick else 5)
    cases = list(CASES) if args.cases == "all" else [c for c in args.cases.split(",") if c]
    loops = [k for k in loops_option(args).split(",") if k]
    bad = [c for c in cases if c not in CASES] + [k for k in loops if k not in LOOPS]
    if bad:
        p.error(f"unknown case or loop: {', '.join(bad)}")
    loops = [k for k in LOOPS if k in loops]  # keep the column order
    return args, cases, loops


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, cases, loops = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    script = os.path.relpath(os.path.abspath(__file__), ROOT)
    command = shlex.join([os.path.basename(sys.executable), script, *argv])

    rc, real, err = capture([shutil.which(args.python) or args.python, "-c",
                             "import sys; print(sys.executable)"])
    if rc or not real:
        raise SystemExit(f"--python {args.python} does not run: {err}")
    args.python = real  # the interpreter itself, not a pyenv shim
    rc, identity, err = capture([args.python, "-c", IDENTITY])
    if rc:
        raise SystemExit(f"--python {args.python} does not run: {err}")
    args.python_version = identity.split()[1]
    venvs = os.path.abspath(args.venvs)
    os.makedirs(venvs, exist_ok=True)

    # set-up: venvs, peers from PyPI, ours built from this repository, before from an earlier commit
    vpys, infos, unavailable = {}, {}, {}
    revs = {}  # the revision ours and before were built from
    for kind in loops:
        vpy = ensure_venv(venvs, kind, args.python, identity)
        rev = setup_loop(vpy, venvs, kind, args)
        if rev:
            revs[kind] = rev
        vpys[kind] = vpy
        info, error = probe(vpy, kind)
        if info is None:
            log(f"[venv] {kind}: unusable: {error}")
            unavailable[kind] = error
        else:
            infos[kind] = info
            log(f"[venv] {kind}: {info['module']} {info['version']} -> {info['loop_type']}")

    # measuring: rounds x cases x loops (rotated), one fresh process each
    samples, errors, raw = {}, {}, []
    t_start = time.monotonic()
    total = args.rounds * len(cases) * len(loops)
    log(f"[micro] {len(cases)} cases x {len(loops)} loops x {args.rounds} rounds: {total} runs")
    progress = Progress("micro", total, args.rounds)
    for rnd in range(args.rounds):
        for ci, case in enumerate(cases):
            for kind in rotated(loops, rnd + ci):
                if kind in unavailable:
                    errors.setdefault((case, kind), []).append(f"loop unavailable: {unavailable[kind]}")
                    progress.line(rnd, f"{case} on {kind}", "skipped (loop unavailable)")
                    continue
                sec, error, result = run_one(vpys[kind], kind, case, args)
                raw.append({"round": rnd, "case": case, "loop": kind, "sec_per_op": sec,
                            "error": error, "result": result})
                if error is None:
                    samples.setdefault((case, kind), []).append(sec)
                    shown = fmt_time(sec)
                else:
                    errors.setdefault((case, kind), []).append(error)
                    shown = "FAILED: " + error
                progress.line(rnd, f"{case} on {kind}", shown)
    log(f"[done] measured in {time.monotonic() - t_start:.0f}s")

    report = render(args, cases, loops, infos, samples, errors, command, started, revs)
    sys.stdout.write(report)
    sys.stdout.flush()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(report)
        log(f"[done] report written to {args.output}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"command": command, "date": started.isoformat(), "python": args.python,
                       "infos": infos, "runs": raw}, f, indent=1)
        log(f"[done] raw results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
