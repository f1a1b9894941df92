"""The embedded engine: ready means ready, one engine per data directory, and the
engine never outlives the process that started it."""

from __future__ import annotations

import fcntl
import ipaddress
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from agent_trio import DataDirLocked, EngineError
from agent_trio.engine import EngineConfig, EngineInfo, run_embedded_engine
from agent_trio.engine._bolt import bolt_handshake
from agent_trio.engine._credentials import load_or_create_password
from agent_trio.engine._output import TAIL_LINES, EngineOutput
from agent_trio.engine._ports import pick_free_ports
from agent_trio.engine._process import ChildProcess

ENGINE_LOGGER = "agent_trio.engine"


# -- helpers -------------------------------------------------------------------


def _config(tmp_path: Path, **overrides: Any) -> EngineConfig:
    return EngineConfig(data_dir=tmp_path / "data", **overrides)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie counts as gone."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat_line.rsplit(")", 1)[1].split()[0] != "Z"


def _age_seconds(pid: int) -> float:
    started_ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - started_ticks / os.sysconf("SC_CLK_TCK")


def _engine_pids(data_dir: Path) -> list[int]:
    """Live processes whose command line mentions ``data_dir`` (engines started on it)."""
    needle = str(data_dir.resolve()).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and b"java" in cmdline and _alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def _assert_unlocked(data_dir: Path) -> None:
    fd = os.open(data_dir / "engine.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held
    finally:
        os.close(fd)


def _listening(pid: int) -> set[tuple[str, int]]:
    """The (address, port) pairs on which process ``pid`` listens for TCP."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:  # closed since the listing: the JVM opens and closes files
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                found.add((_decode_address(address), int(port, 16)))
    return found


def _decode_address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    # /proc/net/tcp* print each 32-bit word in host (little-endian) order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _all_tasks() -> set[trio.lowlevel.Task]:
    tasks: set[trio.lowlevel.Task] = set()
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        if task is not None:
            tasks.add(task)
            pending.extend(t for n in task.child_nurseries for t in n.child_tasks)
    return tasks


async def _wait_gone(pid: int, *, seconds: float) -> None:
    """Wait up to ``seconds`` for any process ``pid`` (not only a child) to exit."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        with trio.move_on_after(seconds):
            await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def _select_one(info: EngineInfo, password: str | None = None) -> httpx.Response:
    auth = (info.user, password if password is not None else info.password)
    async with httpx.AsyncClient(base_url=info.http_url, auth=auth, timeout=10) as client:
        return await client.post(
            f"/api/v1/command/{info.database}",
            json={"language": "sql", "command": "SELECT 1 AS one"},
        )


def _bolt_port(info: EngineInfo) -> int:
    return int(info.bolt_uri.rsplit(":", 1)[1])


def _http_port(info: EngineInfo) -> int:
    return int(info.http_url.rsplit(":", 1)[1])


# -- the session's engine ------------------------------------------------------


@pytest.mark.engine
async def test_ready_engine_answers_on_loopback_only(engine_info: EngineInfo) -> None:
    assert engine_info.user == "root"
    assert engine_info.database == "agent"
    assert engine_info.password not in repr(engine_info)

    answer = await _select_one(engine_info)
    assert answer.status_code == 200
    assert answer.json()["result"] == [{"one": 1}]
    refused = await _select_one(engine_info, password="not-the-password")
    assert refused.status_code == 403

    major, _minor = await bolt_handshake("127.0.0.1", _bolt_port(engine_info))
    assert major >= 4
    # Only our two listeners, both on loopback: no HTTPS, Postgres, Redis or HA port.
    assert _listening(engine_info.pid) == {
        ("127.0.0.1", _http_port(engine_info)),
        ("127.0.0.1", _bolt_port(engine_info)),
    }


@pytest.mark.engine
async def test_engine_outlives_trios_idle_worker_threads(engine_info: EngineInfo) -> None:
    # The kernel's parent-death signal follows the thread that forked. Trio's idle
    # worker threads exit after 10 s; an engine forked from one would be dead by now.
    await trio.sleep(max(0.0, 16 - _age_seconds(engine_info.pid)))
    assert _age_seconds(engine_info.pid) > 15
    assert _alive(engine_info.pid)
    assert (await _select_one(engine_info)).status_code == 200


# -- engines of their own ------------------------------------------------------


@pytest.mark.engine
async def test_one_engine_per_data_dir_and_a_clean_stop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger=ENGINE_LOGGER)
    config = _config(tmp_path)
    data_dir = config.data_dir
    tasks_before, fds_before = _all_tasks(), _open_fds()

    async with trio.open_nursery() as nursery:
        first: EngineInfo = await nursery.start(run_embedded_engine, config)
        password_file = data_dir / "engine-password"
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        assert password_file.read_text() == first.password
        assert (await _select_one(first)).status_code == 200

        with pytest.raises(DataDirLocked) as locked:
            await run_embedded_engine(config)
        message = str(locked.value)
        assert str(data_dir.resolve()) in message
        assert f"process {os.getpid()}" in message
        assert "AGENT_DATA_DIR" in message
        nursery.cancel_scope.cancel()

    assert not _alive(first.pid)
    _assert_unlocked(data_dir)
    assert _all_tasks() == tasks_before
    assert _open_fds() == fds_before
    assert "Listening for incoming BOLT connections" in caplog.text

    # Again on the same directory: the same password, and it still opens the engine,
    # although the Bolt port first picked is taken by the time the engine binds it.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([[pick_free_ports(1)[0], taken]])
        monkeypatch.setattr(
            "agent_trio.engine._run.pick_free_ports",
            lambda n: next(picks, None) or pick_free_ports(n),
        )

        async with trio.open_nursery() as nursery:
            second: EngineInfo = await nursery.start(run_embedded_engine, config)
            assert second.password == first.password
            assert _bolt_port(second) != taken
            assert (await _select_one(second)).status_code == 200
            nursery.cancel_scope.cancel()

    assert "retrying with new ports" in caplog.text
    assert not _alive(second.pid)
    assert _engine_pids(data_dir) == []


