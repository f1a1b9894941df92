"""Run the embedded graph engine (ArcadeDB with its Bolt plugin) as a child process."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

from agent_trio._errors import EngineError
from agent_trio.engine._command import Ports, build_command
from agent_trio.engine._config import EngineConfig
from agent_trio.engine._credentials import load_or_create_password
from agent_trio.engine._info import EngineInfo
from agent_trio.engine._layout import DATABASE, USER, EngineLayout
from agent_trio.engine._lock import hold_data_dir
from agent_trio.engine._output import EngineOutput, pump_output
from agent_trio.engine._ports import LOOPBACK, pick_free_ports
from agent_trio.engine._process import ChildProcess
from agent_trio.engine._ready import PROBE_TIMEOUT, Readiness, probe
from agent_trio.engine._runtime import Runtime, find_runtime

__all__ = ["run_embedded_engine"]

_log = logging.getLogger("agent_trio.engine")

#: one start, plus two more if another process takes a port we picked
_START_ATTEMPTS = 3
_POLL_INTERVAL = 0.1
#: after the engine exits, how long its last output may take to arrive
_DRAIN_SECONDS = 1.0
#: added to the stop grace for the shielded cleanup: SIGKILL, reaping, draining
_CLEANUP_MARGIN = 8.0


async def run_embedded_engine(
    config: EngineConfig,
    *,
    task_status: trio.TaskStatus[EngineInfo] = trio.TASK_STATUS_IGNORED,
    _extra_jvm_args: Sequence[str] = (),
    _java: Path | None = None,
) -> None:
    """Run the engine on ``config.data_dir`` until cancelled.

    ``task_status.started(EngineInfo)`` is called once the database exists and the
    Bolt port answers a Bolt handshake. Raises :class:`DataDirLocked` when another
    process runs an engine on the same directory, and :class:`EngineError` (with the
    tail of the engine's output) when it cannot start within
    ``config.start_timeout`` or dies. Whatever ends this function stops the
    engine: SIGTERM, ``config.stop_grace``, SIGKILL. If our process is
    killed, the kernel kills the engine.

    ``_extra_jvm_args`` and ``_java`` exist for tests (a bad flag, a missing runtime).
    """
    runtime = find_runtime() if _java is None else Runtime(_java, "")
    layout = EngineLayout.create(config.data_dir)
    with hold_data_dir(layout.data_dir, layout.lock_file):
        password = load_or_create_password(layout.password_file, layout.users_file)
        layout.write_logging_config()
        start = _Start(config, layout, password, trio.current_time())
        for attempt in range(1, _START_ATTEMPTS + 1):
            ports = _ports(config)
            command = build_command(
                runtime,
                layout,
                ports,
                host=config.host,
                heap_mb=config.heap_mb,
                extra_jvm_args=_extra_jvm_args,
            )
            failure = await _run_once(start, command, ports, task_status)
            picked = not (config.bolt_port and config.http_port)
            if not (failure.retry and picked and attempt < _START_ATTEMPTS):
                raise failure.error
            _log.warning("a port was taken while the engine started; retrying with new ports")


def _ports(config: EngineConfig) -> Ports:
    """The configured ports; free ones where the configuration says 0."""
    free = iter(pick_free_ports(2))
    return Ports(http=config.http_port or next(free), bolt=config.bolt_port or next(free))


def _connect_host(host: str) -> str:
    """Where we reach listeners bound to ``host``: loopback for the wildcards."""
    return LOOPBACK if host in ("0.0.0.0", "::", "") else host


@dataclass(frozen=True)
class _Start:
    config: EngineConfig
    layout: EngineLayout
    password: str
    began: float

    @property
    def deadline(self) -> float:
        return self.began + self.config.start_timeout


@dataclass(frozen=True)
class _Failure:
    error: EngineError
    retry: bool = False


@dataclass(frozen=True)
class _Reason:
    """Why the engine is not running; the output tail is added once it is stopped."""

    text: str
    retry: bool = False


async def _run_once(
    start: _Start,
    command: list[str],
    ports: Ports,
    task_status: trio.TaskStatus[EngineInfo],
) -> _Failure:
    """Start one engine process, serve until it dies or we are cancelled, stop it."""
    _log.debug("starting the engine: %s", shlex.join(command))
    try:
        child = ChildProcess.spawn(command, cwd=start.layout.root)
    except OSError as exc:
        return _Failure(EngineError(f"could not run the engine's Java runtime {command[0]}: {exc}"))
    output = EngineOutput()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump_output, child.output_fd, output)
        try:
            reason = await _supervise(start, child, output, ports, task_status)
        finally:
            grace = start.config.stop_grace
            with trio.CancelScope(
                shield=True, deadline=trio.current_time() + grace + _CLEANUP_MARGIN
            ):
                await _stop(child, output, grace)
            nursery.cancel_scope.cancel()
    return _Failure(EngineError(f"{reason.text}\n{output.describe()}"), retry=reason.retry)


async def _stop(child: ChildProcess, output: EngineOutput, grace: float) -> None:
    try:
        code = await child.stop(grace)
    finally:
        child.close()
    with trio.move_on_after(_DRAIN_SECONDS):
        await output.closed.wait()
    _log.info("engine pid %d stopped (exit status %s)", child.pid, code)


async def _supervise(
    start: _Start,
    child: ChildProcess,
    output: EngineOutput,
    ports: Ports,
    task_status: trio.TaskStatus[EngineInfo],
) -> _Reason:
    """Wait until the engine is ready, report it, then wait for it to die."""
    host = _connect_host(start.config.host)
    in_url = f"[{host}]" if ":" in host else host
    info = EngineInfo(
        bolt_uri=f"bolt://{in_url}:{ports.bolt}",
        http_url=f"http://{in_url}:{ports.http}",
        user=USER,
        password=start.password,
        database=DATABASE,
        pid=child.pid,
        password_file=start.layout.password_file,
    )
    try:
        with trio.fail_at(start.deadline):
            reason = await _wait_ready(child, output, info, ports, host)
    except trio.TooSlowError:
        timeout = start.config.start_timeout
        return _Reason(
            f"the engine did not become ready within {timeout:g} s (ENGINE_START_TIMEOUT_SECONDS)"
        )
    except EngineError as exc:
        return _Reason(str(exc))
    if reason is not None:
        return reason
    _log.info(
        "engine ready in %.1f s: pid %d, %s, %s",
        trio.current_time() - start.began,
        child.pid,
        info.bolt_uri,
        info.http_url,
    )
    task_status.started(info)
    code = await child.wait()
    return _Reason(f"the engine (pid {child.pid}) exited unexpectedly with status {code}")


async def _wait_ready(
    child: ChildProcess, output: EngineOutput, info: EngineInfo, ports: Ports, host: str
) -> _Reason | None:
    """Poll until ready (``None``) or until the start has visibly failed."""
    auth = (info.user, info.password)
    async with httpx.AsyncClient(
        base_url=info.http_url, auth=auth, timeout=PROBE_TIMEOUT
    ) as client:
        while True:
            if (code := child.returncode) is not None:
                return _Reason(f"the engine exited with status {code} while starting")
            if output.start_failed:
                return _Reason("the engine failed to start", retry=output.port_taken)
            if await probe(client, host, ports.bolt, info.database) is Readiness.READY:
                return None
            await trio.sleep(_POLL_INTERVAL)
