#!/usr/bin/env python3
"""The "A sale opening" section of BENCHMARKS.md and its chart, from scripts/bench-sale.sh's run.

    sale-report.py <target> <out dir> BENCHMARKS.md CHART.svg DATA.json
    sale-report.py --check <target> <out dir>     (QUICK=1: checks the run, writes nothing)

DATA.json keeps each target's last run, so the chart shows every target measured.
"""
import datetime
import json
import os
import re
import sys

from report_common import machine, write_section

TITLES = {"origin": "the origin on its embedded store", "redis": "the origin on Redis", "edge": "the edge (wrangler dev)"}
COLORS = {"origin": "#2563eb", "redis": "#dc2626", "edge": "#d97706"}


def load(out):
    metrics = json.load(open(os.path.join(out, "summary.json")))["metrics"]
    params = dict(line.strip().split("=", 1) for line in open(os.path.join(out, "params")) if "=" in line)
    series = []
    for line in open(os.path.join(out, "k6.txt")):
        m = re.search(r'msg="(\{.*\})"', line)
        if m:
            series.append(json.loads(m.group(1).replace('\\"', '"')))
    return metrics, params, series


def figures(metrics, params, series):
    wait = metrics.get("wait_after_opening_ms", {})
    rate = metrics.get("admissions_per_minute", {})
    return {
        "visitors": int(float(params["VISITORS"])),
        "configured": float(params["ADMIT_PER_MINUTE"]),
        "max_active": int(float(params["MAX_ACTIVE"])),
        "got_in": metrics.get("got_in", {}).get("value", 0),
        "before_opening": metrics.get("admitted_before_opening", {}).get("count", 0),
        "first_s": wait.get("min", 0) / 1000,
        "p50_s": wait.get("med", 0) / 1000,
        "p90_s": wait.get("p(90)", 0) / 1000,
        "max_s": wait.get("max", 0) / 1000,
        "per_minute": rate.get("avg"),
        "series": [(p["since_opening_s"], p["admitted"]) for p in series],
        "date": datetime.date.today().isoformat(),
    }