@pytest.mark.engine
async def test_failed_starts_explain_and_leave_nothing(tmp_path: Path) -> None:
    config = _config(tmp_path)
    began = trio.current_time()
    with pytest.raises(EngineError) as bad_flag:
        await run_embedded_engine(config, _extra_jvm_args=["-XX:+NoSuchEngineOption"])
    # explained when the JVM exits, not when the start deadline runs out
    assert trio.current_time() - began < config.start_timeout
    assert "exited with status 1 while starting" in str(bad_flag.value)
    assert "Unrecognized VM option 'NoSuchEngineOption'" in str(bad_flag.value)

    no_java = tmp_path / "no-such-java"
    with pytest.raises(EngineError, match="could not run the engine's Java runtime") as missing:
        await run_embedded_engine(config, _java=no_java)
    assert str(no_java) in str(missing.value)

    impatient = _config(tmp_path, start_timeout=0.5)
    with pytest.raises(EngineError, match=r"did not become ready within 0\.5 s") as slow:
        await run_embedded_engine(impatient)
    tail = str(slow.value).split("\n", 1)[1]
    assert tail.startswith(("last engine output:", "(the engine printed nothing)"))

    assert _engine_pids(config.data_dir) == []
    _assert_unlocked(config.data_dir)


@pytest.mark.engine
@pytest.mark.slow
async def test_engine_dies_when_its_parent_is_killed(tmp_path: Path) -> None:
    script = (
        "import sys, trio\n"
        "from pathlib import Path\n"
        "from agent_trio.engine import EngineConfig, run_embedded_engine\n"
        "async def main():\n"
        "    config = EngineConfig(data_dir=Path(sys.argv[1]))\n"
        "    async with trio.open_nursery() as nursery:\n"
        "        info = await nursery.start(run_embedded_engine, config)\n"
        "        print(info.pid, flush=True)\n"
        "trio.run(main)\n"
    )
    data_dir = tmp_path / "data"
    parent = await trio.lowlevel.open_process(
        [sys.executable, "-c", script, str(data_dir)], stdout=subprocess.PIPE
    )
    assert parent.stdout is not None
    try:
        with trio.fail_after(90):
            line = b""
            while not line.endswith(b"\n"):
                chunk = await parent.stdout.receive_some()
                assert chunk, "the parent exited before its engine was ready"
                line += chunk
        engine_pid = int(line)
        assert _alive(engine_pid)
    finally:
        parent.kill()  # SIGKILL: no cleanup code of ours runs
        await parent.wait()
        await parent.stdout.aclose()

    await _wait_gone(engine_pid, seconds=10)
    assert not _alive(engine_pid)
    assert _engine_pids(data_dir) == []
    _assert_unlocked(data_dir)


