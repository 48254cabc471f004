#!/usr/bin/env python3
"""Merges one bench/bench.py run into bench/results/<stem>.md and draws a chart per benchmark family.

    bench/.venvs/report/bin/python bench/report.py bench/results/raw/<stem>.json   # redraw a run
    python3 bench/report.py bench/results/raw/<stem>.json --no-charts             # the markdown only

The argument is the manifest bench/bench.py writes: the run's environment, and for each step the
harness's command, its markdown report and the JSON file of its raw samples (--json). Charts (one PNG
per family, matplotlib with the Agg backend): one group of bars per case, one bar per loop, each as
a ratio to stock asyncio, turned so that higher is always better (throughput: loop / asyncio; time,
CPU or memory per operation: asyncio / loop). A bar is the ratio of the medians over rounds; its
whisker spans the rounds (each round's value of the loop against asyncio's median). Each chart is
bench/results/<stem>-<family>.png and is copied to bench/results/latest-<family>.png, which the
README embeds.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import textwrap

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)

LOOP_ORDER = ("asyncio", "uvloop-0.23", "rloop-0.5", "before", "ours")
LOOP_LABELS = {"asyncio": "stock asyncio", "uvloop-0.23": "uvloop 0.23", "rloop-0.5": "rloop 0.5",
               "before": "before", "ours": "ours"}
COLORS = {"asyncio": "#9d9d9d", "uvloop-0.23": "#4c78a8", "rloop-0.5": "#f58518", "before": "#b5cf6b",
          "ours": "#2ca02c"}
FAMILIES = ("micro", "echo", "http", "memory")
TITLES = {
    "micro": "Event-loop micro-benchmarks",
    "echo": "TCP echo servers",
    "http": "HTTP servers under wrk",
    "memory": "Memory per idle connection",
}
PRESETS = {
    "quick": ("quick set", "This is the **quick set** (`make bench`): the headline micro-benchmark cases, "
                           "1 KiB and 100 KiB echo (protocol and streams modes), and HTTP with keep-alive and "
                           "with a new connection per request, 3 rounds of short runs each. It gives the picture "
                           "in a few minutes; it is not the whole suite: for numbers to quote, run "
                           "`make bench-full` on a quiet machine."),
    "full": ("whole suite", "This is the **whole suite** (`make bench-full`): every micro-benchmark case, every "
                            "echo size and mode (and 100 KiB with a warmed-up heap), every HTTP case and the "
                            "memory benchmark, with each harness's default rounds and durations."),
}


def load_runs(path):
    """A harness's raw samples: a list of records (echo writes the bare list, the others an object)."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        data = json.load(f)
    return data["runs"] if isinstance(data, dict) else data


def median(values):
    return statistics.median(values) if values else None


def fmt_size(size):
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


# --------------------------------------------------------------------------------------------------
# From raw samples to ratios


class Panel:
    """One chart panel: groups of (label, {loop: (ratio, low, high)}) with a y-axis label."""

    def __init__(self, name, ylabel):
        self.name, self.ylabel = name, ylabel
        self.groups = []

    def add(self, label, samples, higher_is_better):
        """samples: {loop: [value per round]}. The ratio to asyncio's median, turned so that higher is
        better; (ratio of the medians, lowest round, highest round), or None without data."""
        base = median(samples.get("asyncio", []))
        entries = {}
        for loop, values in samples.items():
            values = [v for v in values if v is not None and v > 0]
            if not base or not values:
                entries[loop] = None
                continue
            if higher_is_better:
                entries[loop] = (median(values) / base, min(values) / base, max(values) / base)
            else:
                entries[loop] = (base / median(values), base / max(values), base / min(values))
        self.groups.append((label, entries))


def micro_panels(steps):
    panel = Panel("time per operation", "asyncio's time per operation / the loop's")
    for step in steps:
        cells, cases = {}, []
        for run in load_runs(step["json"]):
            if run["case"] not in cases:
                cases.append(run["case"])
            cells.setdefault(run["case"], {}).setdefault(run["loop"], []).append(run["sec_per_op"])
        for case in cases:
            panel.add(case, cells[case], higher_is_better=False)
    return [panel]