def chart(path, data):
    """Admissions since the opening, as a share of each target's crowd, against the time since the
    opening; a dashed line per target for its configured rate."""
    width, height, pad = 760, 320, 50
    t_max = max([s for d in data.values() for s, _ in d["series"]] + [1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="system-ui, sans-serif" font-size="11">',
             '<rect width="100%" height="100%" fill="#fff"/>',
             '<text x="10" y="16" font-size="13" font-weight="bold">A sale opening: the crowd let in '
             '(% of it) against seconds since the opening; dashed: at the configured rate</text>']
    x0, y0, w, h = pad, 30, width - 2 * pad, height - 80
    for i in range(5):
        ty = y0 + h - h * i / 4
        parts.append(f'<line x1="{x0}" x2="{x0 + w}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#e5e7eb"/>'
                     f'<text x="{x0 - 4}" y="{ty + 4:.1f}" text-anchor="end">{25 * i}</text>')
    for i in range(6):
        tx = x0 + w * i / 5
        parts.append(f'<text x="{tx:.1f}" y="{y0 + h + 14}" text-anchor="middle">{t_max * i / 5:.0f} s</text>')
    sx = lambda s: x0 + w * max(0.0, s) / t_max
    sy = lambda share: y0 + h - h * min(1.0, share)
    for k, (target, d) in enumerate(sorted(data.items())):
        color = COLORS.get(target, "#111")
        pts = [(s, a / d["visitors"]) for s, a in d["series"] if s >= -5]
        if pts:
            path_d = " ".join(f"{'M' if i == 0 else 'L'}{sx(s):.1f},{sy(f):.1f}" for i, (s, f) in enumerate(pts))
            parts.append(f'<path d="{path_d}" fill="none" stroke="{color}" stroke-width="2"/>')
        full_s = d["visitors"] / d["configured"] * 60
        parts.append(f'<line x1="{sx(0):.1f}" y1="{sy(0):.1f}" x2="{sx(min(full_s, t_max)):.1f}" '
                     f'y2="{sy(min(full_s, t_max) / full_s):.1f}" stroke="{color}" stroke-dasharray="5 4"/>')
        lx = x0 + 10 + k * 250
        parts.append(f'<rect x="{lx}" y="{y0 + h + 26}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{lx + 14}" y="{y0 + h + 35}">{target}: {d["visitors"]:,} visitors, '
                     f'{d["configured"]:.0f}/min</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    if sys.argv[1] == "--check":
        target, out = sys.argv[2], sys.argv[3]
        f = figures(*load(out))
        problems = []
        if f["got_in"] < 1.0:
            problems.append("not every visitor got in")
        if f["before_opening"]:
            problems.append(f"{f['before_opening']} admitted before the opening")
        if problems:
            sys.exit(f"sale opening on {target}: " + "; ".join(problems))
        print(f"sale opening on {target}: every visitor got in, none before the opening, "
              f"first admission {f['first_s']:.1f} s after it")
        return
    target, out, bench_md, chart_path, data_path = sys.argv[1:6]
    f = figures(*load(out))
    shuffled = os.environ.get("SHUFFLED") == "1"
    random_mode = os.environ.get("MODE", "fifo") == "random"
    variant = shuffled or random_mode
    if not variant:
        data = json.load(open(data_path)) if os.path.exists(data_path) else {}
        data[target] = f
        with open(data_path, "w") as fh:
            json.dump(data, fh, indent=1)
            fh.write("\n")
        chart(chart_path, data)
    rate = "not measured" if f["per_minute"] is None else (
        f"**{f['per_minute']:.0f}** against {f['configured']:.0f} configured "
        f"(**{100 * (f['per_minute'] - f['configured']) / f['configured']:+.1f} %**)")
    marker, title, flag = f"bench:sale:{target}", "A sale opening", ""
    if shuffled:
        marker, title, flag = f"bench:sale-shuffled:{target}", "A shuffled sale opening", "SHUFFLE=1 "
    if random_mode:
        marker, title, flag = (f"bench:sale-random:{target}", "A sale opening in random mode",
                               "MODE=random ")
    lines = [f"<!-- {marker} -->", f"### {title}: {TITLES[target]}", "",
             f"Written by `{flag}scripts/bench-sale.sh {target}` on {f['date']}. Machine: {machine()}; load "
             f"generator on the same machine.", "",
             f"- {f['visitors']:,} visitors joined a pre-queue over 60 s; the sale opened 5 s after it "
             f"(max_active {f['max_active']}, admit_per_minute {f['configured']:.0f}); each left as soon as it was in."
             + (" The event shuffled the pre-queue at the opening (the shuffle happens on the first request "
                "after it, and admission waits for it)." if shuffled else "")
             + (" The event admitted in random mode: each admission a draw among everyone waiting, "
                "so the waits spread over the whole run whatever the join order." if random_mode else ""),
             f"- Got in: **{100 * f['got_in']:.1f} %**; admitted before the opening: **{f['before_opening']}**.",
             f"- From the opening to the first admission a visitor saw: **{f['first_s']:.1f} s**.",
             f"- Admissions per minute from the first on, until the line was empty: {rate}.",
             f"- Wait after the opening (to the admission the visitor saw): median **{f['p50_s']:.1f} s**, "
             f"p90 {f['p90_s']:.1f} s, max {f['max_s']:.1f} s.",
             ""] + ([] if variant else ["![A sale opening](docs/bench/sale-opening.svg)"]) + [f"<!-- /{marker} -->"]
    section = "\n".join(lines)
    write_section(bench_md, marker, section, "## A sale opening (scripts/bench-sale.sh)",
                  "`scripts/bench-sale.sh origin|redis|edge` runs k6/sale-opening.js: a crowd pre-queues "
                  "for a scheduled event over a minute, the sale opens, and the line is let in at the "
                  "room's rate; with SHUFFLE=1 the event shuffles its pre-queue at the opening, with "
                  "MODE=random it admits by draws.")


if __name__ == "__main__":
    main()
