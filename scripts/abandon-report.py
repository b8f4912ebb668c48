#!/usr/bin/env python3
"""The section "Visitors who left" of BENCHMARKS.md from scripts/bench-abandon.sh's k6 summaries.

    abandon-report.py <target> <out dir> BENCHMARKS.md
    abandon-report.py --check <target> <out dir>    (QUICK=1: checks the runs, writes nothing)

Goals (issue 12, part 4): with half the arrivals gone right after joining, the present visitors
are admitted at admit_per_minute within 2 %, their median wait within 10 % of the run without
the abandoners, and max_active is never exceeded.
"""
import datetime
import sys

from report_common import load_run, machine, write_section

TITLES = {"origin": "the origin on its embedded store", "redis": "the origin on Redis", "edge": "the edge (wrangler dev)"}
RUNS = {"present": "no abandoners", "abandoners": "as many again abandon right after joining"}


def figures(metrics, params):
    """What a run measured, as numbers."""
    admitted = metrics.get("present_admitted", {}).get("count", 0)
    at = metrics.get("present_admitted_at_s", {})
    span = at.get("max", 0) - at.get("min", 0)
    # Admissions in the span between the first and the last present one: one fewer than seen.
    rate = 60 * (admitted - 1) / span if span > 0 and admitted > 1 else 0.0
    total = metrics.get("room_admitted_total", {}).get("max", 0)
    return {
        "present": admitted,
        "abandoners": metrics.get("abandoners", {}).get("count", 0),
        "got_in": metrics.get("got_in", {}).get("value", 0),
        "rate": rate,
        "configured": float(params["ADMIT_PER_MINUTE"]),
        "wait_med": metrics.get("visitor_wait_ms", {}).get("med", 0) / 1000,
        "wait_p90": metrics.get("visitor_wait_ms", {}).get("p(90)", 0) / 1000,
        "admitted_total": total,
        "admitted_gone": max(0, total - admitted),
        "no_shows": metrics.get("room_no_shows", {}).get("max", 0),
        "occupied_max": metrics.get("room_occupied", {}).get("max", 0),
        "max_active": float(params["MAX_ACTIVE"]),
    }


def main():
    if sys.argv[1] == "--check":
        target, out = sys.argv[2], sys.argv[3]
        problems = []
        for run in RUNS:
            f = figures(*load_run(out, run))
            if f["got_in"] < 1.0:
                problems.append(f"{run}: not every present visitor got in")
            if f["occupied_max"] > f["max_active"]:
                problems.append(f"{run}: {f['occupied_max']:.0f} slots taken, over max_active")
        if problems:
            sys.exit("; ".join(problems))
        print(f"abandon runs on {target}: every present visitor got in, max_active held")
        return
    target, out, bench_md = sys.argv[1:4]
    runs = {run: figures(*load_run(out, run)) for run in RUNS}
    b, a = runs["present"], runs["abandoners"]
    params = load_run(out, "present")[1]
    lines = [f"<!-- bench:abandon:{target} -->", f"### Visitors who left: {TITLES[target]}", ""]
    lines.append(f"Written by `scripts/bench-abandon.sh {target}` on {datetime.date.today().isoformat()}. "
                 f"Machine: {machine()}; load generator on the same machine.")
    lines.append("")
    lines.append(f"{b['present']} present visitors over {params['DURATION_S']} s, polling at least once a second; "
                 f"admit_per_minute {b['configured']:.0f}, max_active {b['max_active']:.0f}, stays 2.5-7.5 s, "
                 f"abandon_after_s 4. The admission rate is the present visitors' own, from the first to the "
                 f"last seen admitted (to within a poll).")
    lines.append("")
    lines.append("| Run | Present visitors | Abandoners | Got in | Present admitted a minute (configured) | "
                 "Wait p50 / p90 | Admissions to visitors who had left | Of them ended as no-shows, given back | "
                 "Most slots taken (max_active) |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for run, f in runs.items():
        lines.append(
            f"| {RUNS[run]} | {f['present']} | {f['abandoners']} | {100 * f['got_in']:.1f} % | "
            f"{f['rate']:.0f} ({f['configured']:.0f}, {100 * (f['rate'] / f['configured'] - 1):+.1f} %) | "
            f"{f['wait_med']:.1f} s / {f['wait_p90']:.1f} s | {f['admitted_gone']:.0f} | {f['no_shows']:.0f} | "
            f"{f['occupied_max']:.0f} ({f['max_active']:.0f}) |")
    lines.append("")
    rate_gap = 100 * (a["rate"] / a["configured"] - 1)
    wait_gap = 100 * (a["wait_med"] / b["wait_med"] - 1) if b["wait_med"] else float("nan")
    held = a["occupied_max"] <= a["max_active"] and b["occupied_max"] <= b["max_active"]
    lines.append(f"Against the goals: present visitors admitted at {rate_gap:+.1f} % of admit_per_minute "
                 f"(goal within 2 %: {'met' if abs(rate_gap) <= 2 else 'not met'}); their median wait "
                 f"{wait_gap:+.1f} % against the run without abandoners (goal within 10 %: "
                 f"{'met' if abs(wait_gap) <= 10 else 'not met'}); max_active "
                 f"{'never exceeded' if held else 'EXCEEDED'}.")
    lines.append(f"<!-- /bench:abandon:{target} -->")
    write_section(bench_md, f"bench:abandon:{target}", "\n".join(lines),
                  "## Visitors who left (scripts/bench-abandon.sh)",
                  "`scripts/bench-abandon.sh origin|redis|edge` runs the visitor cycle twice: once with present "
                  "visitors only, once with as many again who join and never ask again. The goals: the present "
                  "visitors admitted at admit_per_minute within 2 %, their median wait within 10 % of the run "
                  "without abandoners, and max_active never exceeded.")


if __name__ == "__main__":
    main()