def server_panels(steps, key, label):
    """echo and http: req/s and the server's CPU per request, by `key(run)` groups."""
    rps = Panel("requests per second", "req/s: the loop's / asyncio's")
    cpu = Panel("server CPU per request", "server CPU µs per request: asyncio's / the loop's")
    for step in steps:
        cells, order = {}, []
        for run in load_runs(step["json"]):
            if run["loop"] == "native":
                continue
            k = key(run)
            if k not in order:
                order.append(k)
            got = cells.setdefault(k, {}).setdefault(run["loop"], [])
            if run["result"]:
                got.append(run["result"])
        suffix = f"\n({step['variant']})" if step.get("variant") else ""
        for k in order:
            by_loop = cells[k]
            rps.add(label(k) + suffix, {lp: [r["rps"] for r in rs] for lp, rs in by_loop.items()}, True)
            cpu.add(label(k) + suffix, {lp: [r["server_us_per_req"] for r in rs] for lp, rs in by_loop.items()}, False)
    return [rps, cpu]


def echo_panels(steps):
    # round 0 runs the sizes and modes in the order given: groups come in that order
    return server_panels(steps, lambda run: (run["size"], run["mode"]), lambda k: f"{fmt_size(k[0])}\n{k[1]}")


def http_panels(steps):
    return server_panels(steps, lambda run: run["case"], lambda k: k)


def memory_panels(steps):
    panel = Panel("memory per idle connection", "KiB per idle connection: asyncio's / the loop's")
    for step in steps:
        runs = load_runs(step["json"])
        for label, field in (("RSS per connection", "rss_per_conn_kib"), ("PSS per connection", "pss_per_conn_kib")):
            cells = {}
            for run in runs:
                got = cells.setdefault(run["loop"], [])
                if run["result"] and run["result"].get(field) is not None:
                    got.append(run["result"][field])
            panel.add(label, cells, higher_is_better=False)
    return [panel]


PANELS = {"micro": micro_panels, "echo": echo_panels, "http": http_panels, "memory": memory_panels}


def rounds_of(steps):
    return max((run["round"] + 1 for step in steps for run in load_runs(step["json"])), default=0)


def loops_of(panels):
    seen = {loop for panel in panels for _, entries in panel.groups for loop in entries}
    return [k for k in LOOP_ORDER if k in seen]


# --------------------------------------------------------------------------------------------------
# Charts


