"""Load generators of a run: wrk (closed-loop throughput, with a Lua script that prints a
JSON summary) and the bunsan-bench tools (fixed-rate loadgen, idle, tcpget), all pinned to
the load core."""

import json
import resource
import subprocess

from . import procs

REPORT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"bytes":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\\n',
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
end
"""

UPLOAD_LUA = """
wrk.method = "POST"
wrk.body = string.rep("u", 1048576)
wrk.headers["Content-Type"] = "application/octet-stream"
"""

UPLOAD_BYTES = 1048576


def write_scripts(env):
    """Writes the two wrk scripts into the run directory."""
    for name, text in (("report.lua", REPORT_LUA), ("upload.lua", UPLOAD_LUA + REPORT_LUA)):
        with open(env.path(name), "w") as f:
            f.write(text)


def wrk(env, url, seconds, connections=64, script="report.lua", headers=()):
    """Runs wrk with one thread and returns its summary: requests, bytes, rps, errors."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
            "-s", env.path(script)]
    for header in headers:
        argv += ["-H", header]
    out = procs.run(argv + [url], procs.LOAD_CPU, seconds + 30, env.path("wrk.log"))
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {out[-500:]}")
    summary = json.loads(line[len("WRKJSON "):])
    errors = sum(summary[k] for k in ("connect", "read", "write", "status", "timeout"))
    seconds_run = summary["duration_us"] / 1e6
    return {
        "requests": summary["requests"],
        "bytes": summary["bytes"],
        "seconds": seconds_run,
        "rps": summary["requests"] / seconds_run if seconds_run else 0.0,
        "errors": errors,
    }


def loadgen(env, port, rate, seconds, connections=32):
    """One fixed-rate run of bunsan-bench loadgen; returns its JSON report."""
    argv = [env.bench_bin, "loadgen", "--addr", f"127.0.0.1:{port}", "--rate", f"{rate:.1f}",
            "--connections", str(connections), "--duration", str(seconds), "--grace", "2"]
    out = procs.run(argv, procs.LOAD_CPU, seconds + 30, env.path("loadgen.log"))
    return json.loads(out.strip().splitlines()[-1])


def tcpget(env, port):
    """One S6 transfer through port; returns bytes, seconds, bytes_per_s."""
    argv = [env.bench_bin, "tcpget", "--addr", f"127.0.0.1:{port}", "--bytes", str(env.tcp_bytes)]
    out = procs.run(argv, procs.LOAD_CPU, 120, env.path("tcpget.log"))
    return json.loads(out.strip().splitlines()[-1])


class Idle:
    """bunsan-bench idle: holds `count` keep-alive connections until closed."""

    def __init__(self, env, port, count):
        argv = [env.bench_bin, "idle", "--addr", f"127.0.0.1:{port}", "--connections", str(count)]
        self.proc = procs.start(argv, procs.LOAD_CPU, env.path("idle.log"), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)

    def wait_open(self):
        """Blocks until every connection is open; returns {"opened", "errors"}."""
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"idle exited with {self.proc.wait()}")
        return json.loads(line)

    def close(self):
        """Closes the connections and ends the process."""
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        finally:
            procs.stop(self.proc)


def raise_fd_limit():
    """Raises this process's open-file limit (children inherit it) to its hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft
