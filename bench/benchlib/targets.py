"""The backend every target shares, and the targets themselves: HAProxy, NGINX and bunsan
rendered from bench/configs/ templates, plus `direct` (the backend without a proxy)."""

import contextlib
import glob
import os
import shutil

from . import procs

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
PROXIES = ("haproxy", "nginx", "bunsan")
SMALL_POOL = 2
LARGE_POOL = 1000


class Env:
    """Paths and sizes shared by every process of one run."""

    def __init__(self, run_dir, bunsan_bin, bench_bin, tcp_bytes, fd_limit):
        self.run_dir = run_dir
        self.fd_limit = fd_limit
        self.bunsan_bin = bunsan_bin
        self.bench_bin = bench_bin
        self.tcp_bytes = tcp_bytes

    def path(self, *parts):
        """A path inside the run directory."""
        return os.path.join(self.run_dir, *parts)


def render(template, out_path, values):
    """Fills @@NAME@@ placeholders of a template from bench/configs/ and writes it."""
    with open(os.path.join(CONFIGS, template)) as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", str(value))
    if "@@" in text:
        raise RuntimeError(f"{template}: placeholder left unfilled")
    with open(out_path, "w") as f:
        f.write(text)
    return out_path


class Backend:
    """NGINX serving LARGE_POOL ports on the load core, plus a TCP source for S6."""

    def __init__(self, env):
        self.env = env
        *self.ports, self.tcp_port = procs.free_ports(LARGE_POOL + 1)
        self.proc = None
        self.tcp_proc = None
        self.data = None

    def start(self):
        """Writes the files it serves to a tmpfs directory and starts both servers."""
        data = self._write_data()
        listen = "\n".join(f"        listen 127.0.0.1:{p} backlog=4096;" for p in self.ports)
        conf = render(
            "backend-nginx.conf",
            self.env.path("backend-nginx.conf"),
            {"AFFINITY": "10" if procs.LOAD_CPU == "1" else "01", "RUN": self.env.run_dir, "FD_LIMIT": self.env.fd_limit, "DATA": data, "LISTEN": listen},
        )
        argv = ["nginx", "-p", self.env.run_dir, "-c", conf, "-e", self.env.path("backend-error.log")]
        self.proc = procs.start(argv, procs.LOAD_CPU, self.env.path("backend.log"))
        procs.wait_port(self.ports[0], self.proc)
        argv = [self.env.bench_bin, "tcpsrc", "--listen", f"127.0.0.1:{self.tcp_port}",
                "--bytes", str(self.env.tcp_bytes)]
        self.tcp_proc = procs.start(argv, procs.LOAD_CPU, self.env.path("tcpsrc.log"))
        procs.wait_port(self.tcp_port, self.tcp_proc)

    def _write_data(self):
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else self.env.run_dir
        data = os.path.join(shm, f"bunsan-bench-{os.getpid()}")
        os.makedirs(os.path.join(data, "bytes"), exist_ok=True)
        for size in (65536, 1048576):
            with open(os.path.join(data, "bytes", str(size)), "wb") as f:
                f.write(b"b" * size)
        self.data = data
        return data

    def stop(self):
        """Stops both servers and removes the served files."""
        for proc in (self.tcp_proc, self.proc):
            if proc is not None:
                procs.stop(proc)
        if self.data:
            shutil.rmtree(self.data, ignore_errors=True)


class Target:
    """One running target: its HTTP and TCP ports and the PIDs whose CPU and memory count."""

    def __init__(self, kind, http_port, tcp_port, proc=None):
        self.kind = kind
        self.http_port = http_port
        self.tcp_port = tcp_port
        self.proc = proc

    def pids(self):
        """The proxy's processes (none for direct)."""
        return procs.tree(self.proc.pid) if self.proc else []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.http_port}"


@contextlib.contextmanager
def launch(kind, env, backend, servers=SMALL_POOL, threads=1):
    """Starts a target (a proxy over `servers` backend ports, or direct) and stops it after."""
    if kind == "direct":
        yield Target("direct", backend.ports[0], backend.tcp_port)
        return
    http_port, tcp_port = procs.free_ports(2)
    argv = _prepare(kind, env, backend.ports[:servers], backend.tcp_port, http_port, tcp_port, threads)
    cpus = ",".join(str(c) for c in range(threads)) if threads > 1 else procs.PROXY_CPU
    proc = procs.start(argv, cpus, env.path(f"{kind}.log"))
    try:
        procs.wait_port(http_port, proc)
        procs.wait_port(tcp_port, proc)
        yield Target(kind, http_port, tcp_port, proc)
    finally:
        procs.stop(proc)


def haproxy_maxconn(fd_limit):
    """The most connections HAProxy accepts within fd_limit (it reserves two per connection)."""
    return (fd_limit - 100) // 2


def _prepare(kind, env, ports, tcp_server, http_port, tcp_port, threads):
    """Renders the kind's config and returns the command that runs it in the foreground."""
    values = {"THREADS": threads, "RUN": env.run_dir, "HTTP_PORT": http_port, "TCP_PORT": tcp_port,
              "FD_LIMIT": env.fd_limit, "MAXCONN": haproxy_maxconn(env.fd_limit)}
    if kind == "haproxy":
        values["CPUS"] = "0-1" if threads > 1 else "0"
        values["HTTP_SERVERS"] = "\n".join(f"    server s{i} 127.0.0.1:{p}" for i, p in enumerate(ports))
        values["TCP_SERVERS"] = f"    server t0 127.0.0.1:{tcp_server}"
        conf = render("haproxy.cfg", env.path("haproxy.cfg"), values)
        return ["haproxy", "-db", "-f", conf]
    if kind == "nginx":
        for sub in ("client_body", "proxy_temp"):
            os.makedirs(env.path(sub), exist_ok=True)
            os.chmod(env.path(sub), 0o777)  # NGINX's workers run as an unprivileged user
        values["AFFINITY"] = "01 10" if threads > 1 else "01"
        values["LOAD_STREAM"] = _stream_module()
        values["HTTP_SERVERS"] = "\n".join(f"        server 127.0.0.1:{p};" for p in ports)
        values["TCP_SERVERS"] = f"        server 127.0.0.1:{tcp_server};"
        conf = render("nginx.conf", env.path("nginx.conf"), values)
        return ["nginx", "-p", env.run_dir, "-c", conf, "-e", env.path("nginx-error.log")]
    if kind == "bunsan":
        values["HTTP_SERVERS"] = "\n".join(
            f'[[pool.server]]\nname = "s{i}"\naddr = "127.0.0.1:{p}"\n' for i, p in enumerate(ports))
        values["TCP_SERVERS"] = f'[[pool.server]]\nname = "t0"\naddr = "127.0.0.1:{tcp_server}"\n'
        conf = render("bunsan.toml", env.path("bunsan.toml"), values)
        return [env.bunsan_bin, "serve", "-c", conf]
    raise ValueError(f"unknown target {kind}")


def _stream_module():
    """The load_module line for NGINX's stream module, unless it is built in."""
    found = glob.glob("/usr/lib/nginx/modules/ngx_stream_module.so") + glob.glob(
        "/usr/lib*/nginx/modules/ngx_stream_module.so")
    return f"load_module {found[0]};" if found else ""

