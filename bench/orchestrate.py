#!/usr/bin/env python3
"""bunsan's benchmark orchestrator: starts the shared backend, runs the scenarios S1-S7
(and worker scaling) against HAProxy, NGINX, bunsan and the backend directly, rotating
their order over rounds, then writes a JSON file per run and a markdown table of ratios.

Run it through bench/run, which installs and builds what it needs first."""

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import procs, report, scenarios, targets, tools  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)

# Seconds per measured run (plus warm-up), connections held, bytes per TCP transfer.
FULL = {"s1": 8, "s2": 6, "s3": 8, "s4": 5, "s7": 6, "scale": 6, "warmup": 1, "idle": 10000,
        "tcp_bytes": 1 << 30, "tcp_repeats": 3, "s2_fractions": (0.25, 0.50, 0.75)}
SMOKE = {"s1": 1, "s2": 0.5, "s3": 1, "s4": 1, "s7": 1, "scale": 1, "warmup": 0, "idle": 200,
         "tcp_bytes": 64 << 20, "tcp_repeats": 1, "s2_fractions": (0.50,)}


def parse_args():
    """The command line: --smoke, --scenarios, --rounds, --out, and the binaries."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--smoke", action="store_true", help="tiny durations, 1 round; fail unless every scenario gives numbers")
    p.add_argument("--scenarios", default=",".join(scenarios.SCENARIOS), help="e.g. S1,S3 (SCALE = worker scaling)")
    p.add_argument("--rounds", type=int, default=None, help="rounds, order rotated each round (default 3; smoke 1)")
    p.add_argument("--out", default=os.path.join(BENCH_DIR, "results"), help="where the JSON and table go")
    p.add_argument("--nice", type=int, default=-10,
                   help="niceness of every benchmark process (default -10: other work on a shared machine disturbs "
                        "less; 0 leaves it; needs root to go below 0)")
    p.add_argument("--bunsan", required=True, help="the bunsan binary")
    p.add_argument("--bench-tools", required=True, help="the bunsan-bench binary")
    args = p.parse_args()
    args.scenarios = [s.strip().upper() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in scenarios.SCENARIOS]
    if unknown:
        p.error(f"unknown scenarios {unknown}; known: {', '.join(scenarios.SCENARIOS)}")
    args.rounds = args.rounds or (1 if args.smoke else 3)
    return args


def rotated(kinds, round_index):
    """The kinds in the order of this round: each round starts one further along."""
    k = round_index % len(kinds)
    return list(kinds[k:]) + list(kinds[:k])


def s2_rates(ctx, raw):
    """Fixed rates for S2: fractions of the slowest proxy's maximum (from S1 if it ran)."""
    if "S1" in raw:
        maxima = {k: statistics.median(r["rps"] for r in raw["S1"][k] if r)
                  for k in targets.PROXIES if any(raw["S1"].get(k, []))}
    else:
        maxima = scenarios.max_rates(ctx)
    slowest = min(maxima.values())
    log(f"S2: slowest proxy maximum {slowest:,.0f} req/s ({min(maxima, key=maxima.get)})")
    return [(f"{round(f * 100)}%", f * slowest) for f in ctx.s["s2_fractions"]]


def run_all(ctx, selected, rounds):
    """raw[scenario][kind] = [one dict per round, None where a round failed]."""
    raw = {}
    for name in selected:
        fn, kinds = scenarios.SCENARIOS[name]
        if name == "S2":
            ctx.s2_rates = s2_rates(ctx, raw)
        raw[name] = {k: [] for k in kinds}
        for r in range(rounds):
            for kind in rotated(kinds, r):
                raw[name][kind].append(_one(fn, ctx, name, kind, r, rounds))
    return raw


def _one(fn, ctx, name, kind, r, rounds):
    try:
        result = fn(ctx, kind)
    except Exception:  # one failed measurement must not lose the others
        log(f"[{name} {r + 1}/{rounds}] {kind}: FAILED\n{traceback.format_exc()}")
        return None
    log(f"[{name} {r + 1}/{rounds}] {kind}: {json.dumps(result)}")
    return result


