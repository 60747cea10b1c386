"""Metrics, request ids, JSON request logs and readiness."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.client
import io
import json
import logging
import os
import secrets
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from alembic import command
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest, values
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from app.api.observability import (
    HELD_LINES_LIMIT,
    MULTIPROCESS_DIR_VARIABLE,
    CurrentStderrHandler,
    JsonFormatter,
    JsonLineHandler,
    Metrics,
    access_logger,
    flush_log_handlers,
    log_request,
    server_log_config,
)
from app.db.schema import alembic_config
from app.main import create_app, update_gauges
from app.settings import Settings
from app.state import AppState
from tests.conftest import ADMIN_TOKEN, BASE_URL, make_settings
from tests.factories import ClientHandle, ServiceHandle, par_params
from tests.faults import support


def metric_value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_pushes_are_counted_by_outcome_and_error(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    """Repeated requests add up in the same series (the metrics remember their label children)."""
    for _ in range(3):
        await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
    await client.post(service.par_path, data=par_params(basic_client, scope="admin"), headers=basic_client.basic())
    text = (await client.get("/metrics")).text
    labels = {"operation": "push", "service": str(service.id)}
    assert metric_value(text, "par_operations_total", **labels, outcome="created") == 3
    assert metric_value(text, "par_operations_total", **labels, outcome="bad_request", error="invalid_scope") == 1
    route = "/services/{service_id}/par"
    assert metric_value(text, "par_request_duration_seconds_count", route=route, status="201") == 3
    assert metric_value(text, "par_request_duration_seconds_count", route=route, status="400") == 1


async def test_every_route_has_its_own_latency_label(client: httpx.AsyncClient) -> None:
    """The documentation routes, which FastAPI does not record in the scope, too; a wrong method is its
    route's 405; only a path no route takes is "unmatched"."""
    for path in ("/docs", "/redoc", "/openapi.json", "/metrics", "/healthz", "/no-such-path"):
        await client.get(path)
    await client.delete("/healthz")
    text = (await client.get("/metrics")).text
    for route in ("/docs", "/redoc", "/openapi.json", "/metrics", "/healthz"):
        assert metric_value(text, "par_request_duration_seconds_count", route=route, status="200") >= 1, route
    assert metric_value(text, "par_request_duration_seconds_count", route="/healthz", status="405") == 1
    assert metric_value(text, "par_request_duration_seconds_count", route="unmatched", status="404") == 1


@given(st.floats(min_value=0, max_value=2**32, allow_nan=False) | st.integers(0, 2**32).map(lambda s: s + 0.9999995))
def test_log_timestamps_read_as_datetime_writes_them(created: float) -> None:
    """The formatter's per-second shortcut writes what datetime.isoformat(timespec="milliseconds") does,
    rounding included."""
    record = logging.LogRecord("par_server", logging.INFO, __file__, 1, "m", (), None)
    record.created = created
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert json.loads(JsonFormatter().format(record))["ts"] == expected


def test_an_exception_is_one_line_with_its_traceback_but_no_message() -> None:
    """Exception messages can carry parameter values (a driver's bound parameters, a validation error's
    input): the line names each exception of the chain by its type alone."""
    parameter = "-".join(("client_secret", secrets.token_hex(8)))  # not in the source the traceback quotes

    def fail(value: str) -> None:
        try:
            raise KeyError(value)
        except KeyError as error:
            raise RuntimeError(value) from error

    try:
        fail(parameter)
    except RuntimeError as error:
        record = logging.LogRecord(
            "uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application", (), None
        )
        record.exc_info = (type(error), error, error.__traceback__)
    text = JsonFormatter().format(record)
    assert "\n" not in text and parameter not in text
    line = json.loads(text)
    assert (line["level"], line["logger"], line["exception"]) == ("error", "uvicorn.error", "RuntimeError")
    traceback = line["traceback"]
    assert traceback.startswith("Traceback (most recent call last):\n") and traceback.endswith("\nRuntimeError\n")
    assert "\nKeyError\n\nThe above exception was the direct cause of the following exception:\n" in traceback
    assert ", in fail\n" in traceback


