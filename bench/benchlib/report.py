"""Turning per-round numbers into medians, ranges and ratios: the markdown table of
bench/RESULTS.md, the target checks of issue 6, and the machine description."""

import os
import platform
import statistics
import subprocess

NAMES = {"bunsan": "bunsan", "haproxy": "HAProxy", "nginx": "NGINX", "direct": "direct"}
KIB = 1024
GIB = 1024 ** 3


class Row:
    """One metric of the table: how to read it from a round, its unit and its target."""

    def __init__(self, scenario, label, get, fmt, target=None, check=None, proxies_only=False):
        self.proxies_only = proxies_only
        self.scenario = scenario
        self.label = label
        self.get = get
        self.fmt = fmt
        self.target = target
        self.check = check


def _rps(v):
    return f"{v:,.0f}"


def _us(v):
    return f"{v:.1f}"


def _gib(v):
    return f"{v / GIB:.2f}"


def _kib(v):
    return f"{v / KIB:.2f}"


def rows(raw):
    """The table's rows for the scenarios present in raw."""
    out = []
    if "S1" in raw:
        out.append(Row("S1", "req/s (64 conns, keep-alive)", lambda r: r["rps"], _rps,
                       "≥1.10× HAProxy and NGINX", lambda s: _ratio(s, "haproxy") >= 1.10 and _ratio(s, "nginx") >= 1.10))
        out.append(Row("S1", "proxy CPU µs/request", lambda r: r["cpu_us_per_req"], _us,
                       "≤0.90× HAProxy", lambda s: _ratio(s, "haproxy") <= 0.90, proxies_only=True))
    if "S2" in raw:
        for label in _s2_labels(raw):
            for pct, name in (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")):
                check = (lambda s: s["bunsan"]["median"] <= s["haproxy"]["median"]) if pct == "p99_us" else None
                out.append(Row("S2", f"added {name} µs at {label}", _s2_get(label, pct), _us,
                               "added p99 ≤ HAProxy's" if check else None, check))
    if "S3" in raw:
        out.append(Row("S3", "req/s (1 request per connection)", lambda r: r["rps"], _rps,
                       "≥1.0× HAProxy", lambda s: _ratio(s, "haproxy") >= 1.0))
    if "S4" in raw:
        for case, name in (("get_64k", "64 KiB responses"), ("get_1m", "1 MiB responses"),
                           ("upload_1m", "1 MiB uploads")):
            out.append(Row("S4", f"{name}: GiB per proxy CPU-s", _pick(case, "bytes_per_cpu_s"), _gib,
                           "≥1.0× NGINX", lambda s: _ratio(s, "nginx") >= 1.0, proxies_only=True))
            out.append(Row("S4", f"{name}: GiB/s", _pick(case, "bytes_per_s"), _gib))
    if "S5" in raw:
        out.append(Row("S5", "KiB PSS per idle connection", lambda r: r["bytes_per_conn"], _kib,
                       "≤8 KiB and ≤ HAProxy",
                       lambda s: s["bunsan"]["median"] <= 8 * KIB and s["bunsan"]["median"] <= s["haproxy"]["median"]))
    if "S6" in raw:
        out.append(Row("S6", "TCP GiB/s (one transfer)", lambda r: r["bytes_per_s"], _gib,
                       "≥0.90× direct", lambda s: _ratio(s, "direct") >= 0.90))
    if "S7" in raw:
        out.append(Row("S7", "CPU µs/request, 1,000 servers", lambda r: r["cpu_us_1000"], _us))
        out.append(Row("S7", "CPU per request, 1,000 ÷ 2 servers", lambda r: r["ratio"], lambda v: f"{v:.2f}",
                       "reported"))
    if "SCALE" in raw:
        out.append(Row("scaling", "req/s, 2 workers ÷ 1 worker", lambda r: r["ratio"], lambda v: f"{v:.2f}",
                       "reported"))
    return out


def _pick(case, key):
    return lambda r: r[case][key]


def _s2_labels(raw):
    """The rate labels ("25%", …) of the first S2 round that produced numbers."""
    for rounds in raw["S2"].values():
        for r in rounds:
            if r:
                return list(r)
    return []


def _s2_get(label, pct):
    """S2 values are (proxy, direct) pairs of the same round; the row shows proxy − direct."""
    return lambda pair: pair[0][label][pct] - pair[1][label][pct] if pair[1] else pair[0][label][pct]


def _ratio(summary, other):
    return summary["bunsan"]["median"] / summary[other]["median"]


def summarise(raw, row):
    """{kind: {median, min, max, n}} for one row, skipping rounds without a number."""
    out = {}
    for kind, rounds in raw[row.scenario if row.scenario != "scaling" else "SCALE"].items():
        if row.scenario == "S2":
            direct = raw["S2"].get("direct", [])
            values = [row.get((r, direct[i] if kind != "direct" else None))
                      for i, r in enumerate(rounds)
                      if r is not None and (kind == "direct" or (i < len(direct) and direct[i] is not None))]
        else:
            values = [row.get(r) for r in rounds if r is not None]
        values = [v for v in values if v is not None]
        if values:
            out[kind] = {"median": statistics.median(values), "min": min(values), "max": max(values),
                         "n": len(values)}
    return out


def table(raw):
    """The markdown table of medians, ranges, ratios and target verdicts; and the summary."""
    header = ("| scenario | metric | bunsan | HAProxy | NGINX | direct | bunsan/HAProxy | bunsan/NGINX "
              "| bunsan/direct | target | holds |")
    lines = [header, "|" + "---|" * 11]
    summary = []
    for row in rows(raw):
        s = summarise(raw, row)
        cells = [row.scenario, row.label]
        cells += [_cell(s.get(kind), row.fmt) for kind in ("bunsan", "haproxy", "nginx", "direct")]
        cells += [_ratio_cell(s, other) for other in ("haproxy", "nginx", "direct")]
        verdict = _verdict(row, s)
        cells += [row.target or "", verdict]
        lines.append("| " + " | ".join(cells) + " |")
        summary.append({"scenario": row.scenario, "metric": row.label, "values": s, "target": row.target,
                        "holds": verdict})
    return "\n".join(lines) + "\n", summary


def _cell(stat, fmt):
    if not stat:
        return "–"
    if stat["n"] == 1:
        return fmt(stat["median"])
    return f"{fmt(stat['median'])} ({fmt(stat['min'])}–{fmt(stat['max'])})"


def _ratio_cell(s, other):
    if "bunsan" not in s or other not in s or not s[other]["median"]:
        return "–"
    return f"{s['bunsan']['median'] / s[other]['median']:.2f}"


def _verdict(row, s):
    if row.check is None:
        return "reported" if row.target == "reported" else ""
    try:
        return "yes" if row.check(s) else "**no**"
    except (KeyError, ZeroDivisionError):
        return "n/a"


def loadavg():
    """The 1, 5 and 15-minute load averages, as text."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine(repo):
    """CPU model, cores, kernel, tool versions, the bunsan commit and the load average now."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "haproxy": _first_line(["haproxy", "-v"]),
        "nginx": _first_line(["nginx", "-v"]),
        "wrk": _first_line(["wrk", "-v"]),
        "bunsan_commit": _first_line(["git", "-C", repo, "rev-parse", "--short", "HEAD"]),
        "loadavg_end": loadavg(),
        "bunsan_dirty": bool(_first_line(["git", "-C", repo, "status", "--porcelain", "--", "crates"])),
    }


def _first_line(argv):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "not found"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else ""
