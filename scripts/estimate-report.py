#!/usr/bin/env python3
"""The wait estimate's section of BENCHMARKS.md from scripts/bench-estimate.sh's k6 summaries.

    estimate-report.py <target> <out dir> BENCHMARKS.md
    estimate-report.py --check <target> <out dir>    (QUICK=1: checks the runs, writes nothing)
"""
import datetime
import sys

from report_common import load_run, machine, write_section

TITLES = {"origin": "the origin on its embedded store", "redis": "the origin on Redis", "edge": "the edge (wrangler dev)"}
RUNS = {"burst": "a crowd joins at once", "steady": "steady arrivals, faster than slots free"}


def pct(trend, stat):
    return f"{100 * trend[stat]:.0f} %" if trend and trend.get(stat) is not None else "none shown"


def row(run, metrics, params):
    visitors = int(float(params["ARRIVAL_RATE"]) * float(params["DURATION_S"]))
    load_text = (f"{visitors} visitors over {params['DURATION_S']} s; max_active {params['MAX_ACTIVE']}, "
                 f"admit_per_minute 1200, stays {float(params['STAY_S']) / 2:g}-{1.5 * float(params['STAY_S']):g} s")
    wait = metrics.get("visitor_wait_ms", {})
    join = metrics.get("estimate_rel_error_join")
    first = metrics.get("estimate_rel_error_first_minute")
    after = metrics.get("estimate_rel_error_after_a_minute")
    unknown = metrics.get("estimate_unknown", {}).get("value")
    got_in = metrics.get("got_in", {}).get("value", 0)
    return (f"| {run} ({RUNS[run]}) | {load_text} | {100 * got_in:.1f} % | "
            f"{wait.get('med', 0) / 1000:.1f} s / {wait.get('p(90)', 0) / 1000:.1f} s | "
            f"{pct(join, 'med')} / {pct(join, 'p(90)')} | {pct(first, 'med')} / {pct(first, 'p(90)')} | "
            f"{pct(after, 'med')} / {pct(after, 'p(90)')} | "
            f"{'n/a' if unknown is None else f'{100 * unknown:.1f} %'} |")


def main():
    if sys.argv[1] == "--check":
        target, out = sys.argv[2], sys.argv[3]
        problems = []
        for run in RUNS:
            metrics, _ = load_run(out, run)
            if metrics.get("got_in", {}).get("value", 0) < 1.0:
                problems.append(f"{run}: not every visitor got in")
        if problems:
            sys.exit("; ".join(problems))
        print(f"estimate runs on {target}: every visitor got in")
        return
    target, out, bench_md = sys.argv[1:4]
    lines = [f"<!-- bench:estimate:{target} -->", f"### The wait estimate: {TITLES[target]}", ""]
    lines.append(f"Written by `scripts/bench-estimate.sh {target}` on {datetime.date.today().isoformat()}. "
                 f"Machine: {machine()}; load generator on the same machine.")
    lines.append("")
    lines.append("Error of the estimate against the wait that followed it, as a share of that wait (median / p90); "
                 "waits under 10 s left out; admission taken as midway between the last two polls, at most 1 s apart.")
    lines.append("")
    lines.append("| Run | Load | Got in | Wait p50 / p90 | At join | Shown in the first minute | Shown after a minute | Answers without an estimate |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for run in RUNS:
        metrics, params = load_run(out, run)
        lines.append(row(run, metrics, params))
    lines.append(f"<!-- /bench:estimate:{target} -->")
    section = "\n".join(lines)
    write_section(bench_md, f"bench:estimate:{target}", section, "## The wait estimate (scripts/bench-estimate.sh)",
                  "`scripts/bench-estimate.sh origin|redis|edge` measures the estimate each waiting visitor is "
                  "shown, at join and at every poll, against the wait that followed, where capacity limits "
                  "admission. The goal: p90 within 15 % of the remaining wait once the room has run a minute.")


if __name__ == "__main__":
    main()
