#!/usr/bin/env python3
"""Turns the k6 results of scripts/bench.sh into a BENCHMARKS.md section and an SVG chart.

    scripts/bench-report.py TARGET OUT_DIR CROWD BENCHMARKS.md CHART.svg
    scripts/bench-report.py --check TARGET OUT_DIR

OUT_DIR holds, per run, k6's --summary-export (NAME.json) and its CSV time series
(NAME.csv.gz, timestamps in ms): circulation-queue, circulation-capacity, poll-storm,
entry-scale. The section for TARGET (between <!-- bench:cycle:TARGET --> and
<!-- /bench:cycle:TARGET -->) is replaced, or added at the end. --check prints the figures and
fails when an invariant does not hold (more active visitors than max_active, a visitor who did
not get in or could not leave). Standard library only.
"""
import csv
import datetime
import gzip
import json
import os
import platform
import re
import subprocess
import sys
from collections import defaultdict

NAMES = ("join", "poll", "gate", "leave")
COLORS = {"join": "#1d4ed8", "poll": "#15803d", "gate": "#b45309", "leave": "#7c3aed",
          "active": "#1d4ed8", "admitted": "#b45309", "waiting": "#15803d", "limit": "#b91c1c"}
TITLES = {"origin": "the origin on its embedded store", "redis": "the origin on Redis (AOF, fsync every second)",
          "edge": "the edge under wrangler dev, driven by the origin's scheduler"}


def summary(out, name):
    with open(os.path.join(out, f"{name}.json")) as f:
        return json.load(f)["metrics"]


def crossed(metrics):
    return sorted(f"{m} {t}" for m, v in metrics.items() for t, bad in v.get("thresholds", {}).items() if bad)


def series(out, name):
    """Per-request latencies and the observer's samples, from the CSV time series."""
    latencies = defaultdict(list)  # name -> [(ms since start, duration ms)]
    observed = defaultdict(list)  # metric -> [(ms since start, value)]
    start = None
    path = os.path.join(out, f"{name}.csv.gz")
    with gzip.open(path, "rt", newline="") as f:
        for row in csv.DictReader(f):
            t = int(row["timestamp"])
            start = t if start is None else min(start, t)
            metric = row["metric_name"]
            if metric == "http_req_duration" and row.get("name") in NAMES:
                latencies[row["name"]].append((t, float(row["metric_value"])))
            elif metric.startswith("room_"):
                observed[metric].append((t, float(row["metric_value"])))
    shift = lambda pairs: [((t - start) / 1000.0, v) for t, v in sorted(pairs)]
    return ({k: shift(v) for k, v in latencies.items()}, {k: shift(v) for k, v in observed.items()})


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def admission_rate(observed, configured):
    """Admissions per minute over the longest stretch in which the queue stayed long (at least
    ten seconds' worth of admissions waiting), from the observer's admitted_total."""
    # The observer adds its four samples one after the other: pair them by order, not by the
    # millisecond each was stamped with.
    waiting = [v for _, v in observed.get("room_waiting", [])]
    total = observed.get("room_admitted_total", [])
    long_queue = configured / 6.0
    best, run = [], []
    for (t, v), w in zip(total, waiting):
        if w >= long_queue:
            run.append((t, v))
            if len(run) > len(best):
                best = list(run)
        else:
            run = []
    if len(best) < 10:
        return None
    (t0, v0), (t1, v1) = best[0], best[-1]
    return (v1 - v0) * 60.0 / (t1 - t0), t1 - t0


def cycle_figures(out, name):
    m = summary(out, name)
    latencies, observed = series(out, name)
    active = [v for _, v in observed.get("room_active", [])]
    admitted = [v for _, v in observed.get("room_admitted", [])]
    in_use = [a + b for a, b in zip(active, admitted)]
    return m, latencies, observed, {
        "max_active_seen": max(active, default=0),
        "max_in_use_seen": max(in_use, default=0),
        "crossed": crossed(m),
    }


def run_params(out, name):
    """The parameters bench.sh gave the run (NAME.params, KEY=VALUE lines, the last one wins)."""
    path = os.path.join(out, f"{name}.params")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return dict(line.strip().split("=", 1) for line in f if "=" in line)


