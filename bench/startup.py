"""Startup to healthy, and SIGTERM to exit, of the real server on the embedded default.

    .venv/bin/python bench/startup.py [--runs 3]

Each run starts ``hypercorn --config hypercorn.toml agent_trio.app:app`` on a free
port (a fresh data directory on the first run of each pair, the same one reused on
the second), polls ``GET /health`` until it answers 200 with the graph ok, then
sends SIGTERM and waits for the exit. Prints a table and writes it to
its section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from _report import write_section
from _server import free_port, server_env, start_server


def one_run(data_dir: Path) -> tuple[float, float]:
    port = free_port()
    env = server_env(data_dir)
    began = time.perf_counter()
    process = start_server(data_dir, port, env, stderr=None)
    try:
        with httpx.Client(timeout=5) as client:
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"the server exited with {process.returncode} during startup")
                if time.perf_counter() - began > 120:
                    raise SystemExit("no healthy answer within 120 s")
                try:
                    response = client.get(f"http://127.0.0.1:{port}/health")
                except httpx.TransportError:
                    time.sleep(0.05)
                    continue
                if (
                    response.status_code == 200
                    and response.json()["checks"]["graph"]["status"] == "ok"
                ):
                    break
        healthy = time.perf_counter() - began
        stop = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        return healthy, time.perf_counter() - stop
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="pairs of runs (fresh, reused)")
    args = parser.parse_args()
    fresh: list[tuple[float, float]] = []
    reused: list[tuple[float, float]] = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            fresh.append(one_run(data))
            reused.append(one_run(data))
        print(f"run {i + 1}: fresh {fresh[-1][0]:.1f} s, reused {reused[-1][0]:.1f} s", flush=True)
    load = os.getloadavg()[0]
    rows = []
    for name, runs in (("fresh data dir", fresh), ("reused data dir", reused)):
        ups = [r[0] for r in runs]
        downs = [r[1] for r in runs]
        rows.append(
            f"| {name} | {len(runs)} | {statistics.median(ups):.1f} | {max(ups):.1f} "
            f"| {statistics.median(downs):.1f} | {max(downs):.1f} |"
        )
    table = "\n".join(
        [
            "| data directory | runs | start→healthy median (s) | max (s) "
            "| SIGTERM→exit median (s) | max (s) |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
    text = (
        "## Startup and shutdown\n\n"
        "Command: `.venv/bin/python bench/startup.py --runs "
        f"{args.runs}` (embedded engine + local embedding model, no configuration; "
        f"1-minute load average at the end: {load:.1f} on {os.cpu_count()} cores).\n\n"
        "Start→healthy is from spawning `hypercorn --config hypercorn.toml` to the first "
        "`/health` 200 with the graph ok (JVM start, driver, model load, schema). "
        "SIGTERM→exit is with no connection open.\n\n"
        f"{table}\n"
    )
    print(text)
    write_section("startup", text)


if __name__ == "__main__":
    main()
