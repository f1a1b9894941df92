"""Schemathesis against the real server's own /openapi.json: every route, every check.

    .venv/bin/python bench/fuzz.py [--max-examples 300] [--seed 20261201] [--write]

Starts ``hypercorn --config hypercorn.toml agent_trio.app:app`` with no
configuration (the embedded engine, the local embedding model, extractive answers,
the sample corpus ingested at start) on a fresh data directory, waits until it is
healthy, then runs ``schemathesis run URL/openapi.json --checks all`` with up to
``--max-examples`` cases per operation and phase (chat and its stream included).
The suite runs the same with 8 examples on a test app; this is the long run. The
outcome is schemathesis's summary: the cases it sent, and every failure it found
(none expected: no 5xx, every answer as documented).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _report import write_section
from _server import ROOT, free_port, machine, server_env, start_server

CORPUS = ROOT / "examples" / "corpus"


def wait_healthy(process: subprocess.Popen[bytes], url: str, within: float) -> None:
    began = time.monotonic()
    with httpx.Client(timeout=10) as client:
        while time.monotonic() - began < within:
            if process.poll() is not None:
                raise SystemExit(f"the server exited with {process.returncode}")
            try:
                response = client.get(f"{url}/health")
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
    raise SystemExit(f"the server was not healthy within {within:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agent-trio-fuzz-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        port = free_port()
        env = server_env(data, INGEST_ON_START=str(CORPUS))
        errors = (Path(tmp) / "server.log").open("wb")
        process = start_server(data, port, env, stderr=errors)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(process, url, 300)
            began = time.monotonic()
            command = [
                *(sys.executable, "-m", "schemathesis.cli", "--no-color"),
                *("run", f"{url}/openapi.json"),
                *("--checks", "all", "--seed", str(args.seed)),
                *("--max-examples", str(args.max_examples)),
                *("--workers", "1", "--request-timeout", "120"),
            ]
            result = subprocess.run(command, cwd=tmp, capture_output=True, text=True, check=False)
            seconds = time.monotonic() - began
        finally:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
    output = result.stdout + result.stderr
    print(output)
    summary = output.rsplit("SUMMARY", 1)[-1].strip().lstrip("=").strip()
    tested = re.search(r"Tested: .*", output)
    cases = re.search(r"Test cases:\s*\n\s*(.*)", output)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = f"""## Schema fuzzing of the running server

Command: `.venv/bin/python bench/fuzz.py --max-examples {args.max_examples} --seed {args.seed}
--write` ({seconds:.0f} s of fuzzing; {machine(shared=True)}; load average after: {load}).

The real server with no configuration (embedded engine, local model, extractive answers,
the sample corpus), and `schemathesis run URL/openapi.json --checks all` against the
server's own document: every operation, chat and its stream included. Exit status
{result.returncode} ({"no failure" if result.returncode == 0 else "failures found"}).

    {tested.group(0) if tested else "Tested: (not reported)"}
    Test cases: {cases.group(1) if cases else "(not reported)"}

Schemathesis's summary:

""" + "\n".join("    " + line for line in summary.splitlines())
    if args.write:
        write_section("fuzz", text)
    raise SystemExit(result.returncode)


if __name__ == "__main__":
    main()