def draw(path, family, panels, loops, subtitle):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ngroups = max(len(p.groups) for p in panels)
    width_in = max(9.0, min(20.0, 1.9 + 1.3 * ngroups))
    header_in = 0.95  # title, subtitle and legend above the panels
    height_in = header_in + 0.25 + 3.4 * len(panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(width_in, height_in), squeeze=False)
    bar_w = 0.8 / len(loops)
    handles = {}
    for ax, panel in zip(axes[:, 0], panels):
        values = [v for _, e in panel.groups for x in e.values() if x for v in x]
        top = max(values + [1.0])
        bottom = min(values + [1.0])
        log = top / bottom > 10
        for j, loop in enumerate(loops):
            for i, (_, entries) in enumerate(panel.groups):
                x = i - 0.4 + bar_w * (j + 0.5)
                entry = entries.get(loop)
                if entry is None:
                    if loop in entries:  # measured, but failed or without asyncio to compare with
                        ax.text(x, bottom * 0.9 if log else 0.02 * top, "n/a", rotation=90, fontsize=7,
                                ha="center", va="bottom", color="#b00")
                    continue
                ratio, lo, hi = entry
                bar = ax.bar(x, ratio, bar_w * 0.92, color=COLORS.get(loop, "#777"), zorder=2,
                             edgecolor="#1a5e1a" if loop == "ours" else "none", linewidth=0.8)
                handles.setdefault(loop, bar)
                if hi > lo:
                    ax.errorbar(x, ratio, yerr=[[ratio - lo], [hi - ratio]], fmt="none", ecolor="#333",
                                elinewidth=0.8, capsize=2, zorder=3)
                if loop != "asyncio":
                    ax.annotate(f"{ratio:.2f}", (x, hi), xytext=(0, 2), textcoords="offset points",
                                ha="center", va="bottom", fontsize=6.5, rotation=90, color="#222")
        ax.axhline(1.0, color="#444", linewidth=0.8, linestyle="--", zorder=1)
        ax.set_xticks(range(len(panel.groups)))
        rotate = ngroups > 9
        ax.set_xticklabels([label.replace("\n", " ") if rotate else label for label, _ in panel.groups], fontsize=8.5,
                           rotation=30 if rotate else 0, ha="right" if rotate else "center")
        ax.set_xlim(-0.6, len(panel.groups) - 0.4)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(bottom / 1.4, top * 2.6)
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_minor_formatter(NullFormatter())
        else:
            ax.set_ylim(0, top * 1.22)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.set_ylabel("\n".join(textwrap.wrap(panel.ylabel + " (higher is better)", 34)), fontsize=8.5)
        ax.set_title(panel.name + (" (log scale)" if log else ""), fontsize=9.5, loc="left")
        ax.grid(axis="y", alpha=0.3, zorder=0)
        ax.tick_params(axis="y", labelsize=8)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    fig.text(0.01, 1 - 0.08 / height_in, f"{TITLES[family]}, relative to stock asyncio (higher is better)",
             ha="left", va="top", fontsize=12, fontweight="bold")
    fig.text(0.01, 1 - 0.38 / height_in, subtitle, ha="left", va="top", fontsize=8.5, color="#444")
    fig.legend([handles[k] for k in loops if k in handles], [LOOP_LABELS.get(k, k) for k in loops if k in handles],
               loc="upper left", bbox_to_anchor=(0.005, 1 - 0.56 / height_in), ncol=len(loops), fontsize=8.5,
               frameon=False, handlelength=1.4, columnspacing=1.6)
    fig.text(0.01, 0.005, "Bar: ratio of the medians over rounds, against stock asyncio (dashed line, 1x). "
                          "Whisker: the range over rounds.", ha="left", va="bottom", fontsize=7.5, color="#555")
    fig.tight_layout(rect=(0, 0.2 / height_in, 1, 1 - header_in / height_in))
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


# --------------------------------------------------------------------------------------------------
# Markdown


