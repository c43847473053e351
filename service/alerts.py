"""Deliver the nightly scan's alert report to developers, once.

A report goes to every configured sink: the file sink (always on: a copy under
``alert_dir``), a webhook, email and a GitHub issue comment.  "Once" is kept by the store's
``alerts`` table: the caller that inserts the report's key delivers it; every sink that
succeeds is recorded at once, so a later :func:`send_alert` with the same key (next night's
scan, or :func:`resend_unsent`) retries only the sinks that failed, and a report every
sink has is never sent again.  A claim with a lease stops two senders from retrying the
same sinks at the same time.

Delivery is at least once per sink only across a crash between a sink accepting the report
and the store recording it; otherwise it is exactly once.  Nothing here raises into the
scan: failures are logged with the sink and the reason and returned in the
:class:`AlertOutcome`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import re
import shutil
import smtplib
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.exc import SQLAlchemyError

from ensembles.errors import EsmwatchError
from service.settings import Settings
from service.store import Alert, Store

log = logging.getLogger(__name__)

USER_AGENT = "esmwatch-alerts"
GITHUB_COMMENT_LIMIT = 65_536  # characters GitHub accepts in one comment body
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class SinkError(EsmwatchError):
    """A sink refused or could not take the report; the message says why, without secrets."""


class AlertReport(BaseModel):
    """One alert report as the scan hands it over: what every sink delivers.

    ``files`` are the report's files (``alert.html``, ``alert.md``, figures, a JSON
    summary) in the report directory; the file sink copies them, email attaches them and
    the GitHub comment names them (its API cannot attach images).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(min_length=1, max_length=255,
                     description="Dedupe key: a report with a key already sent is not resent.")
    title: str = Field(min_length=1, max_length=300)
    markdown: str = Field(description="The body, GitHub-flavoured markdown.")
    summary: dict[str, Any] = Field(default_factory=dict,
                                    description="Findings etc.; stored and POSTed as JSON.")
    files: list[Path] = Field(default_factory=list)

    @field_validator("title")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value or "\r" in value:
            raise ValueError("an alert title is one line")
        return value.strip()

    @field_validator("summary")
    @classmethod
    def _plain_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Store plain JSON: numpy scalars, paths and dates become numbers and strings here,
        once, and NaN is refused because PostgreSQL's json type refuses it."""
        try:
            return json.loads(json.dumps(value, default=_jsonable, allow_nan=False))
        except (TypeError, ValueError) as err:
            raise ValueError(f"summary is not JSON-serialisable: {err}") from None

    def payload(self) -> dict[str, Any]:
        """What the alerts table keeps of the report (enough for :func:`resend_unsent`)."""
        return self.model_dump(mode="json", exclude={"key"})


class AlertOutcome(BaseModel):
    """What one :func:`send_alert` call did."""

    key: str
    delivered: list[str] = Field(default_factory=list,
                                 description="Sinks that received the report in this call.")
    failed: dict[str, str] = Field(default_factory=dict, description="Sink -> reason.")
    already_sent: bool = Field(default=False,
                               description="Every sink had it before; nothing was sent.")
    held_elsewhere: bool = Field(default=False,
                                 description="Another sender holds the claim; nothing was sent.")


@dataclass(frozen=True)
class Sink:
    """A delivery channel: its name (recorded in the alert row) and how to use it."""

    name: str
    configured: Callable[[Settings], bool]
    deliver: Callable[[AlertReport, Settings], None]


def safe_key(key: str) -> str:
    """A directory name for ``key``: readable, and unique thanks to a hash of the key."""
    slug = _UNSAFE.sub("_", key).strip("._-")[:80] or "alert"
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def archive_dir(settings: Settings, key: str) -> Path:
    """Where the file sink keeps the report with this key."""
    assert settings.alert_dir is not None  # filled by Settings._derive_paths
    return settings.alert_dir / safe_key(key)


# ---- sinks ----------------------------------------------------------------------------------


def deliver_file(report: AlertReport, settings: Settings) -> None:
    """Copy the report files into ``alert_dir/<safe key>/`` and log it in ``alerts.jsonl``.

    The copy is made in a hidden sibling directory and renamed, so readers never see a
    half-written report and a failed copy leaves nothing behind.
    """
    final = archive_dir(settings, report.key)
    names = [path.name for path in report.files]
    if len(set(names)) != len(names):
        raise SinkError(f"report files share a name: {sorted(names)}")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    staging.mkdir()
    try:
        for path in report.files:
            if not path.is_file():
                raise SinkError(f"{path}: report file does not exist")
            shutil.copy2(path, staging / path.name)
        if final.exists():  # an earlier copy whose delivery was never recorded
            stale = final.with_name(f".{final.name}.{uuid.uuid4().hex}.old")
            final.rename(stale)
            staging.rename(final)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    line = json.dumps({"key": report.key, "title": report.title, "dir": str(final),
                       "files": names, "summary": report.summary,
                       "time": datetime.now().astimezone().isoformat(timespec="seconds")})
    with (final.parent / "alerts.jsonl").open("a", encoding="utf-8") as journal:
        journal.write(line + "\n")  # one write per line: concurrent appends stay whole


