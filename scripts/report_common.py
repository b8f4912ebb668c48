"""What the benchmark reports share: the machine line, and rewriting a marked section of
BENCHMARKS.md (or appending it under its heading)."""
import json
import os
import platform
import re
import subprocess


def machine():
    """The CPU, the kernel and k6's version, for the line under a section's title."""
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        k6 = subprocess.run(["k6", "version"], capture_output=True, text=True).stdout.strip().splitlines()
    except OSError:
        k6 = []
    return f"{os.cpu_count()} vCPUs ({cpu}), {platform.system()} {platform.release()}; {k6[0] if k6 else 'k6'}"


def load_run(out, run):
    """A k6 run's summary metrics (`<run>.json`) and its parameters (`<run>.params`, NAME=value
    lines) from a bench's out dir."""
    with open(os.path.join(out, f"{run}.json")) as f:
        metrics = json.load(f)["metrics"]
    with open(os.path.join(out, f"{run}.params")) as f:
        params = dict(line.strip().split("=", 1) for line in f if "=" in line)
    return metrics, params


def write_section(bench_md, marker, section, heading, intro):
    """Puts `section` (which starts with <!-- marker --> and ends with <!-- /marker -->) in
    place of the marked section of `bench_md`, or appends it under `heading` (with `intro` when
    the heading is new)."""
    text = open(bench_md).read()
    pattern = re.compile(rf"<!-- {re.escape(marker)} -->.*?<!-- /{re.escape(marker)} -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        if heading not in text:
            text = text.rstrip("\n") + f"\n\n{heading}\n\n{intro}\n"
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(bench_md, "w") as f:
        f.write(text)