def chart_table(panels, loops):
    """The numbers of a chart as a markdown table: one row per group, a cell per loop with one
    ratio per panel."""
    names = " · ".join(p.name for p in panels)
    header = ["case", *(LOOP_LABELS.get(k, k) for k in loops)]
    rows = []
    for gi, (label, _) in enumerate(panels[0].groups):
        cells = []
        for loop in loops:
            parts = []
            for panel in panels:
                entry = panel.groups[gi][1].get(loop)
                parts.append(f"{entry[0]:.2f}x" if entry else "n/a")
            cells.append(" · ".join(parts))
        rows.append([label.replace("\n", " "), *cells])
    out = [f"Ratios to stock asyncio, higher is better ({names}):", "",
           "| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(loops)) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def render(manifest, raw_dir, charts, chart_errors):
    env = manifest["environment"]
    run_with = f"`{manifest['driver_command']}` (from the repository root)"
    if manifest.get("make_target"):
        run_with = f"`{manifest['make_target']}`, that is " + run_with
    label, blurb = PRESETS[manifest["preset"]]
    stem = manifest["stem"]
    steps = manifest["steps"]
    minutes = manifest["benchmark_seconds"] / 60
    out = [
        f"# Benchmarks, {manifest['started'][:10]}: {label}",
        "",
        blurb,
        "",
        f"- Run with {run_with}, from {manifest['started'][11:16]} to {manifest['finished'][11:16]} UTC: {minutes:.1f} minutes "
        f"with the set-up (virtualenvs, builds).",
        f"- Machine: {env['cpu']}, {env['cpus']} logical CPUs; {env['os']}; {env['python']} (`{env['python_path']}`); "
        f"load average {env['loadavg_start']} at the start, {env.get('loadavg_end', 'n/a')} at the end. Shared "
        f"machines drift by 10-20% between minutes: compare the columns of one run.",
        f"- Ours built from {env['ours_revision']} (HEAD {env['git_head'][:12]}).",
        f"- Raw samples: `{raw_dir}/{stem}-*.json`; charts redrawn with "
        f"`bench/.venvs/report/bin/python bench/report.py {raw_dir}/{stem}.json`.",
        "",
        "Steps, each a command from the repository root; each harness's report, with its own environment "
        "lines, follows below the charts:",
        "",
    ]
    for i, step in enumerate(steps, 1):
        status = "" if not step["returncode"] else f" **FAILED (exit {step['returncode']})**"
        out.append(f"{i}. {step['summary']} ({step['seconds'] / 60:.1f} min){status}:  \n   `{step['command']}`")
    out += ["", "## Charts", "",
            "One group per case, one bar per loop: the ratio of the loop's median over rounds to stock "
            "asyncio's, turned so that higher is better (throughput: loop / asyncio; time, CPU or memory per "
            "operation: asyncio / loop); the whisker spans the rounds.", ""]
    for family in FAMILIES:
        if family not in charts and family not in chart_errors:
            continue
        out += [f"### {TITLES[family]}", ""]
        if family in chart_errors:
            out += [f"No chart: {chart_errors[family]}", ""]
        if family in charts:
            png, panels, loops = charts[family]
            if png:
                out += [f"![{TITLES[family]}]({os.path.basename(png)})", ""]
            out += chart_table(panels, loops) + [""]
    for step in steps:
        if step["markdown"].strip():
            text = step["markdown"].rstrip()
            if step.get("variant") and text.startswith("## "):  # tell apart two reports of one harness
                first, _, rest = text.partition("\n")
                text = f"{first} ({step['variant']})\n{rest}"
            out += [text, ""]
        else:
            out += [f"## {step['name']}", "", f"No report: the step failed (exit {step['returncode']}).", ""]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------------------------------


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", help="bench/results/raw/<stem>.json, as bench/bench.py writes it")
    p.add_argument("--results", default=os.path.join(BENCH_DIR, "results"),
                   help="where the markdown and the charts go (default bench/results)")
    p.add_argument("--no-charts", action="store_true", help="write the markdown only (no matplotlib needed)")
    args = p.parse_args(argv)
    with open(args.manifest, encoding="utf-8") as f:
        manifest = json.load(f)
    stem = manifest["stem"]
    os.makedirs(args.results, exist_ok=True)
    env = manifest["environment"]
    charts, chart_errors = {}, {}
    for family in FAMILIES:
        steps = [s for s in manifest["steps"] if s["family"] == family]
        if not steps:
            continue
        usable = [s for s in steps if s.get("json") and os.path.exists(os.path.join(ROOT, s["json"]))]
        if not usable:
            chart_errors[family] = "the step failed before writing its raw samples."
            continue
        panels = PANELS[family](usable)
        loops = loops_of(panels)
        if "asyncio" not in loops:
            chart_errors[family] = "stock asyncio was not measured, so there is nothing to compare with."
            continue
        png = None
        if not args.no_charts:
            png = os.path.join(args.results, f"{stem}-{family}.png")
            subtitle = (f"{manifest['started'][:10]} · {PRESETS[manifest['preset']][0]}, {rounds_of(usable)} rounds · "
                        f"{env['python']} · {env['cpu']}, {env['cpus']} CPUs · ours built from {env['ours_revision']}")
            draw(png, family, panels, loops, subtitle)
            shutil.copyfile(png, os.path.join(args.results, f"latest-{family}.png"))
            print(f"[report] {os.path.relpath(png, ROOT)} (and latest-{family}.png)")
        charts[family] = (png, panels, loops)
    md = os.path.join(args.results, f"{stem}.md")
    with open(md, "w", encoding="utf-8") as f:
        f.write(render(manifest, os.path.relpath(os.path.dirname(os.path.abspath(args.manifest)), ROOT),
                       charts, chart_errors))
    print(f"[report] {os.path.relpath(md, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