def deliver_webhook(report: AlertReport, settings: Settings) -> None:
    """POST ``{key, title, markdown, summary}`` as JSON; anything but 2xx is a failure."""
    assert settings.alert_webhook_url is not None
    _post_json(settings.alert_webhook_url,
               {"key": report.key, "title": report.title, "markdown": report.markdown,
                "summary": report.summary}, headers={}, timeout=settings.alert_timeout_s)


def deliver_email(report: AlertReport, settings: Settings) -> None:
    """Mail the markdown as text, ``alert.html`` as the HTML alternative, the rest attached."""
    if not settings.smtp_host:
        raise SinkError("alert_email_to is set but smtp_host is not")
    sender = settings.alert_email_from or f"esmwatch@{socket.getfqdn()}"
    message = EmailMessage()
    message["Subject"] = report.title
    message["From"] = sender
    message["To"] = ", ".join(settings.alert_email_to)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message["X-Esmwatch-Alert"] = report.key
    message.set_content(report.markdown)
    html = next((path for path in report.files if path.suffix.lower() in (".html", ".htm")), None)
    if html is not None:
        message.add_alternative(html.read_text(encoding="utf-8"), subtype="html")
    for path in report.files:
        if path == html or path.suffix.lower() == ".md":  # already the two bodies
            continue
        maintype, _, subtype = (mimetypes.guess_type(path.name)[0]
                                or "application/octet-stream").partition("/")
        message.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype,
                               filename=path.name)
    server = f"SMTP server {settings.smtp_host}:{settings.smtp_port}"
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port,
                          timeout=settings.alert_timeout_s) as smtp:
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                password = (settings.smtp_password.get_secret_value()
                            if settings.smtp_password else "")
                smtp.login(settings.smtp_user, password)
            refused = smtp.send_message(message)
    except TimeoutError:
        raise SinkError(f"{server} did not answer within {settings.alert_timeout_s:g} s") from None
    except OSError as err:  # smtplib's errors included
        raise SinkError(f"{server}: {_reason(err)}") from None
    if refused:  # others got it: retrying would mail them twice
        log.warning("alert %r: the SMTP server refused %s", report.key, sorted(refused))


def deliver_github(report: AlertReport, settings: Settings) -> None:
    """Comment on ``alert_github_issue``; the figures are named, the API cannot attach them."""
    assert settings.alert_github_issue is not None
    if settings.github_token is None:
        raise SinkError("alert_github_issue is set but github_token is not")
    repository, number = settings.alert_github_issue.split("#")
    footer = f"\n\n---\n<sub>esmwatch alert `{report.key}`"
    if report.files:
        names = ", ".join(f"`{path.name}`" for path in report.files)
        footer += f"; full report ({names}) in `{archive_dir(settings, report.key)}`"
    footer += "</sub>\n"
    body = report.markdown
    if len(body) + len(footer) > GITHUB_COMMENT_LIMIT:
        cut = "\n\n*(truncated: see the full report)*"
        body = body[:GITHUB_COMMENT_LIMIT - len(footer) - len(cut)] + cut
    url = f"{settings.github_api_url.rstrip('/')}/repos/{repository}/issues/{number}/comments"
    _post_json(url, {"body": body + footer}, timeout=settings.alert_timeout_s, headers={
        "Authorization": f"Bearer {settings.github_token.get_secret_value()}",
        "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"})


SINKS: tuple[Sink, ...] = (
    Sink("file", lambda settings: True, deliver_file),
    Sink("webhook", lambda settings: bool(settings.alert_webhook_url), deliver_webhook),
    Sink("email", lambda settings: bool(settings.alert_email_to), deliver_email),
    Sink("github", lambda settings: bool(settings.alert_github_issue), deliver_github),
)
"""Every sink, in delivery order: the file copy first, so it exists when others name it."""


def configured_sinks(settings: Settings) -> list[Sink]:
    return [sink for sink in SINKS if sink.configured(settings)]


# ---- sending once ---------------------------------------------------------------------------


