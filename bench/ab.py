#!/usr/bin/env python3
"""Paired A/B comparison of two loops on one echo or micro-benchmark case.

    python bench/ab.py --a before --b ours echo:buffered:1024
    python bench/ab.py --a before --b ours --pairs 20 micro:call_soon_batch micro:udp_echo_64
    python bench/ab.py --a uvloop-0.23 --b ours --pairs 16 http:httptools-close

The harnesses (bench/run.py, bench/echo/run.py) report medians over a few rounds with their
range, which on these shared machines spreads 5-30%: too wide to tell a 3% difference. This
script runs the two loops alternately, one fresh process each, N times (A then B, then B then
A, ...), and reports the median of the per-pair ratios A/B with their interquartile range, which
cancels most of the drift the machine goes through during a run. A ratio above 1.00 means B
needs less (time per operation, or server CPU per request) than A.

Cases: `echo:MODE:SIZE` is bench/echo/server.py in MODE (protocol, buffered, streams, sock)
under bench/loadgen with --conns connections of SIZE-byte messages (server CPU µs per request,
server on CPU 0, loadgen on CPU 1, 0.5 s warm-up and 2 s measured per run); `micro:CASE` is one
case of bench/workloads.py on CPU 0 (its median time per operation over 5 timed runs);
`http:CASE` is one case of bench/http/run.py (a fresh server on CPU 0, wrk with 50 connections
on CPU 1, 2 s warm-up, 5 s measured), reported twice from the same runs: server CPU µs per
request and wrk's p99 latency. `--a native` is bench/loadgen's http-native there.

The loops' virtualenvs must exist: bench/run.py makes them (`--before-commit COMMIT` builds
`before` from any commit, so `--a before` can be this project at any revision).
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
LOADGEN = os.path.join(BENCH_DIR, "loadgen", "target", "release", "loadgen")
ECHO_SERVER = os.path.join(BENCH_DIR, "echo", "server.py")
WORKLOADS = os.path.join(BENCH_DIR, "workloads.py")
LOOPS = ("asyncio", "uvloop-0.23", "rloop-0.5", "before", "ours", "native")


def echo_run(vpy, loop, mode, size, conns):
    """Server CPU µs per request of one fresh echo server under loadgen."""
    server = subprocess.Popen(["taskset", "-c", "0", vpy, "-I", ECHO_SERVER, "--loop", loop, "--mode", mode,
                               "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        ready = server.stdout.readline().split()
        if len(ready) != 2 or ready[0] != "READY":
            raise SystemExit(f"{loop}: the echo server did not start")
        out = subprocess.run(["taskset", "-c", "1", LOADGEN, "--addr", f"127.0.0.1:{ready[1]}",
                              "--conns", str(conns), "--size", str(size), "--duration", "2", "--warmup", "0.5",
                              "--server-pid", str(server.pid)], capture_output=True, text=True, timeout=60)
        if out.returncode:
            raise SystemExit(f"{loop}: loadgen failed: {out.stderr.strip()}")
        return json.loads(out.stdout)["server_us_per_req"]
    finally:
        server.terminate()
        server.wait(10)


def micro_run(vpy, loop, case):
    """Median ns per operation of one workloads.py process."""
    out = subprocess.run(["taskset", "-c", "0", vpy, "-I", WORKLOADS, "--loop", loop, "--case", case,
                          "--repeat", "5"], capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise SystemExit(f"{loop}: {case} failed: {out.stderr.strip()[-300:]}")
    result = json.loads(out.stdout)["results"][0]
    if "error" in result:
        raise SystemExit(f"{loop}: {case}: {result['error']}")
    return result["sec_per_op"] * 1e9


def load_http():
    """bench/http/run.py as a module (its server and wrk runs)."""
    spec = importlib.util.spec_from_file_location("bench_http", os.path.join(BENCH_DIR, "http", "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def http_run(http, vpy, loop, case):
    """Server CPU µs per request and p99 latency (ms) of one fresh server under wrk."""
    settings = argparse.Namespace(server_cpu=0, client_cpu=1, conns=50, warmup=2, duration=5)
    result, error = http.measure(settings, case, loop, vpy)
    if error:
        raise SystemExit(f"{loop}: {case}: {error}")
    return {"µs/req": result["server_us_per_req"], "ms p99": result["p99_ms"]}


def measure(case, vpy, loop, args):
    """{unit: value} of one run (lower is better for each)."""
    kind, _, rest = case.partition(":")
    if kind == "echo":
        mode, _, size = rest.partition(":")
        return {"µs/req": echo_run(vpy, loop, mode, int(size or 1024), args.conns)}
    if kind == "http":
        return http_run(args.http, vpy, loop, rest)
    return {"ns/op": micro_run(vpy, loop, rest)}


def compare(case, args, vpys):
    a, b, samples = args.a, args.b, {args.a: [], args.b: []}
    for i in range(args.pairs):
        for loop in ((a, b) if i % 2 == 0 else (b, a)):
            samples[loop].append(measure(case, vpys[loop], loop, args))
        shown = ", ".join(f"{loop} " + " ".join(f"{v:.3f} {u}" for u, v in samples[loop][-1].items())
                          for loop in (a, b))
        print(f"  pair {i + 1}/{args.pairs}: {shown}", file=sys.stderr)
    rows = []
    for unit in samples[a][0]:
        ratios = [x[unit] / y[unit] for x, y in zip(samples[a], samples[b])]
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        rows.append(f"| {case} | {statistics.median(x[unit] for x in samples[a]):.3f} {unit} "
                    f"| {statistics.median(y[unit] for y in samples[b]):.3f} {unit} "
                    f"| {statistics.median(ratios):.3f} | {q1:.3f}–{q3:.3f} |")
    return "\n".join(rows)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cases", nargs="+", help="echo:MODE:SIZE, micro:CASE or http:CASE")
    p.add_argument("--a", default="before", choices=LOOPS, help="the reference loop (default before)")
    p.add_argument("--b", default="ours", choices=LOOPS, help="the loop compared to it (default ours)")
    p.add_argument("--pairs", type=int, default=12, help="alternating pairs of runs per case (default 12)")
    p.add_argument("--conns", type=int, default=10, help="echo connections (default 10)")
    p.add_argument("--venvs", default=os.path.join(BENCH_DIR, ".venvs"), help="where the loops' venvs are")
    args = p.parse_args()
    if args.pairs < 4:
        p.error("--pairs must be at least 4 (quartiles)")
    for case in args.cases:
        kind, _, rest = case.partition(":")
        if kind not in ("echo", "micro", "http") or not rest:
            p.error(f"{case!r}: expected echo:MODE:SIZE, micro:CASE or http:CASE")
        if "native" in (args.a, args.b) and kind != "http":
            p.error("native (bench/loadgen's http-native) runs the http cases only")
    vpys = {}
    for loop in (args.a, args.b):
        if loop == "native":
            vpys[loop] = None
            continue
        vpys[loop] = os.path.join(args.venvs, loop, "bin", "python")
        if not os.path.exists(vpys[loop]):
            p.error(f"no venv for {loop} in {args.venvs}: run bench/run.py (with --before-commit for before) first")
    if any(c.startswith("echo") for c in args.cases) and not os.path.exists(LOADGEN):
        p.error("bench/loadgen is not built: run bench/echo/run.py once, or cargo build --release there")
    args.http = load_http() if any(c.startswith("http") for c in args.cases) else None
    if args.http:
        for case in args.cases:
            if case.startswith("http:") and case[5:] not in args.http.CASES:
                p.error(f"{case!r}: bench/http/run.py has no case {case[5:]!r}")
        if "native" in (args.a, args.b) and not os.path.exists(args.http.HTTP_NATIVE):
            p.error("http-native is not built: run bench/http/run.py once, or cargo build --release in bench/loadgen")
    print(f"{args.pairs} alternating pairs per case; ratio = {args.a} / {args.b} (above 1.00: {args.b} needs less)\n")
    print(f"| case | {args.a} (median) | {args.b} (median) | ratio, median of pairs | interquartile range |")
    print("|---|---:|---:|---:|---:|")
    for case in args.cases:
        print(compare(case, args, vpys), flush=True)


if __name__ == "__main__":
    main()
