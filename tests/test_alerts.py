"""Alert delivery against real local servers: a webhook receiver, an SMTP server, a fake
GitHub REST API, on SQLite and on the local PostgreSQL.

Each server is started by the test on 127.0.0.1 and records what it received; a sink that
is "down" is a port nobody listens on, or a server answering 503.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import zlib
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import text

from service.alerts import (
    AlertReport,
    archive_dir,
    deliver_file,
    resend_unsent,
    safe_key,
    send_alert,
)
from service.api import create_app
from service.settings import Settings
from service.store import Store, get_store, make_engine
from tests.test_store import postgres_url  # noqa: F401  (the session's PostgreSQL database)

KEY = "scan:freeze-db:b.e30.B1850.f09_g17.012:frozen:0023-01"
TOKEN = "ghp_test_token"
ALL_SINKS = ["file", "webhook", "email", "github"]


def png_bytes(width: int = 2, height: int = 2) -> bytes:
    """A real (tiny, red) PNG, as the scan's figures are."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Receiver:
    """An HTTP server on 127.0.0.1 recording every POST (path, headers, JSON body)."""

    def __init__(self, port: int = 0, status: int = 201) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({
                    "path": self.path, "json": json.loads(body),
                    "headers": {name.lower(): value for name, value in self.headers.items()}})
                answer = b'{"id": 1}' if receiver.status < 300 else b"busy, try later"
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def github() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def start_smtp(mailbox: Mailbox, port: int | None = None) -> Controller:
    controller = Controller(mailbox, hostname="127.0.0.1", port=port or free_port())
    controller.start()
    return controller


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    controller = start_smtp(mailbox)
    yield mailbox, controller.port
    controller.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db.sqlite'}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    with get_store(Settings(data_dir=tmp_path, database_url=url)).session() as session:
        session.execute(text("DELETE FROM alerts"))  # one database per session


@pytest.fixture
def report(tmp_path: Path) -> AlertReport:
    """A scan report directory as the nightly scan writes it."""
    folder = tmp_path / "scan" / "report"
    folder.mkdir(parents=True)
    markdown = "# Labrador Sea frozen\n\nMember 012 froze in 0023-01 (risk 0.91).\n"
    (folder / "alert.md").write_text(markdown)
    (folder / "alert.html").write_text("<h1>Labrador Sea frozen</h1><img src='risk.png'>")
    (folder / "risk.png").write_bytes(png_bytes())
    summary = {"findings": [{"member": "012", "month": "0023-01", "risk": 0.91}]}
    (folder / "summary.json").write_text(json.dumps(summary))
    return AlertReport(key=KEY, title="freeze-db: member 012 froze (0023-01)",
                       markdown=markdown, summary=summary,
                       files=sorted(folder.iterdir()))


def make_settings(tmp_path: Path, db_url: str, **sinks: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url, **sinks)


def all_sinks(webhook_url: str, smtp_port: int, github_url: str) -> dict[str, Any]:
    return {"alert_webhook_url": webhook_url + "/hooks/T0SECRET", "smtp_host": "127.0.0.1",
            "smtp_port": smtp_port, "alert_email_to": ["cesm-dev@example.org"],
            "alert_email_from": "esmwatch@example.org",
            "alert_github_issue": "NCAR/esmwatch-alerts#7", "github_token": TOKEN,
            "github_api_url": github_url + "/api/v3", "alert_timeout_s": 5}