def ms(v):
    if v != v:  # NaN
        return "-"
    return f"{v:.2f} ms" if v < 10 else f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    osname = platform.platform()
    try:
        with open("/etc/os-release") as f:
            osname = dict(l.strip().split("=", 1) for l in f if "=" in l).get("PRETTY_NAME", osname).strip('"')
    except OSError:
        pass
    k6 = subprocess.run(["k6", "version"], capture_output=True, text=True).stdout.split("\n")[0].strip()
    return f"{os.cpu_count()} vCPUs ({cpu}), {mem}, {osname}, Linux {platform.release()}; {k6}; load generator on the same machine"


def svg_chart(path, title, runs):
    """One chart per circulation run, side by side: p95 latency per second by request kind
    (top), visitors active, admitted-not-arrived and waiting with max_active (bottom)."""
    width, panel_h, pad = 1000, 200, 50
    col_w = width // len(runs)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{2 * panel_h + 3 * pad + 20}" '
             f'font-family="system-ui, sans-serif" font-size="11">',
             '<rect width="100%" height="100%" fill="#fff"/>',
             f'<text x="10" y="16" font-size="13" font-weight="bold">{title}</text>']
    for col, (label, latencies, observed, limit) in enumerate(runs):
        x0 = col * col_w + pad
        w = col_w - pad - 20
        t_max = max([t for pts in list(latencies.values()) + list(observed.values()) for t, _ in pts] or [1])
        # Top: p95 latency per second, per kind.
        per_second = {}
        for name, pts in latencies.items():
            buckets = defaultdict(list)
            for t, v in pts:
                buckets[int(t)].append(v)
            per_second[name] = sorted((s, percentile(vs, 95)) for s, vs in buckets.items())
        l_max = max([v for pts in per_second.values() for _, v in pts] or [1]) * 1.1
        y0 = pad + 20
        parts.append(panel(x0, y0, w, panel_h, f"{label}: p95 latency per second (ms)", t_max, l_max))
        for i, name in enumerate(NAMES):
            pts = per_second.get(name, [])
            if pts:
                parts.append(polyline(x0, y0, w, panel_h, t_max, l_max, pts, COLORS[name]))
            parts.append(legend(x0 + 8 + i * 60, y0 + 14, name, COLORS[name]))
        # Bottom: visitors.
        y1 = y0 + panel_h + pad
        shown = ("room_active", "room_admitted", "room_waiting")
        v_max = max([v for m in shown for _, v in observed.get(m, [])] + [limit or 0, 1]) * 1.1
        parts.append(panel(x0, y1, w, panel_h, f"{label}: visitors (max_active {limit})", t_max, v_max))
        for i, (metric, name) in enumerate([("room_active", "active"), ("room_admitted", "admitted"), ("room_waiting", "waiting")]):
            pts = observed.get(metric, [])
            if pts:
                parts.append(polyline(x0, y1, w, panel_h, t_max, v_max, pts, COLORS[name]))
            parts.append(legend(x0 + 8 + i * 75, y1 + 14, name, COLORS[name]))
        if limit:
            y = y1 + panel_h - panel_h * limit / v_max
            parts.append(f'<line x1="{x0}" x2="{x0 + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{COLORS["limit"]}" stroke-dasharray="4 3"/>')
            parts.append(legend(x0 + 8 + 3 * 75, y1 + 14, "max_active", COLORS["limit"]))
        parts.append(f'<text x="{x0 + w / 2:.0f}" y="{y1 + panel_h + 28}" text-anchor="middle">seconds since the start</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def panel(x, y, w, h, title, t_max, v_max):
    ticks = []
    for i in range(5):
        ty = y + h - h * i / 4
        ticks.append(f'<line x1="{x}" x2="{x + w}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#e5e7eb"/>'
                     f'<text x="{x - 4}" y="{ty + 4:.1f}" text-anchor="end">{v_max * i / 4:.0f}</text>')
    for i in range(5):
        tx = x + w * i / 4
        ticks.append(f'<text x="{tx:.1f}" y="{y + h + 14}" text-anchor="middle">{t_max * i / 4:.0f}</text>')
    return (f'<text x="{x}" y="{y - 8}" font-weight="bold">{title}</text>'
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="none" stroke="#9ca3af"/>' + "".join(ticks))


def polyline(x, y, w, h, t_max, v_max, pts, color):
    coords = " ".join(f"{x + w * t / t_max:.1f},{y + h - h * min(v, v_max) / v_max:.1f}" for t, v in pts)
    return f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{coords}"/>'


def legend(x, y, text, color):
    return f'<rect x="{x}" y="{y - 8}" width="10" height="3" fill="{color}"/><text x="{x + 14}" y="{y}">{text}</text>'


def latency_rows(m, names, scenario):
    rows = []
    for name in names:
        d = m.get(f"http_req_duration{{name:{name}}}")
        if not d:
            continue
        rows.append(f"| {scenario} | {name} | {ms(d['med'])} | {ms(d['p(95)'])} | {ms(d['p(99)'])} | {ms(d['max'])} |")
    return rows


def main():
    check_only = sys.argv[1] == "--check"
    args = sys.argv[2:] if check_only else sys.argv[1:]
    target, out = args[0], args[1]
    problems = []
    lines = []
    runs_for_chart = []
    cycle = {}
    for name in ("circulation-queue", "circulation-capacity"):
        m, latencies, observed, figures = cycle_figures(out, name)
        p = run_params(out, name)
        limit = int(float(p.get("MAX_ACTIVE", "0") or 0))
        cycle[name] = (m, latencies, observed, figures, p)
        runs_for_chart.append((name.replace("circulation-", "") + " run", latencies, observed, limit))
        got_in, left = m.get("got_in", {}), m.get("left_ok", {})
        if got_in.get("value", 0) < 1 or left.get("value", 0) < 1:
            problems.append(f"{name}: {got_in.get('passes')} got in of {got_in.get('passes', 0) + got_in.get('fails', 0)}, "
                            f"{left.get('passes')} left")
        if limit and figures["max_in_use_seen"] > limit:
            problems.append(f"{name}: {figures['max_in_use_seen']:.0f} in use, over max_active {limit}")
        print(f"{name}: got in {got_in.get('value')}, left {left.get('value')}, most in use {figures['max_in_use_seen']:.0f}"
              f" of {limit}, thresholds crossed: {figures['crossed'] or 'none'}")
    storm = summary(out, "poll-storm")
    entry = summary(out, "entry-scale")
    for name, m in (("poll-storm", storm), ("entry-scale", entry)):
        print(f"{name}: {m['http_reqs']['count']} requests, {m['http_reqs']['rate']:.0f}/s, "
              f"checks {m['checks']['value']:.4f}, thresholds crossed: {crossed(m) or 'none'}")
    if check_only:
        if problems:
            sys.exit("bench check failed: " + "; ".join(problems))
        return

    crowd, bench_md, chart = int(args[2]), args[3], args[4]
    svg_chart(chart, f"queuegate, {TITLES[target]}: the visitor cycle under load", runs_for_chart)
    today = datetime.date.today().isoformat()
    lines.append(f"<!-- bench:cycle:{target} -->")
    lines.append(f"### The full visitor cycle: {TITLES[target]}")
    lines.append("")
    lines.append(f"Written by `scripts/bench.sh {target}` on {today}. Machine: {machine()}.")
    lines.append("")
    lines.append("| Run | Load | Visitors | Got in | Left | Dropped iterations | Thresholds |")
    lines.append("|---|---|---|---|---|---|---|")
    for name, (m, latencies, observed, figures, p) in cycle.items():
        got_in, left = m.get("got_in", {}), m.get("left_ok", {})
        visitors = got_in.get("passes", 0) + got_in.get("fails", 0)
        load = (f"{p.get('ARRIVAL_RATE')} arrivals/s for {p.get('DURATION_S')} s; max_active {p.get('MAX_ACTIVE')}, "
                f"admit_per_minute {p.get('ADMIT_PER_MINUTE')}, stay {p.get('STAY_S')} s")
        lines.append(f"| {name} | {load} | {visitors} | {100 * got_in.get('value', 0):.2f} % | "
                     f"{100 * left.get('value', 0):.2f} % | {m.get('dropped_iterations', {}).get('count', 0)} | "
                     f"{'passed' if not figures['crossed'] else 'crossed: ' + ', '.join(figures['crossed'])} |")
    for name, m, what in (("poll-storm", storm, f"a crowd of {crowd:,} waiting visitors polling"),
                          ("entry-scale", entry, "the seed's scenario")):
        checks = m["checks"]
        lines.append(f"| {name} | {what}: {m['http_reqs']['count']:,} requests, {m['http_reqs']['rate']:,.0f}/s | | "
                     f"{100 * checks['value']:.2f} % of requests succeeded | | {m.get('dropped_iterations', {}).get('count', 0)} | "
                     f"{'passed' if not crossed(m) else 'crossed: ' + ', '.join(crossed(m))} |")
    lines.append("")
    retries = ", ".join(f"{m.get('retried_after_503', {}).get('count', 0)} in {name}" for name, (m, *_r) in cycle.items())
    lines.append(f"Joins and leaves sent again after a 503 with `Retry-After`, as a browser would: {retries}.")
    lines.append("")
    lines.append("| Run | Request | p50 | p95 | p99 | max |")
    lines.append("|---|---|---|---|---|---|")
    for name, (m, *_rest) in cycle.items():
        lines.extend(latency_rows(m, NAMES, name))
    for name, m in (("poll-storm", storm), ("entry-scale", entry)):
        d = m["http_req_duration"]
        lines.append(f"| {name} | {'poll' if name == 'poll-storm' else 'join'} | {ms(d['med'])} | {ms(d['p(95)'])} | {ms(d['p(99)'])} | {ms(d['max'])} |")
    lines.append("")
    # Admission accuracy.
    qm, _, qobs, qfig, qp = cycle["circulation-queue"]
    cm, _, cobs, cfig, cp = cycle["circulation-capacity"]
    configured = float(qp.get("ADMIT_PER_MINUTE", "0") or 0)
    measured = admission_rate(qobs, configured)
    lines.append("Admission accuracy:")
    lines.append("")
    if measured:
        per_min, window = measured
        lines.append(f"- Admissions per minute while the queue was long (queue run, {window:.0f} s with at least ten "
                     f"seconds' worth waiting): **{per_min:.1f}** against {configured:.0f} configured "
                     f"(**{100 * (per_min - configured) / configured:+.2f} %**).")
    else:
        lines.append("- The queue never stayed long for ten samples: no admission rate measured.")
    for name, fig, p in (("queue", qfig, qp), ("capacity", cfig, cp)):
        lines.append(f"- Most visitors holding a slot (active + admitted, not yet arrived) seen by the observer, {name} run: "
                     f"**{fig['max_in_use_seen']:.0f}** of max_active {p.get('MAX_ACTIVE')} (most active: {fig['max_active_seen']:.0f}).")
    for name, m in (("queue", qm), ("capacity", cm)):
        err, abs_err, wait = m.get("wait_estimate_error_s"), m.get("wait_estimate_abs_error_s"), m.get("visitor_wait_ms")
        if err and abs_err and wait:
            lines.append(f"- Wait estimate at join against the wait (join to admission as the visitor saw it, so up to a "
                         f"poll interval late), {name} run: error median **{err['med']:+.1f} s**, absolute error median "
                         f"**{abs_err['med']:.1f} s**, p90 **{abs_err['p(90)']:.1f} s**; waits: median {wait['med'] / 1000:.1f} s, "
                         f"p90 {wait['p(90)'] / 1000:.1f} s, max {wait['max'] / 1000:.1f} s.")
    lines.append("")
    lines.append(f"![Latency and visitors over time, {target}]({chart})")
    lines.append(f"<!-- /bench:cycle:{target} -->")
    section = "\n".join(lines)

    with open(bench_md) as f:
        text = f.read()
    pattern = re.compile(rf"<!-- bench:cycle:{target} -->.*?<!-- /bench:cycle:{target} -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        heading = "## The full visitor cycle (scripts/bench.sh)"
        if heading not in text:
            text = text.rstrip("\n") + f"\n\n{heading}\n\n"
            text += ("`scripts/bench.sh origin|redis|edge` runs k6/circulation.js (twice: a long queue where the "
                     "rate limits, and few slots where capacity limits), k6/poll-storm.js and k6/entry-scale.js "
                     "against a fresh target each, and rewrites its section here.\n")
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(bench_md, "w") as f:
        f.write(text)
    if problems:
        print("problems: " + "; ".join(problems), file=sys.stderr)


if __name__ == "__main__":
    main()
