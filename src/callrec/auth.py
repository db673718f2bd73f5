"""Accounts: argon2 password hashes, HTTP Basic authentication, roles and CSRF tokens."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import threading
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from callrec.errors import NotAuthenticated, OperationForbidden, PermissionDenied
from callrec.store import UNKNOWN, RecordingStore, User

ROLES = ("admin", "supervisor", "agent")
OPS = "ops"
CSRF_HEADER = "X-CSRF-TOKEN"
_hasher = PasswordHasher()
_CALLERS = 10_000  # callers remembered until the next commit, at most


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    name: str
    role: str
    ccid: str | None
    first_name: str | None = None
    last_name: str | None = None

    @property
    def is_ops(self) -> bool:
        return self.role == OPS

    def require_ops(self) -> None:
        if not self.is_ops:
            raise PermissionDenied("This operation needs an OPS account")

    def require_admin(self) -> None:
        """External API reads: Contact Center Admins and OPS accounts only (SPEC §2)."""
        if self.role not in ("admin", OPS):
            raise PermissionDenied()


def parse_basic(header: str | None) -> tuple[str, str]:
    if not header:
        raise NotAuthenticated()
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        raise NotAuthenticated()
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, binascii.Error):  # incl. UnicodeDecodeError and non-ASCII input
        raise NotAuthenticated() from None
    name, sep, password = decoded.partition(":")
    if not sep or not name or "\x00" in decoded:
        raise NotAuthenticated()
    return name, password


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash("callrec: no such user")


def _verify_hash(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _principal(user: User) -> Principal:
    return Principal(user.name, user.role, user.ccid, user.first_name, user.last_name)


class Authenticator:
    """Checks Basic credentials against the store.

    Argon2 is slow on purpose, so a successful verification is remembered for a while, keyed
    by the stored hash and a digest of the password: a changed password or a removed user
    takes effect on the next request, because the user row is read every time.

    On a store that tells commits cheaply (``change_token``), the caller a header names is
    also remembered until the next commit, keyed by a digest of the header: a player's
    every seek carries the same header, and nothing it is checked against can change without
    a commit.
    """

    def __init__(self, store: RecordingStore, cache_seconds: float, key: bytes) -> None:
        self._store = store
        self._ttl = cache_seconds
        self._key = key
        self._verified: dict[bytes, float] = {}
        self._callers: dict[bytes, tuple[bytes, float, Principal]] = {}
        self._lock = threading.Lock()

    def authenticate_cached(self, header: str | None) -> Principal | None:
        """The fast path, cheap enough for the event loop: the caller when these credentials
        were verified recently, else None (then call ``authenticate`` off the loop)."""
        version = self._store.change_token()  # before the reads it vouches for
        known = None
        if version is not None and header:
            known = hashlib.blake2b(header.encode(), key=self._key[:64]).digest()
            caller = self._callers.get(known)
            if caller is not None and caller[0] == version and caller[1] > time.monotonic():
                return caller[2]
        name, password = parse_basic(header)
        user = self._store.peek_user(name)
        if user is None or user is UNKNOWN:
            return None
        with self._lock:
            until = self._verified.get(self._token(user, password), 0.0)
        if until <= time.monotonic():
            return None
        principal = _principal(user)
        if version is not None and known is not None:
            if len(self._callers) >= _CALLERS:
                self._callers = {}
            self._callers[known] = (version, until, principal)
        return principal

    def authenticate(self, header: str | None) -> Principal:
        """The full check, paying for the slow hash when the result is not remembered."""
        return self.check_password(*parse_basic(header))

    def check_password(self, name: str, password: str) -> Principal:
        """The caller named ``name`` if ``password`` is theirs (Basic auth, console sign-in)."""
        if not name or "\x00" in name + password:
            raise NotAuthenticated("Invalid user name or password")
        user = self._store.get_user(name)
        if user is None:
            # Spend the same time as for a wrong password: user names are not revealed.
            _verify_hash(_dummy_hash(), password)
            raise NotAuthenticated("Invalid user name or password")
        token = self._token(user, password)
        now = time.monotonic()
        with self._lock:
            remembered = self._verified.get(token, 0.0) > now
        if not remembered and not _verify_hash(user.password_hash, password):
            raise NotAuthenticated("Invalid user name or password")
        if not remembered and self._ttl > 0:
            self._remember(token, now)
        return _principal(user)

    def _token(self, user: User, password: str) -> bytes:
        message = f"{user.password_hash}\0{password}".encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def _remember(self, token: bytes, now: float) -> None:
        with self._lock:
            if len(self._verified) > 10_000:
                self._verified = {k: v for k, v in self._verified.items() if v > now}
            self._verified[token] = now + self._ttl


class CsrfGuard:
    """GWS-style CSRF: a per-user token from ``GET /api/v2/me`` echoed on every write."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def token(self, principal: Principal) -> str:
        return hmac.new(self._key, principal.name.encode(), hashlib.sha256).hexdigest()

    def check(self, principal: Principal, presented: str | None) -> None:
        expected = self.token(principal).encode()
        if presented is None or not hmac.compare_digest(
            presented.encode(errors="replace"), expected
        ):
            raise OperationForbidden("CSRF token missing or wrong")
