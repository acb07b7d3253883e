"""The scenarios S1-S7 and the worker-scaling check. Each function runs one round of one
scenario against one target kind and returns that round's numbers as a dict."""

import statistics
import time

from . import procs, tools
from .targets import LARGE_POOL, PROXIES, SMALL_POOL, launch

ALL_KINDS = ("direct",) + PROXIES
S4_CASES = (
    ("get_64k", "/bytes/65536", "report.lua"),
    ("get_1m", "/bytes/1048576", "report.lua"),
    ("upload_1m", "/upload", "upload.lua"),
)


class Context:
    """What every scenario needs: the run's environment, the backend and the durations."""

    def __init__(self, env, backend, settings):
        self.env = env
        self.backend = backend
        self.s = settings
        self.s2_rates = None

    def launch(self, kind, servers=SMALL_POOL, threads=1):
        return launch(kind, self.env, self.backend, servers=servers, threads=threads)


def _cpu_of(target, fn):
    """Runs fn() and returns (its result, the proxy CPU seconds it cost or None for direct)."""
    pids = target.pids()
    before = procs.cpu_seconds(pids)
    result = fn()
    return result, (procs.cpu_seconds(pids) - before) if pids else None


def _per_request_us(cpu_s, requests):
    return cpu_s * 1e6 / requests if cpu_s is not None and requests else None


def _wrk_measured(ctx, target, seconds, path="/", connections=64, script="report.lua", headers=()):
    """A warm-up then a measured wrk run with the proxy's CPU time around it."""
    if ctx.s["warmup"]:
        tools.wrk(ctx.env, target.url + path, ctx.s["warmup"], connections, script, headers)
    return _cpu_of(target, lambda: tools.wrk(ctx.env, target.url + path, seconds, connections, script, headers))


def s1(ctx, kind):
    """Keep-alive, small body, wrk with 64 connections: req/s and proxy CPU µs per request."""
    with ctx.launch(kind) as target:
        out, cpu = _wrk_measured(ctx, target, ctx.s["s1"])
    return {"rps": out["rps"], "cpu_us_per_req": _per_request_us(cpu, out["requests"]), "errors": out["errors"]}


def max_rates(ctx):
    """Each proxy's closed-loop maximum (S1's setup, short), when S1 did not run."""
    rates = {}
    for kind in PROXIES:
        with ctx.launch(kind) as target:
            rates[kind] = tools.wrk(ctx.env, target.url + "/", max(1, ctx.s["s1"] // 2))["rps"]
    return rates


def s2(ctx, kind):
    """Fixed rates (fractions of the slowest proxy's maximum): latency percentiles in µs."""
    out = {}
    with ctx.launch(kind) as target:
        tools.loadgen(ctx.env, target.http_port, ctx.s2_rates[0][1], min(1.0, ctx.s["s2"]))
        for label, rate in ctx.s2_rates:
            report = tools.loadgen(ctx.env, target.http_port, rate, ctx.s["s2"])
            out[label] = {k: report[k] for k in ("rate", "p50_us", "p99_us", "p999_us", "max_us",
                                                  "ok", "errors", "missed", "achieved_rps")}
    return out


def s3(ctx, kind):
    """Connection churn, one request per connection (Connection: close): req/s."""
    with ctx.launch(kind) as target:
        out, cpu = _wrk_measured(ctx, target, ctx.s["s3"], headers=("Connection: close",))
    return {"rps": out["rps"], "cpu_us_per_req": _per_request_us(cpu, out["requests"]), "errors": out["errors"]}


def s4(ctx, kind):
    """64 KiB and 1 MiB responses, 1 MiB uploads: bytes per proxy CPU-second."""
    result = {}
    with ctx.launch(kind) as target:
        for name, path, script in S4_CASES:
            out, cpu = _wrk_measured(ctx, target, ctx.s["s4"], path, 16, script)
            moved = out["requests"] * tools.UPLOAD_BYTES if script == "upload.lua" else out["bytes"]
            result[name] = {
                "bytes_per_s": moved / out["seconds"],
                "bytes_per_cpu_s": moved / cpu if cpu else None,
                "rps": out["rps"],
                "errors": out["errors"],
            }
    return result


def s5(ctx, kind):
    """Idle keep-alive client connections: proxy PSS per connection, in bytes."""
    count = ctx.s["idle"]
    with ctx.launch(kind) as target:
        tools.wrk(ctx.env, target.url + "/", 1, connections=4)
        pids = target.pids()
        before = procs.pss_bytes(pids)
        idle = tools.Idle(ctx.env, target.http_port, count)
        try:
            opened = idle.wait_open()
            time.sleep(0.5)
            after = procs.pss_bytes(target.pids())
        finally:
            idle.close()
    per_conn = (after - before) / opened["opened"] if opened["opened"] else None
    return {"bytes_per_conn": per_conn, "pss_before": before, "pss_after": after, **opened}


def s6(ctx, kind):
    """TCP mode: one long transfer (1 GiB in a full run) per repeat, bytes per second."""
    with ctx.launch(kind) as target:
        runs = [tools.tcpget(ctx.env, target.tcp_port) for _ in range(ctx.s["tcp_repeats"])]
    return {"bytes_per_s": statistics.median(r["bytes_per_s"] for r in runs), "bytes": runs[0]["bytes"]}


def s7(ctx, kind):
    """A pool of 1,000 servers vs 2: proxy CPU µs per request and their ratio."""
    cpu = {}
    for servers in (SMALL_POOL, LARGE_POOL):
        with ctx.launch(kind, servers=servers) as target:
            out, cpu_s = _wrk_measured(ctx, target, ctx.s["s7"])
            cpu[servers] = _per_request_us(cpu_s, out["requests"])
    return {"cpu_us_2": cpu[SMALL_POOL], "cpu_us_1000": cpu[LARGE_POOL],
            "ratio": cpu[LARGE_POOL] / cpu[SMALL_POOL] if cpu[SMALL_POOL] else None}


def scaling(ctx, kind):
    """S1 with 1 and then 2 worker threads (cores 0 and 1): req/s and their ratio."""
    rps = {}
    for threads in (1, 2):
        with ctx.launch(kind, threads=threads) as target:
            out, _ = _wrk_measured(ctx, target, ctx.s["scale"])
            rps[threads] = out["rps"]
    return {"rps_1": rps[1], "rps_2": rps[2], "ratio": rps[2] / rps[1] if rps[1] else None}


SCENARIOS = {
    "S1": (s1, ALL_KINDS),
    "S2": (s2, ALL_KINDS),
    "S3": (s3, ALL_KINDS),
    "S4": (s4, ALL_KINDS),
    "S5": (s5, PROXIES),
    "S6": (s6, ALL_KINDS),
    "S7": (s7, PROXIES),
    "SCALE": (scaling, PROXIES),
}
