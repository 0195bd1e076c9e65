"""Accounts, sessions, CSRF tokens and login rate limits of the annotation server.

- Passwords are hashed with Argon2id (argon2-cffi); there are no default accounts (``cxrmap annotate
  create-user`` makes the first admin, reading the password from a prompt or stdin).
- A session is a random token in an HttpOnly, SameSite=Strict cookie; the database stores only its HMAC
  under the server's secret key (a stolen database holds no usable session). Sessions end after
  :data:`IDLE_TIMEOUT` without a request and :data:`MAX_AGE` in all.
- Every state-changing request carries ``X-CSRF-Token``: the token bound to the session, or before login a
  pre-session token that must equal the ``cxrmap_csrf`` cookie (double submit).
- The secret key is generated at the first start into ``DIR/secret.key`` with mode 0600; a key readable by
  others is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import math
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select

from cxrmap.core.errors import CxrmapError
from cxrmap.serving.annotate.db import Database, LoginLimit, User
from cxrmap.serving.annotate.errors import WorkflowConflict

ROLES = ("admin", "reviewer")
SESSION_COOKIE = "cxrmap_session"
CSRF_COOKIE = "cxrmap_csrf"
CSRF_HEADER = "X-CSRF-Token"
IDLE_TIMEOUT = timedelta(hours=2)
MAX_AGE = timedelta(hours=12)
MIN_PASSWORD = 10
SECRET_FILE = "secret.key"
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class AuthError(CxrmapError):
    """A bad user name, role or password given to an account command."""


def check_username(name: str) -> str:
    """Return ``name`` if it is 1-64 letters, digits or ``_ . @ -``; raise :class:`AuthError` otherwise."""
    if not isinstance(name, str) or not _USERNAME.match(name):
        raise AuthError(f"user name {name!r} is not allowed: use 1-64 letters, digits or _ . @ -")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AuthError(f"role {role!r} is unknown; use one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise AuthError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise AuthError("the password is longer than 1024 characters")
    return password


def make_hasher(fast: bool = False):
    """The Argon2id hasher: argon2-cffi's defaults (RFC 9106 low-memory profile), or a cheap one for tests."""

    if fast:
        return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    return PasswordHasher()


def hash_password(hasher, password: str) -> str:
    return hasher.hash(check_password(password))


def verify_password(hasher, stored: str | None, password: str) -> bool:
    """True when ``password`` matches ``stored``; with ``stored=None`` a dummy hash is checked (same time)."""

    target = stored or _dummy_hash(hasher)
    try:
        ok = hasher.verify(target, password)
    except (VerificationError, InvalidHashError):
        return False
    return ok and stored is not None


_DUMMY: dict[int, str] = {}


def _dummy_hash(hasher) -> str:
    key = id(hasher)
    if key not in _DUMMY:
        _DUMMY[key] = hasher.hash(secrets.token_urlsafe(16))
    return _DUMMY[key]


def load_or_create_secret(folder: str | Path) -> bytes:
    """The server's secret key from ``folder/secret.key``, created (mode 0600, 32 random bytes) if missing.

    Raises:
        AuthError: the key file is readable or writable by others than its owner, or damaged.
    """
    path = Path(folder) / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
                handle.flush()
                os.fsync(handle.fileno())
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise AuthError(
            f"{path} can be read by other users (mode {oct(mode)}): the server's secret key must be private; "
            f"run `chmod 600 {path}` (or delete it: a new key logs everyone out)"
        )
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 32:
        raise AuthError(f"{path} does not hold a 64-hex-digit key; delete it to make a new one")
    return key


def session_id(secret: bytes, token: str) -> str:
    """The key under which a session token is stored: HMAC-SHA256(secret, token), hex."""
    return hmac.new(secret, token.encode(), hashlib.sha256).hexdigest()


def new_token(nbytes: int = 32) -> str:
    """A random hex token (hex: no word can appear in it by chance, which the blinding checks rely on)."""
    return secrets.token_hex(nbytes)


