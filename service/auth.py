"""Who may call the API: bearer tokens checked before anything else, scopes per endpoint.

The token is checked by an ASGI middleware, ahead of routing and body parsing, so a caller
without a valid token learns nothing about the endpoint (not even that its JSON was
malformed) and never makes the server read a body.  The check asks the database on every
request (one indexed read, :meth:`service.store.Store.check_token`): a revoked or expired
token is refused at once, in every server process, with no cache to wait out.

Scopes: ``read`` (look at jobs, results, ensembles, models, alerts), ``submit`` (submit and
cancel jobs), ``admin`` (register, change and remove ensembles, promote models, list and
revoke tokens, run scans).  Each endpoint states the one it needs with :func:`require`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from service.kinds import Scope as TokenScope
from service.settings import Settings
from service.store import ApiToken, get_store

log = logging.getLogger(__name__)

UNAVAILABLE = {"detail": "database unavailable; try again later"}
_bearer = HTTPBearer(auto_error=False, description="A token from `esmwatch token create`.")


class BearerAuth:
    """Refuse requests under ``prefix`` without a valid bearer token (401), body unread."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app, self.prefix = app, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        token = _bearer_token(dict(scope["headers"]).get(b"authorization", b""))
        try:
            record = await run_in_threadpool(_check, scope["app"].state.settings, token)
        except OperationalError as err:
            log.error("database unavailable: %s", err)
            await JSONResponse(UNAVAILABLE, status_code=503)(scope, receive, send)
            return
        if record is None:
            await JSONResponse(
                {"detail": "missing, invalid, expired or revoked bearer token"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )(scope, receive, send)
            return
        scope.setdefault("state", {})["token"] = record
        await self.app(scope, receive, send)


def _bearer_token(header: bytes) -> str | None:
    scheme, _, credentials = header.decode("latin-1").partition(" ")
    credentials = credentials.strip()
    return credentials if scheme.lower() == "bearer" and credentials else None


def _check(settings: Settings, token: str | None) -> ApiToken | None:
    return get_store(settings).check_token(token) if token else None


def require(scope: TokenScope | None) -> Callable[..., ApiToken]:
    """A dependency: the request's token, which must carry ``scope`` (else 403).

    ``None``: any valid token; the endpoint then calls :func:`check_scope` itself, for a
    scope that depends on the request (a scan job needs ``admin``, other jobs ``submit``).
    """

    async def scoped(  # async: no thread hop for a check that never blocks
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> ApiToken:
        token: ApiToken | None = getattr(request.state, "token", None)
        if token is None:  # the middleware is not installed: refuse rather than allow
            raise HTTPException(
                401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        if scope is not None:
            check_scope(token, scope)
        return token

    return scoped


def check_scope(token: ApiToken, scope: TokenScope) -> None:
    """403 unless ``token`` carries ``scope``."""
    if not token.allows(scope):
        raise HTTPException(
            403,
            f"token {token.name!r} lacks the {scope!r} scope (it has: {', '.join(token.scopes)})",
        )