# -- the pieces, without an engine ---------------------------------------------


def test_children_die_with_the_thread_that_started_them(tmp_path: Path) -> None:
    children: list[ChildProcess] = []

    async def spawn() -> None:
        child = ChildProcess.spawn(["sh", "-c", "echo up; exec sleep 60"], cwd=tmp_path)
        children.append(child)
        # "up": the child runs the command, so the parent-death signal is set by now
        async with trio.lowlevel.FdStream(child.output_fd) as output:
            assert await output.receive_some() == b"up\n"
        child.close()

    thread = threading.Thread(target=trio.run, args=(spawn,))
    thread.start()
    thread.join()
    (child,) = children
    deadline = time.monotonic() + 60  # a bound against a hang: the poll ends at the kill
    while child.returncode is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert child.returncode == -signal.SIGKILL


async def test_the_command_runs_under_setpriv_not_a_preexec_fn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []
    real_popen = subprocess.Popen

    def recording_popen(argv: Any, **kwargs: Any) -> Any:
        calls.append((argv, kwargs))
        return real_popen(argv, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    child = ChildProcess.spawn(["sh", "-c", "echo $$; exec sleep 60"], cwd=tmp_path)
    try:
        async with trio.lowlevel.FdStream(child.output_fd) as output:
            # the guard steps exec'd into the command: it runs as the pid we were given
            assert await output.receive_some() == f"{child.pid}\n".encode()
        ((argv, kwargs),) = calls
        assert Path(argv[0]).name == "setpriv"
        assert argv[1:3] == ["--pdeathsig", "KILL"]
        assert argv[-3:] == ["sh", "-c", "echo $$; exec sleep 60"]
        assert kwargs.get("preexec_fn") is None
    finally:
        await child.stop(grace=1)
        child.close()


def test_without_setpriv_the_engine_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_trio.engine import _process

    monkeypatch.setattr(_process.shutil, "which", lambda _name: None)
    monkeypatch.setattr(_process, "_SETPRIV_FALLBACKS", ())
    with pytest.raises(EngineError, match=r"needs setpriv \(util-linux\).*NEO4J_URI"):
        ChildProcess.spawn(["true"], cwd=tmp_path)


async def test_stop_escalates_to_sigkill_after_the_grace(tmp_path: Path) -> None:
    ignores_term = "trap '' TERM; echo up; while :; do sleep 0.05; done"
    child = ChildProcess.spawn(["sh", "-c", ignores_term], cwd=tmp_path)
    try:
        async with trio.lowlevel.FdStream(child.output_fd) as output:
            assert await output.receive_some() == b"up\n"  # the trap is in place
            began = trio.current_time()
            with trio.fail_after(60):  # a bound against a hang: SIGKILL ends it
                assert await child.stop(grace=0.3) == -signal.SIGKILL
            assert trio.current_time() - began >= 0.3  # the grace was given
            assert await child.stop(grace=0.3) == -signal.SIGKILL  # idempotent
    finally:
        child.close()


async def test_bolt_handshake_sends_magic_and_proposals() -> None:
    received: list[bytes] = []

    async def bolt_server(stream: trio.SocketStream) -> None:
        data = b""
        while len(data) < 20:
            data += await stream.receive_some(20 - len(data))
        received.append(data)
        await stream.send_all(answers.pop(0))
        await stream.aclose()

    answers = [b"\x00\x00\x04\x05", b"\x00\x00\x00\x00", b""]
    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(partial(trio.serve_tcp, bolt_server, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        assert await bolt_handshake("127.0.0.1", port) == (5, 4)
        with pytest.raises(ValueError, match="accepts none of our versions"):
            await bolt_handshake("127.0.0.1", port)
        with pytest.raises(OSError, match="closed the connection"):
            await bolt_handshake("127.0.0.1", port)
        nursery.cancel_scope.cancel()
    assert received[0][:4] == b"\x60\x60\xb0\x17"
    assert received[0][4:8] == b"\x00\x04\x04\x05"  # 5.4 down to 5.0 first


def _record(level: str, logger: str, message: str, **extra: str) -> str:
    return json.dumps({"level": level, "logger": logger, "message": message, **extra})


def test_engine_output_levels_markers_and_tail(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=ENGINE_LOGGER)
    output = EngineOutput()
    output.feed("WARNING: Using incubator modules: jdk.incubator.vector")
    output.feed(_record("WARNING", "com.arcadedb.bolt.BoltNetworkListener", "Port busy"))
    output.feed(
        _record(
            "SEVERE",
            "com.arcadedb.bolt.BoltNetworkListener",
            "Unable to listen on $ANSI{green 127.0.0.1:7}",
            exception="ServerException: boom\n\tat Bolt.listen(Bolt.java:1)\n",
        )
    )
    output.feed('Exception in thread "main" com.arcadedb.server.ServerException: boom')
    output.feed("\tat com.arcadedb.server.ArcadeDBServer.main(ArcadeDBServer.java:371)")
    output.feed("Shutting down ArcadeDB Server...")
    output.feed(_record("FINE", "com.arcadedb.Engine", "detail"))

    assert output.start_failed
    assert output.port_taken
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "WARNING: Using incubator modules: jdk.incubator.vector"),
        (logging.WARNING, "[BoltNetworkListener] Port busy"),
        (
            logging.ERROR,
            "[BoltNetworkListener] Unable to listen on 127.0.0.1:7\n"
            "ServerException: boom\n\tat Bolt.listen(Bolt.java:1)",
        ),
        (logging.ERROR, 'Exception in thread "main" com.arcadedb.server.ServerException: boom'),
        (logging.ERROR, "\tat com.arcadedb.server.ArcadeDBServer.main(ArcadeDBServer.java:371)"),
        (logging.INFO, "Shutting down ArcadeDB Server..."),
        (logging.DEBUG, "[Engine] detail"),
    ]
    assert "\tat Bolt.listen(Bolt.java:1)" in output.tail  # one tail entry per line
    for n in range(2 * TAIL_LINES):
        output.feed(f"line {n}")
    assert list(output.tail) == [f"line {n}" for n in range(TAIL_LINES, 2 * TAIL_LINES)]
    assert output.describe().endswith(f"line {2 * TAIL_LINES - 1}")


def test_password_file_is_private_and_checked(tmp_path: Path) -> None:
    password_file, users_file = tmp_path / "engine-password", tmp_path / "users.jsonl"
    password = load_or_create_password(password_file, users_file)
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert len(password) >= 32
    password_file.chmod(0o644)
    assert load_or_create_password(password_file, users_file) == password
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600

    password_file.write_text("short")
    with pytest.raises(EngineError, match="is not valid"):
        load_or_create_password(password_file, users_file)

    password_file.unlink()
    users_file.write_text("{}")
    with pytest.raises(EngineError, match=r"password file .* is missing") as lost:
        load_or_create_password(password_file, users_file)
    assert f"delete {users_file}" in str(lost.value)
    assert not password_file.exists()