def same_token(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; False when either is missing."""
    return bool(given) and bool(expected) and hmac.compare_digest(str(given), str(expected))


@dataclass
class Principal:
    """The user behind a request."""

    user_id: int
    username: str
    role: str
    session_id: str
    csrf_token: str


class RateLimiter:
    """Failed logins per account (``user:NAME``) and per address (``ip:ADDRESS``), kept in the database
    (``login_limits``) so that a restart forgets nothing.

    - An account gets ``limits["user"]`` free failures, then waits :data:`BACKOFF` s, doubling with each
      further failure up to ``window`` s; a successful login, or ``window`` s without a failure, clears it.
    - An address may fail at a steady rate of ``limits["ip"]`` per ``window`` s (a leaky bucket of that
      size): past it, every attempt from the address waits its turn, which delays but never locks out
      another account's owner (an admin) logging in from the same address.

    Args:
        limits: ``{"user": free failures per account, "ip": failures per window per address}``.
        window: seconds.
        db: the :class:`~cxrmap.serving.annotate.db.Database` holding the state; None keeps it in memory.
        clock: wall-clock seconds (a stored time must survive a restart).
    """

    def __init__(
        self,
        limits: dict[str, int] | None = None,
        window: float = 900.0,
        db: Database | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limits = {"user": 5, "ip": 20, **(limits or {})}
        self.window = float(window)
        self.db = db
        self.clock = clock
        self._memory: dict[str, LoginLimit] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _records(self, keys: list[str], write: bool) -> Iterator[dict[str, LoginLimit]]:
        """The state of ``keys`` (fresh rows for unknown keys), saved at the end when ``write``."""
        if self.db is None:
            with self._lock:
                yield {key: self._memory.setdefault(key, _fresh(key)) for key in keys}
            return
        with self.db.session(write=write) as session:
            query = select(LoginLimit).where(LoginLimit.key.in_(keys))
            found = {r.key: r for r in session.scalars(query.with_for_update() if write else query)}
            for key in keys:
                if key not in found:
                    found[key] = _fresh(key)
                    if write:
                        session.add(found[key])
            yield found

    def _wait(self, record: LoginLimit, now: float) -> float:
        kind = record.key.split(":", 1)[0]
        if kind == "ip":
            rate = self.limits["ip"] / self.window
            return (_leaked(record, now, rate) - (self.limits["ip"] - 1)) / rate
        return record.blocked_until - now

    def retry_after(self, keys: list[str]) -> int:
        """Seconds to wait before another attempt under any of ``keys`` (0: go ahead)."""
        now = self.clock()
        with self._records(keys, write=False) as records:
            wait = max((self._wait(record, now) for record in records.values()), default=0.0)
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, keys: list[str]) -> None:
        """Count a failed login under ``keys``."""
        now = self.clock()
        with self._records(keys, write=True) as records:
            for key, record in records.items():
                if key.startswith("ip:"):
                    record.level = _leaked(record, now, self.limits["ip"] / self.window) + 1
                else:
                    if now - record.updated_at > self.window:
                        record.failures = 0
                    record.failures += 1
                    over = record.failures - self.limits["user"]
                    if over >= 0:
                        record.blocked_until = now + min(self.window, BACKOFF * 2.0 ** min(over, 30))
                record.updated_at = now

    def succeeded(self, key: str) -> None:
        """Clear an account's failures after its owner logged in."""
        if self.db is None:
            with self._lock:
                self._memory.pop(key, None)
            return
        with self.db.session(write=True) as session:
            session.execute(delete(LoginLimit).where(LoginLimit.key == key))


BACKOFF = 2.0
"""Seconds an account waits after its free failures; doubled with each further failure."""


def _fresh(key: str) -> LoginLimit:
    return LoginLimit(key=key, failures=0, level=0.0, updated_at=0.0, blocked_until=0.0)


def _leaked(record: LoginLimit, now: float, rate: float) -> float:
    """An address's bucket level now: its failures, drained at ``rate`` per second since the last one."""
    return max(0.0, record.level - max(0.0, now - record.updated_at) * rate)


def create_user(db, hasher, username: str, password: str, role: str) -> int:
    """Create an account (Argon2id password hash) in ``db``; return its id.

    Raises:
        AuthError: a bad name or role, or a short password.
        WorkflowConflict: the name is taken.
    """

    check_username(username)
    check_role(role)
    password_hash = hash_password(hasher, password)
    with db.session(write=True) as session:
        if session.scalar(select(User.id).where(User.username == username)) is not None:
            raise WorkflowConflict(f"the user name {username!r} is taken", code="name_taken")
        user = User(username=username, password_hash=password_hash, role=role)
        session.add(user)
        session.flush()
        return user.id
