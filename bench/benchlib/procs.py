"""Processes of a benchmark run: starting them pinned to a core, finding free ports,
waiting for sockets, reading CPU time and memory from /proc, and killing everything."""

import os
import signal
import socket
import subprocess
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROXY_CPU = "0"
# The backend and the load generators; on a one-core machine everything shares core 0.
LOAD_CPU = "1" if (os.cpu_count() or 1) > 1 else "0"
# Scheduling priority of every benchmark process (0 = unchanged); set by --nice.
NICE = 0

_started = []


def free_ports(count):
    """`count` distinct loopback TCP ports that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start(argv, cpus, log_path, stdin=subprocess.DEVNULL, stdout=None):
    """Starts argv under `taskset -c cpus` (and `nice`), stderr (and stdout unless given) to log_path."""
    log = open(log_path, "ab")
    prefix = ["nice", "-n", str(NICE)] if NICE else []
    proc = subprocess.Popen(
        prefix + ["taskset", "-c", cpus] + list(argv),
        stdin=stdin,
        stdout=stdout if stdout is not None else log,
        stderr=log,
        start_new_session=True,
    )
    _started.append(proc)
    return proc


def run(argv, cpus, timeout, log_path):
    """Runs argv pinned to cpus and returns its stdout; raises on failure or timeout."""
    proc = start(argv, cpus, log_path, stdout=subprocess.PIPE)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        stop(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited with {proc.returncode}; see {log_path}")
    return out.decode()


def stop(proc, grace=3.0):
    """Ends proc's whole process group: SIGTERM, then SIGKILL after grace seconds."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    if proc in _started:
        _started.remove(proc)


def stop_all():
    """Ends every process this run started and has not stopped yet."""
    for proc in list(_started):
        stop(proc, grace=1.0)


def _signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def wait_port(port, proc, timeout=10.0):
    """Waits until 127.0.0.1:port accepts connections; fails if proc exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def tree(pid):
    """pid and all its descendants (e.g. nginx master and workers)."""
    pids = [pid]
    for task in _list(f"/proc/{pid}/task"):
        for child in _read(f"/proc/{pid}/task/{task}/children").split():
            pids.extend(tree(int(child)))
    return pids


def cpu_seconds(pids):
    """utime + stime of the given processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        stat = _read(f"/proc/{pid}/stat")
        if stat:
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def pss_bytes(pids):
    """Proportional set size summed over the given processes, from smaps_rollup."""
    total = 0
    for pid in pids:
        for line in _read(f"/proc/{pid}/smaps_rollup").splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1]) * 1024
    return total


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _list(path):
    try:
        return os.listdir(path)
    except OSError:
        return []