def journal(settings: Settings) -> list[dict[str, Any]]:
    assert settings.alert_dir is not None
    path = settings.alert_dir / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_every_sink_delivers_and_only_once(tmp_path: Path, db_url: str, report: AlertReport,
                                           webhook: Receiver, github: Receiver,
                                           smtp: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp
    settings = make_settings(tmp_path, db_url, **all_sinks(webhook.url, port, github.url))
    store = get_store(settings)

    outcome = send_alert(store, report, settings)
    assert (outcome.delivered, outcome.failed, outcome.already_sent) == (ALL_SINKS, {}, False)

    [posted] = webhook.requests
    assert posted["path"] == "/hooks/T0SECRET"
    assert posted["json"] == {"key": KEY, "title": report.title, "markdown": report.markdown,
                              "summary": report.summary}

    [comment] = github.requests
    assert comment["path"] == "/api/v3/repos/NCAR/esmwatch-alerts/issues/7/comments"
    assert comment["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert comment["headers"]["accept"] == "application/vnd.github+json"
    assert comment["json"]["body"].startswith(report.markdown)
    assert "`risk.png`" in comment["json"]["body"]
    assert str(archive_dir(settings, KEY)) in comment["json"]["body"]

    [(recipients, mail)] = mailbox.messages
    assert recipients == ["cesm-dev@example.org"]
    assert (mail["Subject"], mail["X-Esmwatch-Alert"]) == (report.title, KEY)
    assert mail.get_body(("plain",)).get_content().replace("\r\n", "\n") == report.markdown
    assert "<h1>Labrador Sea frozen</h1>" in mail.get_body(("html",)).get_content()
    attached = {part.get_filename(): part for part in mail.iter_attachments()}
    assert sorted(attached) == ["risk.png", "summary.json"]
    assert attached["risk.png"].get_content_type() == "image/png"
    assert attached["risk.png"].get_content() == png_bytes()

    copy = archive_dir(settings, KEY)
    assert sorted(p.name for p in copy.iterdir()) == [p.name for p in report.files]
    assert (copy / "risk.png").read_bytes() == png_bytes()
    [line] = journal(settings)
    assert (line["key"], line["dir"], line["summary"]) == (KEY, str(copy), report.summary)

    row = store.get_alert(KEY)
    assert row.sent_at is not None and row.sinks == ALL_SINKS
    assert row.payload["title"] == report.title
    assert row.payload["delivery"] == {"claimed_until": None, "failed": {}}

    again = send_alert(store, report, settings)
    assert (again.delivered, again.failed, again.already_sent) == ([], {}, True)
    assert (len(webhook.requests), len(github.requests), len(mailbox.messages)) == (1, 1, 1)
    assert len(journal(settings)) == 1


@pytest.mark.parametrize("down", ["closed port", "HTTP 503"])
def test_a_sink_that_was_down_is_retried_alone(tmp_path: Path, db_url: str,
                                               report: AlertReport, github: Receiver,
                                               smtp: tuple[Mailbox, int], down: str) -> None:
    mailbox, smtp_port = smtp
    port = free_port()
    hook = Receiver(port=port, status=503) if down == "HTTP 503" else None
    settings = make_settings(tmp_path, db_url,
                             **all_sinks(f"http://127.0.0.1:{port}", smtp_port, github.url))
    store = get_store(settings)
    try:
        first = send_alert(store, report, settings)
        assert first.delivered == ["file", "email", "github"] and not first.already_sent
        reason = first.failed["webhook"]
        assert set(first.failed) == {"webhook"}
        assert (f"http://127.0.0.1:{port}" in reason and "SECRET" not in reason
                and ("HTTP 503" in reason if hook else "cannot reach" in reason))
        row = store.get_alert(KEY)
        assert (row.sent_at, row.sinks) == (None, ["file", "email", "github"])
        assert row.payload["delivery"]["failed"] == {"webhook": reason}

        if hook is None:
            hook = Receiver(port=port)
        hook.status = 200
        second = send_alert(store, report, settings)
        assert (second.delivered, second.failed) == (["webhook"], {})
        assert [r["json"]["key"] for r in hook.requests] == [KEY] * (1 + (down == "HTTP 503"))
        assert (len(github.requests), len(mailbox.messages), len(journal(settings))) == (1, 1, 1)
        row = store.get_alert(KEY)
        assert row.sent_at is not None and sorted(row.sinks) == sorted(ALL_SINKS)
        assert send_alert(store, report, settings).already_sent
    finally:
        if hook is not None:
            hook.close()


def test_concurrent_senders_deliver_once(tmp_path: Path, db_url: str, report: AlertReport,
                                         webhook: Receiver) -> None:
    settings = make_settings(tmp_path, db_url, alert_webhook_url=webhook.url)
    store = get_store(settings)
    start = threading.Barrier(6)
    outcomes = []

    def sender() -> None:
        start.wait()
        outcomes.append(send_alert(store, report, settings))

    threads = [threading.Thread(target=sender) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.delivered for o in outcomes) == [[]] * 5 + [["file", "webhook"]]
    assert all(o.held_elsewhere or o.already_sent for o in outcomes if not o.delivered)
    assert len(webhook.requests) == 1 and len(journal(settings)) == 1


def test_a_live_claim_is_respected_and_a_dead_one_taken_over(
        tmp_path: Path, db_url: str, report: AlertReport, webhook: Receiver) -> None:
    settings = make_settings(tmp_path, db_url, alert_webhook_url=webhook.url)
    store = get_store(settings)
    other = report.model_copy(update={"key": "scan:other"})
    _, claimed = store.claim_alert(other.key, other.payload())  # another sender, at work
    assert claimed
    busy = send_alert(store, other, settings)
    assert (busy.held_elsewhere, busy.already_sent, busy.delivered) == (True, False, [])
    assert webhook.requests == []

    dead = Store(store.engine, lease_seconds=0)  # a sender that died: its claim has lapsed
    _, claimed = dead.claim_alert(KEY, report.payload())
    assert claimed
    taken_over = send_alert(store, report, settings)
    assert taken_over.delivered == ["file", "webhook"] and len(webhook.requests) == 1


def test_file_sink_is_atomic(tmp_path: Path, report: AlertReport) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    missing = report.files[0].with_name("missing.png")
    broken = report.model_copy(update={"files": [*report.files, missing]})
    outcome = send_alert(get_store(settings), broken, settings)
    assert outcome.delivered == [] and str(missing) in outcome.failed["file"]
    assert settings.alert_dir is not None
    assert list(settings.alert_dir.iterdir()) == []  # no partial copy, no journal line

    deliver_file(report, settings)  # an earlier copy whose delivery was never recorded
    report.files[0].write_text("# updated\n")
    deliver_file(report, settings)
    copy = archive_dir(settings, KEY)
    assert (copy / report.files[0].name).read_text() == "# updated\n"
    assert sorted(p.name for p in settings.alert_dir.iterdir()) == ["alerts.jsonl", copy.name]


def test_resend_unsent_uses_the_archived_copy(tmp_path: Path, report: AlertReport) -> None:
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    port = free_port()
    mail = {"alert_email_to": ["cesm-dev@example.org"], "smtp_host": "127.0.0.1",
            "smtp_port": port}
    settings = make_settings(tmp_path, db, **mail)
    store = get_store(settings)
    failed = send_alert(store, report, settings).failed
    assert set(failed) == {"email"} and f"SMTP server 127.0.0.1:{port}" in failed["email"]
    for path in report.files:  # the scan's working directory is gone by the next night
        path.unlink()

    mailbox = Mailbox()
    controller = start_smtp(mailbox, port)
    try:
        [outcome] = resend_unsent(store, settings)
    finally:
        controller.stop()
    assert (outcome.key, outcome.delivered, outcome.failed) == (KEY, ["email"], {})
    [(_, message)] = mailbox.messages
    [png] = [p for p in message.iter_attachments() if p.get_filename() == "risk.png"]
    assert png.get_content() == png_bytes()
    assert resend_unsent(store, settings) == []


def test_send_alert_never_raises(tmp_path: Path, report: AlertReport) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}",
                             alert_email_to=["cesm-dev@example.org"],
                             alert_github_issue="NCAR/esmwatch-alerts#7")
    outcome = send_alert(get_store(settings), report, settings)
    assert outcome.delivered == ["file"]
    assert outcome.failed == {"email": "alert_email_to is set but smtp_host is not",
                              "github": "alert_github_issue is set but github_token is not"}

    unreachable = Store(make_engine(f"postgresql+psycopg://esmwatch@127.0.0.1:{free_port()}/x"))
    down = send_alert(unreachable, report.model_copy(update={"key": "other"}), settings)
    assert down.delivered == [] and "cannot claim" in down.failed["store"]
    assert not archive_dir(settings, "other").exists()  # nothing sent without a claim


def test_report_validation() -> None:
    report = AlertReport(key="k", title=" t ", markdown="",
                         summary={"risk": np.float32(0.5), "members": np.array([1, 2])})
    assert (report.title, report.summary) == ("t", {"risk": 0.5, "members": [1, 2]})
    with pytest.raises(ValidationError, match="one line"):
        AlertReport(key="k", title="a\nb", markdown="")
    with pytest.raises(ValidationError, match="not JSON-serialisable"):
        AlertReport(key="k", title="t", markdown="", summary={"risk": float("nan")})
    with pytest.raises(ValidationError):
        Settings(alert_github_issue="NCAR/esmwatch-alerts")
    assert safe_key("a:b") != safe_key("a_b") and "/" not in safe_key("../../etc")


def test_api_lists_sent_alerts(tmp_path: Path, report: AlertReport) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    store = get_store(settings)
    send_alert(store, report, settings)
    auth = {"Authorization": f"Bearer {store.create_token('tests')}"}
    with TestClient(create_app(settings)) as client:
        [alert] = client.get("/api/v1/alerts", headers=auth).json()
    assert (alert["dedupe_key"], alert["sinks"]) == (KEY, ["file"])
    assert alert["sent_at"] is not None and alert["payload"]["summary"] == report.summary