def test_a_line_without_an_exception_has_no_traceback() -> None:
    record = logging.LogRecord("par_server", logging.ERROR, __file__, 1, "m", (), (None, None, None))
    assert set(json.loads(JsonFormatter().format(record))) == {"ts", "level", "logger", "msg"}


async def test_request_id_is_echoed_or_assigned(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz", headers={"X-Request-Id": "abc-123"})).headers["x-request-id"] == "abc-123"
    assigned = (await client.get("/healthz", headers={"X-Request-Id": "bad id!"})).headers["x-request-id"]
    assert assigned != "bad id!" and len(assigned) == 32


async def test_request_log_line_has_outcome_and_no_secrets(
    client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="par_server.request")
    state = "secret-state-value"
    await client.post(service.par_path, data=par_params(basic_client, state=state), headers=basic_client.basic())
    [record] = [r for r in caplog.records if r.name == "par_server.request" and "push" in str(r.__dict__)]
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "request" and line["status"] == 201 and line["route"] == "/services/{service_id}/par"
    assert (line["operation"], line["outcome"], line["service_id"], line["client_id"]) == (
        "push",
        "created",
        service.id,
        basic_client.id,
    )
    assert line["request_id"] and line["duration_ms"] >= 0
    assert state not in JsonFormatter().format(record) and str(basic_client.secret) not in json.dumps(line)


REQUEST_FIELDS = {
    "request_id": "r-1",
    "method": "POST",
    "route": "/services/{service_id}/par",
    "status": 201,
    "duration_ms": 1.25,
    "operation": "push",
    "service_id": uuid.UUID(int=7),  # not a JSON type: written as str() writes it
    "outcome": "created",
    "error": 'caf\u00e9 "x"',
}


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, JsonLineHandler]]:
    """A logger of its own writing JSON lines to one handler, as `par-server serve` configures
    ``par_server`` (no propagation). In a logger hierarchy of its own: pytest's log capture adds its
    handler to every logger of logging's own as a test starts, and log_request would then go through logging."""
    log = logging.Manager(logging.RootLogger(logging.WARNING)).getLogger("par_server_test.request")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = JsonLineHandler(io.StringIO())
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    yield log, handler
    log.removeHandler(handler)


def test_the_request_line_written_directly_is_the_line_logging_writes(
    json_log: tuple[logging.Logger, JsonLineHandler],
) -> None:
    """Written without a LogRecord (only our JSON handler on the way) or through logging (a filter on
    the way), a request line has the same fields in the same order with the same values."""
    log, handler = json_log
    log_request(log, REQUEST_FIELDS)
    handler.addFilter(lambda _record: True)
    log_request(log, REQUEST_FIELDS)
    direct, logged = handler.stream.getvalue().splitlines()
    assert handler.stream.getvalue().endswith("\n")
    direct_line, logged_line = json.loads(direct), json.loads(logged)
    assert list(direct_line) == list(logged_line) == ["ts", "level", "logger", "msg", *REQUEST_FIELDS]
    assert {**direct_line, "ts": ""} == {**logged_line, "ts": ""}
    assert (direct_line["level"], direct_line["logger"], direct_line["msg"]) == ("info", log.name, "request")
    assert direct_line["service_id"] == str(uuid.UUID(int=7)) and "caf\\u00e9" in direct
    assert datetime.fromisoformat(direct_line["ts"]).isoformat(timespec="milliseconds") == direct_line["ts"]


class RecordingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_request_line_honours_levels_and_reaches_other_handlers_through_logging(
    json_log: tuple[logging.Logger, JsonLineHandler],
) -> None:
    log, handler = json_log
    log.setLevel(logging.WARNING)
    log_request(log, REQUEST_FIELDS)
    log.setLevel(logging.INFO)
    handler.setLevel(logging.WARNING)
    log_request(log, REQUEST_FIELDS)
    assert handler.stream.getvalue() == ""
    handler.setLevel(logging.NOTSET)
    other = RecordingHandler()
    log.addHandler(other)
    log_request(log, REQUEST_FIELDS)
    log.removeHandler(other)
    [record] = other.records
    assert (record.name, record.getMessage(), record.__dict__["fields"]) == (log.name, "request", REQUEST_FIELDS)
    assert json.loads(handler.stream.getvalue())["status"] == 201


