#!/usr/bin/env python3
"""Side-by-side event-loop micro-benchmarks: asyncio, uvloop 0.23, rloop 0.5 and ours.

    python bench/run.py                 # default run: 5 rounds, builds and reinstalls ours first
    python bench/run.py --quick         # smoke test: 1 round, n / 10, 1 timed run per process
    python bench/run.py --no-build --cases call_soon_chain,sleep0 --rounds 3 --output bench/RESULTS.md

Each loop lives in its own virtualenv under bench/.venvs/ (ours is also named `uvloop`), all made
with one Python (--python, default: the interpreter running this script). The venvs are created or
fixed up on every run; ours is rebuilt with `maturin build --release` and reinstalled unless
--no-build. Then, for each round, every case runs on every loop, each in a fresh
`python -I bench/workloads.py` process, with the loop order rotated per round and per case so that
no loop always goes first. Each cell of the table is the median over the rounds. Progress and build
output go to stderr; the markdown report goes to stdout (and to --output).
"""

import argparse
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
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
WORKLOADS = os.path.join(BENCH_DIR, "workloads.py")
DEFAULT_VENVS = os.path.join(BENCH_DIR, ".venvs")

LOOPS = ("asyncio", "uvloop-0.23", "rloop-0.5", "ours")
PEERS = ("asyncio", "uvloop-0.23", "rloop-0.5")
# distribution name and exact version installed from PyPI into each peer's venv
PYPI = {"uvloop-0.23": ("uvloop", "0.23.0"), "rloop-0.5": ("rloop", "0.5.0")}
MATURIN_REQ = "maturin>=1.9,<2"  # as in pyproject.toml's build-system


def log(msg):
    print(msg, file=sys.stderr, flush=True)


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


def render(args, cases, loops, infos, samples, errors, command, started, ours_rev):
    """samples[(case, kind)] -> list of sec/op; errors[(case, kind)] -> list of messages."""
    out = []
    w = out.append
    w("## Event-loop micro-benchmarks")
    w("")
    w(f"- Command (from the repository root): `{command}`")
    w(f"- Date: {started.strftime('%Y-%m-%d %H:%M UTC')}")
    w(f"- Python: {platform.python_implementation()} {args.python_version} (`{args.python}`)")
    w(f"- CPU: {cpu_model()}, {os.cpu_count()} logical CPUs, no pinning; "
      f"{platform.system()} {platform.release()}")
    w(f"- Loops: " + "; ".join(loop_label(k, infos.get(k)) for k in loops)
      + (f"; ours built from {ours_rev}" if "ours" in loops else ""))
    mode = "quick (n / 10, 1 timed run per process)" if args.quick else f"{args.repeat} timed runs per process"
    w(f"- {args.rounds} round(s), loops interleaved in rotated order, a fresh process per case and loop, "
      f"warm-up run first; {mode}. Each cell is the median over rounds of the process's median time "
      f"per operation (lower is better). **ours vs best peer** = fastest peer's time / ours "
      f"(above 1.00x: ours is faster).")
    w("")
    header = ["case", *loops]
    if "ours" in loops and any(p in loops for p in PEERS):
        header.append("ours vs best peer")
    w("| " + " | ".join(header) + " |")
    w("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")

    notes = []  # footnote texts, numbered from 1

    def note(text):
        text = " ".join(text.split())  # one line, whatever the error message held
        if text not in notes:
            notes.append(text)
        return notes.index(text) + 1

    ratios = []
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
                if errs:
                    cell += f" [{note(f'{kind} / {case}: failed in {len(errs)} of {args.rounds} rounds: {errs[0]}')}]"
            else:
                msg = errs[0] if errs else "not run"
                cell = f"n/a [{note(f'{kind} / {case}: {msg}')}]"
            cells.append(cell)
        if len(header) > len(loops) + 1:
            peer_times = [med[k] for k in PEERS if k in med]
            if "ours" in med and peer_times:
                r = min(peer_times) / med["ours"]
                ratios.append(r)
                cells.append(f"{r:.2f}x")
            else:
                cells.append("n/a")
        w("| " + " | ".join([case, *cells]) + " |")
    if ratios and len(header) > len(loops) + 1:
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        w("| " + " | ".join(["geometric mean", *([""] * len(loops)), f"{geo:.2f}x"]) + " |")
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
    p.add_argument("--loops", default=",".join(LOOPS), help=f"comma-separated subset of {','.join(LOOPS)}")
    p.add_argument("--no-build", action="store_true", help="do not rebuild and reinstall ours")
    p.add_argument("--venvs", default=DEFAULT_VENVS, help="where the virtualenvs live (default bench/.venvs)")
    p.add_argument("--timeout", type=float, default=120, help="seconds allowed per process (default 120)")
    p.add_argument("--output", help="also write the markdown report to this file")
    p.add_argument("--json", help="also write every raw sample and error to this JSON file")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.repeat = args.repeat or (1 if args.quick else 5)
    cases = list(CASES) if args.cases == "all" else [c for c in args.cases.split(",") if c]
    loops = [k for k in args.loops.split(",") if k]
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

    # set-up: venvs, peers from PyPI, ours built from this repository
    vpys, infos, unavailable = {}, {}, {}
    ours_rev = "n/a"
    for kind in loops:
        vpy = ensure_venv(venvs, kind, args.python, identity)
        if kind == "ours":
            ours_rev = setup_ours(vpy, venvs, build=not args.no_build)
        else:
            setup_peer(vpy, kind)
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
    for rnd in range(args.rounds):
        for ci, case in enumerate(cases):
            for kind in rotated(loops, rnd + ci):
                if kind in unavailable:
                    errors.setdefault((case, kind), []).append(f"loop unavailable: {unavailable[kind]}")
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
                log(f"[round {rnd + 1}/{args.rounds}] {case:21} {kind:12} {shown}")
    log(f"[done] measured in {time.monotonic() - t_start:.0f}s")

    report = render(args, cases, loops, infos, samples, errors, command, started, ours_rev)
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