def send_alert(store: Store, report: AlertReport, settings: Settings) -> AlertOutcome:
    """Deliver ``report`` to every configured sink that does not have it yet; never raises.

    The first call with a key claims it and sends everywhere; a later call sends only to
    the sinks that failed before (``already_sent`` once all have it), and a call while
    another sender holds the claim sends nothing (``held_elsewhere``).
    """
    outcome = AlertOutcome(key=report.key)
    try:
        alert, claimed = store.claim_alert(report.key, report.payload())
    except (SQLAlchemyError, EsmwatchError) as err:
        reason = f"cannot claim the alert in the database: {_first_line(err)}"
        log.error("alert %r not sent: %s", report.key, reason)
        outcome.failed["store"] = reason
        return outcome
    if not claimed:
        outcome.already_sent = alert.sent_at is not None
        outcome.held_elsewhere = not outcome.already_sent
        log.info("alert %r %s", report.key, "already sent" if outcome.already_sent
                 else "is being sent by another process")
        return outcome

    done = list(alert.sinks)
    for sink in configured_sinks(settings):
        if sink.name in done:
            continue
        try:
            sink.deliver(report, settings)
        except Exception as err:  # a broken sink must not stop the others or the scan
            outcome.failed[sink.name] = _reason(err)
            log.warning("alert %r: %s sink failed: %s", report.key, sink.name,
                        outcome.failed[sink.name],
                        exc_info=not isinstance(err, SinkError | OSError))  # else a bug: trace it
            continue
        done.append(sink.name)
        outcome.delivered.append(sink.name)
        log.info("alert %r delivered to %s", report.key, sink.name)
        try:
            store.record_alert_sinks(report.key, done)
        except (SQLAlchemyError, EsmwatchError) as err:  # the release below saves it
            log.error("alert %r: could not record delivery to %s: %s", report.key, sink.name,
                      _first_line(err))
    try:
        store.release_alert(report.key, sinks=done, failed=outcome.failed,
                            sent=not outcome.failed)
    except (SQLAlchemyError, EsmwatchError) as err:
        reason = f"cannot record the delivery: {_first_line(err)}"
        log.error("alert %r: %s (the claim lapses after the lease)", report.key, reason)
        outcome.failed["store"] = reason
    return outcome


def resend_unsent(store: Store, settings: Settings) -> list[AlertOutcome]:
    """Retry every alert some sink has not received, from what the store and file sink kept.

    For reports whose key the scan will not produce again (the member has moved on), so a
    sink that was down still gets them.  Files come from the file sink's copy when it has
    one.
    """
    outcomes = []
    for alert in store.unsent_alerts():
        try:
            report = stored_report(alert, settings)
        except ValidationError as err:
            log.error("alert %r cannot be rebuilt from the store: %s", alert.dedupe_key, err)
            continue
        outcomes.append(send_alert(store, report, settings))
    return outcomes


def stored_report(alert: Alert, settings: Settings) -> AlertReport:
    """Rebuild the report an alert row was made from, preferring the archived files."""
    fields = {name: alert.payload[name] for name in ("title", "markdown", "summary", "files")
              if name in alert.payload}
    archived = archive_dir(settings, alert.dedupe_key)
    fields["files"] = [archived / Path(name).name if (archived / Path(name).name).is_file()
                       else Path(name) for name in fields.get("files", [])]
    return AlertReport(key=alert.dedupe_key, **fields)


# ---- helpers --------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirected POST is a failure (non-2xx), not a silent GET somewhere else."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def _post_json(url: str, body: dict[str, Any], *, headers: dict[str, str],
               timeout: float) -> None:
    """POST JSON and require a 2xx answer.

    Reasons name only the scheme and host: webhook URLs often carry their secret in the
    path, and reasons end up in logs and in the alerts table.
    """
    parts = urllib.parse.urlsplit(url)
    where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers})
    try:
        with _opener.open(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as err:
        detail = err.read(300).decode("utf-8", "replace").strip()
        raise SinkError(f"{where} answered HTTP {err.code} {err.reason}"
                        + (f": {detail}" if detail else "")) from None
    except urllib.error.URLError as err:
        raise SinkError(f"cannot reach {where}: {err.reason}") from None
    except TimeoutError:
        raise SinkError(f"{where} did not answer within {timeout:g} s") from None


def _reason(err: BaseException) -> str:
    if isinstance(err, SinkError):
        return str(err)
    if isinstance(err, TimeoutError):
        return "timed out"
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _jsonable(value: Any) -> Any:
    """JSON for the few non-JSON types a scan summary naturally holds."""
    if callable(getattr(value, "tolist", None)):  # numpy scalars and arrays
        return value.tolist()
    if callable(getattr(value, "isoformat", None)):  # datetime, date, cftime dates
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