def test_the_request_line_written_directly_goes_to_the_current_stderr(
    json_log: tuple[logging.Logger, JsonLineHandler], capsys: pytest.CaptureFixture[str]
) -> None:
    log, handler = json_log
    log.removeHandler(handler)
    stderr_handler = CurrentStderrHandler()
    stderr_handler.setFormatter(JsonFormatter())
    log.addHandler(stderr_handler)
    try:
        log_request(log, REQUEST_FIELDS)
    finally:
        log.removeHandler(stderr_handler)
    [line] = capsys.readouterr().err.splitlines()
    assert json.loads(line)["request_id"] == "r-1"


def written(handler: JsonLineHandler) -> list[str]:
    """The request ids of the lines on the handler's stream, in order (the message of any other record)."""
    lines = [json.loads(line) for line in handler.stream.getvalue().splitlines()]
    return [line.get("request_id", line["msg"]) for line in lines]


def log_line(log: logging.Logger, request_id: str) -> None:
    log_request(log, {**REQUEST_FIELDS, "request_id": request_id})


async def test_request_lines_on_a_loop_are_written_together_at_its_next_turn(
    json_log: tuple[logging.Logger, JsonLineHandler],
) -> None:
    log, handler = json_log
    log_line(log, "r-1")
    log_line(log, "r-2")
    assert written(handler) == []
    await asyncio.sleep(0)
    assert written(handler) == ["r-1", "r-2"]
    log_line(log, "r-3")  # held again, and written at the next turn again
    await asyncio.sleep(0)
    assert written(handler) == ["r-1", "r-2", "r-3"]


async def test_any_other_record_comes_after_the_request_lines_held(
    json_log: tuple[logging.Logger, JsonLineHandler],
) -> None:
    log, handler = json_log
    log_line(log, "r-1")
    log.warning("after r-1")  # through logging: written at once, after the line held
    assert written(handler) == ["r-1", "after r-1"]
    log_line(log, "r-2")
    await asyncio.sleep(0)
    assert written(handler) == ["r-1", "after r-1", "r-2"]


async def test_held_lines_are_written_by_a_flush(json_log: tuple[logging.Logger, JsonLineHandler]) -> None:
    """What the app's lifespan does as it ends (flush_log_handlers), and logging.shutdown at exit."""
    log, handler = json_log
    log_line(log, "r-1")
    flush_log_handlers(log)
    assert written(handler) == ["r-1"]
    log_line(log, "r-2")
    handler.close()
    assert written(handler) == ["r-1", "r-2"]
    await asyncio.sleep(0)  # the turn that was to write them finds nothing more
    assert written(handler) == ["r-1", "r-2"]


async def test_held_lines_beyond_the_limit_are_written_at_once(
    json_log: tuple[logging.Logger, JsonLineHandler],
) -> None:
    log, handler = json_log
    count = 0
    while not written(handler):
        log_line(log, f"r-{count}")
        count += 1
    assert written(handler) == [f"r-{number}" for number in range(count)]
    text = handler.stream.getvalue()
    assert len(text) > HELD_LINES_LIMIT >= len(text) - len(text.splitlines(keepends=True)[-1])


def test_without_a_running_loop_a_request_line_is_written_at_once(
    json_log: tuple[logging.Logger, JsonLineHandler],
) -> None:
    log, handler = json_log
    log_line(log, "r-1")
    assert written(handler) == ["r-1"]


async def test_a_line_from_another_thread_is_written_at_once_after_those_held(
    json_log: tuple[logging.Logger, JsonLineHandler],
) -> None:
    log, handler = json_log
    log_line(log, "r-1")
    thread = threading.Thread(target=log_line, args=(log, "from-thread"))
    thread.start()
    thread.join()
    assert written(handler) == ["r-1", "from-thread"]
    log_line(log, "r-2")
    await asyncio.to_thread(log_line, log, "from-thread-2")
    assert written(handler) == ["r-1", "from-thread", "r-2", "from-thread-2"]


