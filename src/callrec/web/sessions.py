"""Console sessions: signed, expiring cookie tokens bound to the account's password hash.

A token is ``PAYLOAD.SIGNATURE``: the payload names the user, the expiry and a random
session id; the signature is an HMAC over the payload *and the user's current password
hash*, so changing a password (or removing the user) ends every session of that account.
Signing out adds the session id to a small in-process revocation set until it expires.

Nothing is stored per session on the server, so every process sharing the database accepts
the same cookie; only the revocation set is per process (the browser drops the cookie on
sign-out either way).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from callrec.auth import Principal
from callrec.services import Services
from callrec.settings import Settings
from callrec.store import UNKNOWN, User

SESSION_COOKIE = "callrec_session"
# The session cookie authenticates reads only: the API's writes stay HTTP Basic only.
COOKIE_METHODS = frozenset({"GET", "HEAD"})
_MAX_TOKEN = 2048
_MAX_REVOKED = 10_000


@dataclass(frozen=True, slots=True)
class Claims:
    """What a well-formed token says, before its signature is checked against the user."""

    name: str
    expires_ms: int
    sid: str
    payload: str
    signature: str


@dataclass(frozen=True, slots=True)
class Session:
    """A verified session: the signed-in user as of this request."""

    user: Principal
    sid: str
    expires_ms: int


def principal_of(user: User) -> Principal:
    return Principal(user.name, user.role, user.ccid, user.first_name, user.last_name)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionManager:
    """Issues and checks session tokens and the console's form (CSRF) tokens."""

    def __init__(self, key: bytes, lifetime: float, clock: Callable[[], float] = time.time) -> None:
        self._sign_key = hmac.new(key, b"callrec session token", hashlib.sha256).digest()
        self._form_key = hmac.new(key, b"callrec form token", hashlib.sha256).digest()
        self.lifetime = lifetime
        self.clock = clock  # seconds since the epoch; tests move it
        self._revoked: dict[str, int] = {}
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def issue(self, user: User) -> tuple[str, Session]:
        """A new token for ``user`` (whose password was just checked) and its session."""
        expires_ms = self.now_ms() + max(1, int(self.lifetime * 1000))
        sid = secrets.token_urlsafe(16)
        payload = _b64(orjson.dumps([user.name, expires_ms, sid]))
        token = f"{payload}.{self._sign(payload, user.password_hash)}"
        return token, Session(principal_of(user), sid, expires_ms)

    def claims(self, token: str | None) -> Claims | None:
        """The claims of a well-formed, unexpired, unrevoked token; None otherwise."""
        if not token or len(token) > _MAX_TOKEN:
            return None
        payload, _, signature = token.partition(".")
        try:
            name, expires_ms, sid = orjson.loads(_unb64(payload))
        except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
            return None
        if not (isinstance(name, str) and type(expires_ms) is int and isinstance(sid, str)):
            return None
        if expires_ms <= self.now_ms():
            return None
        with self._lock:
            if sid in self._revoked:
                return None
        return Claims(name, expires_ms, sid, payload, signature)

    def verify(self, claims: Claims, user: User) -> bool:
        """Whether ``claims`` were signed for this user with their current password hash."""
        expected = self._sign(claims.payload, user.password_hash)
        return hmac.compare_digest(claims.signature.encode(), expected.encode())

    def revoke(self, session: Session) -> None:
        now = self.now_ms()
        with self._lock:
            if len(self._revoked) >= _MAX_REVOKED:
                self._revoked = {k: v for k, v in self._revoked.items() if v > now}
            self._revoked[session.sid] = session.expires_ms

    def form_token(self, purpose: str, binding: str) -> str:
        """The CSRF token a form for ``purpose`` carries, bound to a cookie's value."""
        message = f"{purpose}\0{binding}".encode()
        return hmac.new(self._form_key, message, hashlib.sha256).hexdigest()

    def check_form_token(self, purpose: str, binding: str | None, presented: object) -> bool:
        if not binding or not isinstance(presented, str):
            return False
        return hmac.compare_digest(presented.encode(), self.form_token(purpose, binding).encode())

    def _sign(self, payload: str, password_hash: str) -> str:
        message = f"{payload}\0{password_hash}".encode()
        return _b64(hmac.new(self._sign_key, message, hashlib.sha256).digest())


def open_sessions(services: Services) -> SessionManager:
    """The session manager of an app, keyed by a secret every process shares."""
    return SessionManager(services.store.secret("session"), services.settings.session_seconds)


async def current_session(request: Request, services: Services) -> Session | None:
    """The session the request's cookie proves, re-checked against the user as stored now.

    Contact-center users only: an OPS account acts on every tenant and never gets a session.
    """
    manager: SessionManager | None = getattr(request.app.state, "sessions", None)
    if manager is None:
        return None
    claims = manager.claims(request.cookies.get(SESSION_COOKIE))
    if claims is None:
        return None
    store = services.store
    user = store.peek_user(claims.name)
    if user is UNKNOWN:
        user = await run_in_threadpool(store.get_user, claims.name)
    if user is None or user.ccid is None or not manager.verify(claims, user):
        return None
    return Session(principal_of(user), claims.sid, claims.expires_ms)


def cookie_path(settings: Settings) -> str:
    return f"{settings.root_path}/"


def is_secure(request: Request, settings: Settings) -> bool:
    """Whether cookies get the Secure flag: the console is reached over HTTPS."""
    public = settings.public_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


def set_cookie(
    response: Response,
    request: Request,
    settings: Settings,
    name: str,
    value: str,
    *,
    max_age: int | None = None,
    path: str | None = None,
) -> None:
    """HttpOnly, SameSite=Strict, scoped to the root prefix; Secure over HTTPS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path or cookie_path(settings),
        secure=is_secure(request, settings),
        httponly=True,
        samesite="strict",
    )


def clear_cookie(
    response: Response, request: Request, settings: Settings, name: str, path: str | None = None
) -> None:
    response.delete_cookie(
        name,
        path=path or cookie_path(settings),
        secure=is_secure(request, settings),
        httponly=True,
        samesite="strict",
    )