def smoke_problems(raw, selected):
    """What a smoke run is missing: a scenario or target without numbers, or errors."""
    problems = []
    for name in selected:
        for kind, rounds in raw.get(name, {}).items():
            if not rounds or any(r is None for r in rounds):
                problems.append(f"{name}/{kind}: no result")
            elif _errors(rounds):
                problems.append(f"{name}/{kind}: {_errors(rounds)} request errors")
    for row in report.rows(raw):
        kinds = raw[row.scenario if row.scenario != "scaling" else "SCALE"]
        expected = set(kinds) - ({"direct"} if row.proxies_only else set())
        missing = expected - set(report.summarise(raw, row))
        if missing:
            problems.append(f"{row.scenario} '{row.label}': no number for {', '.join(sorted(missing))}")
    return problems


def _errors(value):
    """The sum of every "errors" count anywhere in a result (nested dicts and lists)."""
    if isinstance(value, list):
        return sum(_errors(v) for v in value)
    if not isinstance(value, dict):
        return 0
    return sum(v if k == "errors" else _errors(v) for k, v in value.items())


def write_outputs(args, raw, started, load_start):
    """Writes <out>/<timestamp>.json and .md; a full run of everything also updates RESULTS.md."""
    md, summary = report.table(raw)
    info = report.machine(REPO)
    info["loadavg_start"] = load_start
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    os.makedirs(args.out, exist_ok=True)
    doc = {"started": started.isoformat(), "smoke": args.smoke, "rounds": args.rounds,
           "scenarios": args.scenarios, "settings": SMOKE if args.smoke else FULL, "nice": args.nice,
           "machine": info, "raw": raw, "summary": summary}
    with open(os.path.join(args.out, f"{stamp}.json"), "w") as f:
        json.dump(doc, f, indent=1, default=str)
    with open(os.path.join(args.out, f"{stamp}.md"), "w") as f:
        f.write(md)
    print(md)
    if not args.smoke and set(args.scenarios) == set(scenarios.SCENARIOS):
        with open(os.path.join(BENCH_DIR, "RESULTS.md"), "w") as f:
            f.write(results_md(args, info, md, started))
        log("bench/RESULTS.md updated")


def results_md(args, info, md, started):
    """The text of bench/RESULTS.md for a full run."""
    return f"""# Benchmark results

The latest full run of `bench/run --rounds {args.rounds}` (see bench/README.md for what each
scenario measures and how). Cells are the median over rounds with the range in brackets;
ratios are of medians. For S2 the proxy columns are *added* latency (proxy − direct, same
rate, same round) and the direct column is direct's own latency.

- date: {started.strftime("%Y-%m-%d %H:%M UTC")}
- CPU: {info["cpu"]}, {info["cores"]} cores (proxy pinned to core 0; backend and load
  generator on core 1)
- kernel: {info["kernel"]}
- {info["haproxy"]}
- {info["nginx"]}
- bunsan commit {info["bunsan_commit"]}{" (with uncommitted changes)" if info["bunsan_dirty"] else ""}
- every benchmark process ran at niceness {args.nice}
- load generators: {info["wrk"]}; bunsan-bench loadgen for S2
- load average (1/5/15 min) at the start {info["loadavg_start"]}, at the end {info["loadavg_end"]}:
  the machine is shared with other builds, so expect noise beyond the ranges shown

{md}"""


def log(message):
    print(message, file=sys.stderr, flush=True)


def main():
    args = parse_args()
    procs.NICE = args.nice
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = report.loadavg()
    settings = dict(SMOKE if args.smoke else FULL)
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    run_dir = tempfile.mkdtemp(prefix="bunsan-bench-", dir=shm)
    os.chmod(run_dir, 0o755)
    limit = tools.raise_fd_limit()
    most = targets.haproxy_maxconn(limit) - 200
    if settings["idle"] > most:
        settings["idle"] = most
        log(f"open-file limit {limit}: S5 holds {most} connections (HAProxy needs two descriptors each)")
    env = targets.Env(run_dir, os.path.abspath(args.bunsan), os.path.abspath(args.bench_tools),
                      settings["tcp_bytes"], limit)
    tools.write_scripts(env)
    backend = targets.Backend(env)
    try:
        backend.start()
        ctx = scenarios.Context(env, backend, settings)
        raw = run_all(ctx, args.scenarios, args.rounds)
    finally:
        backend.stop()
        procs.stop_all()
    write_outputs(args, raw, started, load_start)
    problems = smoke_problems(raw, args.scenarios)
    if problems:
        log(f"logs kept in {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    for problem in problems:
        log(f"PROBLEM: {problem}")
    return 1 if problems and args.smoke else 0


if __name__ == "__main__":
    sys.exit(main())