async def test_a_line_from_another_loop_is_written_at_once_after_those_held(
    json_log: tuple[logging.Logger, JsonLineHandler],
) -> None:
    log, handler = json_log
    log_line(log, "r-1")

    async def on_another_loop() -> None:
        log_line(log, "other-loop")

    await asyncio.to_thread(asyncio.run, on_another_loop())
    assert written(handler) == ["r-1", "other-loop"]


class FailingStream(io.StringIO):
    def write(self, _text: str) -> int:
        raise OSError("disk full")


async def test_a_failed_write_of_held_lines_is_reported_as_logging_reports_one(
    json_log: tuple[logging.Logger, JsonLineHandler], capsys: pytest.CaptureFixture[str]
) -> None:
    log, handler = json_log
    handler.setStream(FailingStream())
    log_line(log, "r-1")
    await asyncio.sleep(0)
    assert "--- Logging error ---" in capsys.readouterr().err
    handler.setStream(io.StringIO())
    log_line(log, "r-2")  # the failed lines are dropped, as logging drops a record it failed to write
    await asyncio.sleep(0)
    assert written(handler) == ["r-2"]


def test_lines_held_at_exit_are_written() -> None:
    """logging.shutdown, which runs at exit, flushes the handlers: a line held for a turn of the loop that
    never comes is not lost."""
    program = """
import asyncio, logging.config, sys
from app.api.observability import log_request, server_log_config
logging.config.dictConfig(server_log_config("INFO"))
def log_and_exit():
    log_request(logging.getLogger("par_server.request"), {"request_id": "held-at-exit"})
    sys.exit(0)
loop = asyncio.new_event_loop()
loop.call_soon(log_and_exit)
loop.run_forever()
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    [line] = done.stderr.splitlines()
    assert json.loads(line)["request_id"] == "held-at-exit"


class PieceRecordingStream(io.StringIO):
    """Each flush's new text: what one write system call would carry."""

    def __init__(self) -> None:
        super().__init__()
        self.pieces: list[str] = []
        self._flushed = 0

    def flush(self) -> None:
        text = self.getvalue()
        if len(text) > self._flushed:
            self.pieces.append(text[self._flushed :])
            self._flushed = len(text)


async def test_held_lines_are_written_in_pieces_of_whole_lines_within_pipe_buf(
    json_log: tuple[logging.Logger, JsonLineHandler],
) -> None:
    log, handler = json_log
    handler.setStream(PieceRecordingStream())
    long_id = "é" * 3000  # 6000 bytes in UTF-8: a line longer than PIPE_BUF goes by itself
    for number in range(60):
        log_line(log, long_id if number == 30 else f"r-{number}")
    await asyncio.sleep(0)
    pieces: list[str] = handler.stream.pieces
    assert len(pieces) > 2 and all(piece.endswith("\n") for piece in pieces)
    assert [len(piece.encode()) <= select.PIPE_BUF for piece in pieces].count(False) == 1
    assert "".join(pieces) == handler.stream.getvalue()
    assert written(handler) == [long_id if number == 30 else f"r-{number}" for number in range(60)]


def test_workers_sharing_a_lagging_pipe_never_cut_each_others_lines() -> None:
    """Two processes' turns of lines on one stderr pipe whose reader is slower than they are."""
    program = """
import asyncio, logging.config
from app.api.observability import log_request, server_log_config
logging.config.dictConfig(server_log_config("INFO"))
log = logging.getLogger("par_server.request")
async def turns():
    for turn in range(40):
        for number in range(40):
            log_request(log, {"request_id": f"{turn}-{number}", "route": "/services/{service_id}/par"})
        await asyncio.sleep(0)
asyncio.run(turns())
"""
    reader, writer = os.pipe()
    workers = [subprocess.Popen([sys.executable, "-c", program], stderr=writer) for _ in range(2)]
    os.close(writer)
    received = bytearray()
    with open(reader, "rb", buffering=0) as pipe:
        while chunk := pipe.read(4096):
            received += chunk
            time.sleep(0.002)  # a log shipper behind
    assert [worker.wait(timeout=30) for worker in workers] == [0, 0]
    lines = [json.loads(line) for line in received.decode().splitlines()]
    assert len(lines) == 2 * 40 * 40


def test_the_server_writes_request_lines_through_a_json_line_handler() -> None:
    handlers = server_log_config("INFO")["handlers"]
    assert handlers["stderr"]["()"] is JsonLineHandler


async def test_the_lifespan_writes_the_lines_held_as_it_ends(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(settings)
    handler = JsonLineHandler(io.StringIO())
    handler.setFormatter(JsonFormatter())
    par_server = logging.getLogger("par_server")
    monkeypatch.setattr(par_server, "handlers", [handler])
    monkeypatch.setattr(par_server, "propagate", False)
    close_state = AppState.aclose

    async def close_state_then_log(state: AppState) -> None:  # a line held in the shutdown's last step
        await close_state(state)
        log_line(access_logger, "r-last")

    monkeypatch.setattr(AppState, "aclose", close_state_then_log)
    async with app.router.lifespan_context(app):
        pass
    assert written(handler) == ["r-last"]  # with no turn of the loop since


async def test_gauges(
    app: FastAPI, client: httpx.AsyncClient, service: ServiceHandle, basic_client: ClientHandle
) -> None:
    for _ in range(3):
        await client.post(service.par_path, data=par_params(basic_client), headers=basic_client.basic())
    await update_gauges(app.state.par)
    text = (await client.get("/metrics")).text
    assert any(line == "par_pushed_requests_live 3.0" for line in text.splitlines())


async def test_readyz_reports_pending_migrations(tmp_path: Path, sqlite_template: Path) -> None:
    database = tmp_path / "behind.db"
    database.write_bytes(sqlite_template.read_bytes())
    config = alembic_config(f"sqlite+aiosqlite:///{database}")
    await asyncio.to_thread(command.downgrade, config, "-1")  # alembic runs its own event loop
    app = create_app(make_settings(f"sqlite+aiosqlite:///{database}"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http:
        response = await http.get("/readyz")
    await app.state.par.aclose()
    assert response.status_code == 503 and response.json()["migrations"] == "pending"


async def test_readyz_is_ready_on_a_schema_a_newer_release_migrated(tmp_path: Path, sqlite_template: Path) -> None:
    """During a rolling upgrade the migration Job runs first: the old replicas keep serving on a schema
    whose revision they do not know (migrations add before they remove), and leave only when replaced."""
    database = tmp_path / "ahead.db"
    database.write_bytes(sqlite_template.read_bytes())
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'f00dfeedbeef'")
    app = create_app(make_settings(f"sqlite+aiosqlite:///{database}"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http:
        response = await http.get("/readyz")
    await app.state.par.aclose()
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "migrations": "ahead"}


async def test_readyz_leaves_a_slow_database_read_to_finish(tmp_path: Path, sqlite_template: Path) -> None:
    """A read that outlasts PAR_READYZ_TIMEOUT_SECONDS is answered 503 within the bound but not cancelled
    (cancelled on an SQLite connection, SQLAlchemy's aiosqlite adapter can hang the pool's only
    connection, and every later request gets 503); probes meanwhile share that one read; once the
    database answers, the server is ready and serves again."""
    database = tmp_path / "par.db"
    database.write_bytes(sqlite_template.read_bytes())
    app = create_app(make_settings(f"sqlite+aiosqlite:///{database}", readyz_timeout_seconds=0.3))
    state: AppState = app.state.par
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")  # in WAL mode: readers are kept out too
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE alembic_version SET version_num = version_num")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http:
            started = time.monotonic()
            probes = await asyncio.gather(*(http.get("/readyz") for _ in range(3)))
            took = time.monotonic() - started
            assert [probe.status_code for probe in probes] == [503] * 3
            assert probes[0].json() == {"status": "unavailable", "database": "TimeoutError"}
            assert took < 2.0, f"{took:.1f} s: SQLite's busy_timeout is 5 s, the bound 0.3 s"
            assert state.engine.pool.checkedout() == 1  # type: ignore[attr-defined]  # one read, still waiting
            holder.execute("ROLLBACK")
            holder.close()
            for _ in range(50):  # the read in flight ends once the lock is gone; the next probe reads anew
                ready = await http.get("/readyz")
                if ready.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert ready.json() == {"status": "ok", "database": "ok", "migrations": "current"}
            assert state.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
            created = await http.post(
                "/api/service/create", json={"serviceName": "after"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
            assert created.status_code == 200, created.text
    finally:
        holder.close()
        await state.aclose()


async def test_readyz_when_current(client: httpx.AsyncClient) -> None:
    assert (await client.get("/readyz")).json() == {"status": "ok", "database": "ok", "migrations": "current"}


async def test_metrics_need_no_credentials_and_leak_none(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    assert "par_operations_total" in text and ADMIN_TOKEN not in text


async def test_a_method_a_client_invents_makes_no_new_series(client: httpx.AsyncClient) -> None:
    """The latency histogram's method label takes the standard methods; any other is "other", so a
    client cannot grow the server's series (and memory) by inventing methods."""
    for invented in ("FROBNICATE", "X-1", "PROPFIND"):
        await client.request(invented, "/healthz")
    text = (await client.get("/metrics")).text
    assert "FROBNICATE" not in text and "PROPFIND" not in text
    assert 'method="other"' in text


@dataclasses.dataclass
class _Described:
    name: str


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "caf\u00e9",
        '\x00\x1f\x7f"\\/',
        2**70,
        -(2**63),
        1.25,
        1e300,
        1e-7,
        1e16,
        float("inf"),
        float("nan"),
        True,
        None,
        [1, "a", {"b": 2}],
        uuid.UUID(int=7),
        datetime(2026, 12, 6, 19, 0, tzinfo=UTC),
        _Described("x"),
    ],
)
def test_a_request_line_is_the_text_the_stdlib_encoder_writes(value: object) -> None:
    """Request lines are written by orjson when it writes exactly what ``json`` does, else by ``json``."""
    formatter = JsonFormatter()
    line = formatter.format_fields(0.0, "INFO", "par_server.request", "request", {"value": value})
    expected = json.dumps(
        {
            "ts": formatter._timestamp(0.0),
            "level": "info",
            "logger": "par_server.request",
            "msg": "request",
            "value": value,
        },
        separators=(",", ":"),
        default=str,
    )
    assert line == expected


@given(st.dictionaries(st.text(max_size=8), st.one_of(st.text(), st.integers(), st.floats(), st.booleans(), st.none())))
def test_any_request_line_is_the_text_the_stdlib_encoder_writes(fields: dict[str, object]) -> None:
    formatter = JsonFormatter()
    line = formatter.format_fields(0.0, "INFO", "par_server.request", "request", fields)
    head = {"ts": formatter._timestamp(0.0), "level": "info", "logger": "par_server.request", "msg": "request"}
    assert line == json.dumps({**head, **fields}, separators=(",", ":"), default=str)


# --- process and runtime metrics, and several workers ------------------------------------------------------

RUNTIME_FAMILIES = {
    "process_cpu_seconds": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_start_time_seconds": "gauge",
    "process_open_fds": "gauge",
    "python_gc_collections": "counter",
    "python_gc_objects_collected": "counter",
    "python_info": "gauge",
}


def families(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample_value(family: Metric, name: str, **labels: str) -> float:
    [value] = [sample.value for sample in family.samples if sample.name == name and sample.labels == labels]
    return value


async def test_one_process_reports_its_process_and_runtime_metrics_without_a_pid_label(
    client: httpx.AsyncClient,
) -> None:
    scraped = families((await client.get("/metrics")).text)
    for name, kind in RUNTIME_FAMILIES.items():
        assert scraped[name].type == kind, name
        assert all("pid" not in sample.labels for sample in scraped[name].samples), name
    assert sample_value(scraped["process_start_time_seconds"], "process_start_time_seconds") > 0
    generations = {sample.labels["generation"] for sample in scraped["python_gc_collections"].samples}
    assert generations == {"0", "1", "2"}


def test_one_process_keeps_its_metrics_in_memory() -> None:
    """No PROMETHEUS_MULTIPROC_DIR: nothing to publish, nothing to withdraw."""
    metrics = Metrics()
    assert metrics.multiprocess_dir is None and metrics.runtime is None
    metrics.count_operation("push", "1", "created", "")
    metrics.publish_runtime()
    metrics.worker_stopped()
    assert metric_value(generate_latest(metrics.registry).decode(), "par_operations_total", outcome="created") == 1


@pytest.fixture
def multiprocess_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """prometheus_client in multiprocess mode in this process, as a worker of ``serve --workers N`` is
    from its first import, with its files in a directory of this test's."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    monkeypatch.setenv(MULTIPROCESS_DIR_VARIABLE, str(directory))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())  # type: ignore[no-untyped-call]
    yield directory
    values.ValueClass.close_all_files()


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(process.stdout)


def test_several_workers_totals_keep_a_dead_workers_counts_but_not_its_runtime_metrics(
    multiprocess_dir: Path,
) -> None:
    metrics = Metrics()
    assert metrics.multiprocess_dir == str(multiprocess_dir) and metrics.runtime is not None
    metrics.count_operation("push", "1", "created", "")
    metrics.observe_latency("/services/{service_id}/par", "POST", 201, 0.003)
    metrics.live_pushed_requests.set(7)
    metrics.publish_runtime()
    # Another worker's files, as it left them when it was killed: same counts, its own runtime series.
    gone = dead_pid()
    for kind in ("counter", "histogram", "gauge_liveall"):
        shutil.copy(multiprocess_dir / f"{kind}_{os.getpid()}.db", multiprocess_dir / f"{kind}_{gone}.db")

    scraped = families(generate_latest(metrics.registry).decode())
    operations = scraped["par_operations"]
    assert (
        sample_value(operations, "par_operations_total", operation="push", service="1", outcome="created", error="")
        == 2
    )
    latency = scraped["par_request_duration_seconds"]
    labels = {"route": "/services/{service_id}/par", "method": "POST", "status": "201"}
    assert sample_value(latency, "par_request_duration_seconds_count", **labels) == 2
    assert sample_value(latency, "par_request_duration_seconds_bucket", **labels, le="+Inf") == 2
    assert sample_value(scraped["par_pushed_requests_live"], "par_pushed_requests_live") == 7  # not 7 per worker
    for name, kind in RUNTIME_FAMILIES.items():
        assert scraped[name].type == kind, name
        if name != "python_info":  # one interpreter: the same in every worker
            assert {sample.labels["pid"] for sample in scraped[name].samples} == {str(os.getpid())}, name
    assert not (multiprocess_dir / f"gauge_liveall_{gone}.db").exists()
    assert (multiprocess_dir / f"counter_{gone}.db").exists()

    metrics.worker_stopped()
    scraped = families(generate_latest(metrics.registry).decode())
    assert "process_cpu_seconds" not in scraped
    assert (
        sample_value(
            scraped["par_operations"],
            "par_operations_total",
            operation="push",
            service="1",
            outcome="created",
            error="",
        )
        == 2
    )


async def test_a_worker_publishes_its_runtime_metrics_while_it_serves_and_withdraws_them_as_it_stops(
    multiprocess_dir: Path, settings: Settings
) -> None:
    app = create_app(settings)
    own = multiprocess_dir / f"gauge_liveall_{os.getpid()}.db"
    try:
        async with app.router.lifespan_context(app):
            await asyncio.sleep(0)  # the publishing task's first turn
            assert own.exists()
            scraped = families(generate_latest(app.state.par.metrics.registry).decode())
            [cpu] = scraped["process_cpu_seconds"].samples
            assert cpu.labels == {"pid": str(os.getpid())}
        assert not own.exists()
    finally:
        await app.state.par.aclose()


@pytest.mark.parametrize("content", [b"", b"\x10\x00\x00\x00\x00\x00\x00\x00"], ids=["empty", "truncated"])
async def test_an_unreadable_metrics_file_makes_scrapes_503_with_one_warning_naming_it(
    multiprocess_dir: Path, settings: Settings, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    """A total without that file's counts would be wrong: no total is reported, and the log says why in one
    line, without a traceback."""
    app = create_app(settings)
    corrupt = multiprocess_dir / "counter_999999.db"
    corrupt.write_bytes(content)
    caplog.set_level(logging.WARNING)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http:
            response = await http.get("/metrics")
    finally:
        await app.state.par.aclose()
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert str(corrupt) in response.json()["metrics"]
    [warning] = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert warning.name == "par_server.metrics" and warning.exc_info is None
    assert str(corrupt) in getattr(warning, "fields", {})["reason"]


def answering_worker(connection: http.client.HTTPConnection, server_port: int, workers: set[int]) -> int:
    """Which of the ``workers`` holds the server's end of this open connection (Linux: /proc)."""
    assert connection.sock is not None
    client_port = connection.sock.getsockname()[1]
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            inodes.add(f"socket:[{inode}]")
    holders = set()
    for pid in workers:
        descriptors = Path(f"/proc/{pid}/fd")
        for descriptor in descriptors.iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(descriptor) in inodes:
                    holders.add(pid)
    [holder] = holders
    return holder


WORKERS = 2
PUSHES = 20
LEAST_SCRAPES_PER_WORKER = 5
MOST_SCRAPES = 400


def scrape(base_url: str) -> str:
    with httpx.Client(base_url=base_url, trust_env=False, timeout=10.0) as http:
        return http.get("/metrics").text


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="tells the answering worker by /proc (Linux)")
def test_every_worker_of_a_served_app_reports_every_workers_totals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``par-server serve --workers 2`` on a SQLite file: each scrape, whichever worker answers it, counts
    every push, and reports each worker's process and runtime metrics; the metrics directory goes as the
    server stops."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))  # the server's, where it makes the metrics directory
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'par.db'}"
    deployment = support.Deployment(database_url, tmp_path)
    deployment.cli("migrate")
    tenant = support.tenant_from_cli(deployment)
    with deployment.server("workers", "--workers", str(WORKERS)) as server:
        # Each worker publishes its runtime metrics as its lifespan starts: both are serving once both show.
        deadline = time.monotonic() + support.STARTUP_TIMEOUT_SECONDS
        workers: set[int] = set()
        while len(workers) < WORKERS:
            assert time.monotonic() < deadline, server.log()
            scraped = families(scrape(server.base_url))
            if "process_start_time_seconds" in scraped:
                workers = {int(sample.labels["pid"]) for sample in scraped["process_start_time_seconds"].samples}
            time.sleep(0.05)
        with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10.0) as pusher:
            for index in range(PUSHES):
                pushed = pusher.post(tenant.par_path, data=tenant.params(f"s{index}"), auth=tenant.basic)
                assert pushed.status_code == 201, pushed.text

        answered = dict.fromkeys(workers, 0)
        for _ in range(MOST_SCRAPES):  # a new connection each: the kernel hands it to either worker
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10.0)
            try:
                connection.request("GET", "/metrics")
                response = connection.getresponse()
                text = response.read().decode()
                answered[answering_worker(connection, server.port, workers)] += 1
            finally:
                connection.close()
            assert response.status == 200
            scraped = families(text)
            created = sample_value(
                scraped["par_operations"],
                "par_operations_total",
                operation="push",
                service=str(tenant.service_id),
                outcome="created",
                error="",
            )
            assert created == PUSHES
            latency = scraped["par_request_duration_seconds"]
            labels = {"route": "/services/{service_id}/par", "method": "POST", "status": "201"}
            assert sample_value(latency, "par_request_duration_seconds_count", **labels) == PUSHES
            assert sample_value(latency, "par_request_duration_seconds_bucket", **labels, le="+Inf") == PUSHES
            for name, kind in RUNTIME_FAMILIES.items():
                assert scraped[name].type == kind, name
            memory = scraped["process_resident_memory_bytes"].samples
            assert {int(sample.labels["pid"]) for sample in memory} == workers
            assert all(sample.value > 0 for sample in memory)
            if min(answered.values()) >= LEAST_SCRAPES_PER_WORKER:
                break
        assert min(answered.values()) >= LEAST_SCRAPES_PER_WORKER, answered
        [directory] = temporary.iterdir()
        assert directory.name.startswith("par-server-metrics-")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0, server.log()
    assert list(temporary.iterdir()) == []
