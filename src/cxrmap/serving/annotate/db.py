"""The annotation database: tables, the schema version, and transactions safe under concurrency.

SQLite by default (``DIR/annotate.db``; WAL journal, a busy timeout, ``synchronous=FULL`` so a committed
review survives a power cut, write transactions opened with ``BEGIN IMMEDIATE`` so concurrent writers queue
instead of failing), PostgreSQL by URL (``postgresql+psycopg://user@host/db``; row locks with
``SELECT ... FOR UPDATE`` serialise the claims and submissions of one image).

Tables: ``schema_version``, ``users``, ``auth_sessions``, ``login_limits``, ``projects``, ``members``,
``images``, ``rounds``, ``candidates``, ``reviews``, ``drafts``, ``accepted_masks`` (one row per image at
most: a unique constraint), ``jobs``. JSON values are SQLAlchemy ``JSON`` columns, states are enumerations
checked by SQLAlchemy (plain VARCHARs in the database).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from cxrmap.core.errors import CxrmapError

SCHEMA_VERSION = 2
"""The schema this code reads and writes; stored in the ``schema_version`` table. Version 2 (JSON and
enumerated columns, the ``login_limits`` table) upgrades a version-1 database in place
(:func:`upgrade_1_to_2`)."""

DB_FILE = "annotate.db"


class SchemaError(CxrmapError):
    """The database was written by another version of cxrmap (older or newer schema) or is not ours."""


def utcnow() -> datetime:
    """The current UTC time without tzinfo (stored that way in every backend)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def iso(value: datetime | None) -> str | None:
    """An ISO-8601 UTC string (``...Z``) for a stored time, None for None."""
    return None if value is None else value.replace(microsecond=0).isoformat() + "Z"


class Base(DeclarativeBase):
    pass


def _enum(*values: str) -> Enum:
    """A state column: a VARCHAR(16) whose values are checked against ``values`` by SQLAlchemy (no database
    type or constraint, so that a version-1 column already has this type)."""
    return Enum(*values, native_enum=False, length=16, validate_strings=True, create_constraint=False)


ROLE = _enum("admin", "reviewer")
IMAGE_STATUS = _enum("new", "pending", "accepted")
ORIGIN = _enum("manual", "model")
REVIEW_STATUS = _enum("open", "done", "withdrawn")
DECISION = _enum("choose", "reject")
JOB_KIND = _enum("import", "stage1", "stage2", "export")
JOB_STATE = _enum("queued", "running", "done", "failed", "cancelled")
JSON_COLUMNS = {
    "projects": {"source": "{}"},
    "reviews": {"order": "[]", "labels": "[]", "tokens": "[]"},
    "drafts": {"state": "{}"},
    "jobs": {"params": "{}", "result": "{}"},
}
"""The columns that version 1 kept as JSON text, and the value of an empty one."""


class SchemaVersion(Base):
    __tablename__ = "schema_version"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(ROLE)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AuthSession(Base):
    """A login: the cookie carries a random token, the table only its keyed hash (``id``)."""

    __tablename__ = "auth_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LoginLimit(Base):
    """The login rate limiter's state of one key (``user:NAME`` or ``ip:ADDRESS``); times in epoch seconds."""

    __tablename__ = "login_limits"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    level: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[float] = mapped_column(Float, default=0.0)
    blocked_until: Mapped[float] = mapped_column(Float, default=0.0)


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    reviews_per_image: Mapped[int] = mapped_column(Integer, default=1)
    source: Mapped[dict] = mapped_column(JSON, default=dict)  # where the images came from
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Member(Base):
    """A reviewer allowed to review a project's images."""

    __tablename__ = "members"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)


class Image(Base):
    """A radiograph of a project. ``status``: ``new`` (no candidates yet), ``pending`` (candidates under
    review in round ``round_id``), ``accepted`` (an accepted mask exists)."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))  # unique file stem in the project (export name)
    path: Mapped[str] = mapped_column(Text)  # absolute path of the radiograph
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    manual_path: Mapped[str] = mapped_column(Text, default="")  # the doctors' mask (relative to DIR), if any
    status: Mapped[str] = mapped_column(IMAGE_STATUS, default="new", index=True)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Round(Base):
    """The candidates of one stage run (one Stage I, or one of possibly several Stage II runs)."""

    __tablename__ = "rounds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    stage: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Candidate(Base):
    """A candidate mask of an image: the manual one or a network's prediction (``model``, ``fold``)."""

    __tablename__ = "candidates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"), index=True)
    stage: Mapped[int] = mapped_column(Integer)
    origin: Mapped[str] = mapped_column(ORIGIN)
    model: Mapped[str] = mapped_column(String(128), default="")
    fold: Mapped[int | None] = mapped_column(Integer, nullable=True)
    mask_path: Mapped[str] = mapped_column(Text)  # relative to DIR; random file name
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Review(Base):
    """One reviewer's blinded review of one image's candidates in one round.

    ``order`` (list of candidate ids) is the shuffled order shown, ``labels`` and ``tokens`` (lists) the
    labels (A, B, ...) and the opaque per-review candidate tokens at those positions.
    ``status``: ``open``, ``done`` or ``withdrawn`` (the image was completed by others meanwhile).
    """

    __tablename__ = "reviews"
    __table_args__ = (UniqueConstraint("round_id", "image_id", "reviewer_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    order: Mapped[list] = mapped_column(JSON)
    labels: Mapped[list] = mapped_column(JSON)
    tokens: Mapped[list] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(REVIEW_STATUS, default="open", index=True)
    decision: Mapped[str | None] = mapped_column(DECISION, nullable=True)
    choice_id: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"), nullable=True)
    choice_position: Mapped[int | None] = mapped_column(Integer, nullable=True)
    start_from_id: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"), nullable=True)
    drawn_path: Mapped[str | None] = mapped_column(Text, nullable=True)  # relative to DIR
    digest: Mapped[str | None] = mapped_column(String(64), nullable=True)  # of the submission (safe retries)
    opened_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_active_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Draft(Base):
    """The page state of an open review, saved continuously (the highest ``seq`` wins)."""

    __tablename__ = "drafts"
    review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Accepted(Base):
    """The accepted mask of an image (unique per image): a chosen candidate or a drawn mask."""

    __tablename__ = "accepted_masks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), unique=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"))
    stage: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(DECISION)
    candidate_id: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"), nullable=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id"))
    mask_path: Mapped[str] = mapped_column(Text)
    accepted_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Job(Base):
    """Background work (import, stage1, stage2, export); its whole state lives here."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(JOB_KIND)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(JOB_STATE, default="queued", index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict] = mapped_column(JSON, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


def default_url(project_dir: str | Path) -> str:
    """The SQLite URL of a project folder's database."""
    return f"sqlite:///{Path(project_dir).resolve() / DB_FILE}"


class Database:
    """Engines and sessions of one annotation database, its schema checked (and created when empty).

    Args:
        url: SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``).
        create: create the tables in an empty database.

    Raises:
        SchemaError: the database holds another schema version, or tables that are not ours.
    """

    def __init__(self, url: str, create: bool = True) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.write_engine = self._sqlite_engine(url, "BEGIN IMMEDIATE", "FULL")
            self.read_engine = self._sqlite_engine(url, "BEGIN", "FULL")
        else:
            self.write_engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
            self.read_engine = self.write_engine
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)
        self.check_schema(create)

    @staticmethod
    def _sqlite_engine(url: str, begin: str, synchronous: str):
        engine = create_engine(
            url, connect_args={"timeout": 60, "check_same_thread": False}, pool_size=10, max_overflow=20
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None  # transactions are begun below, not by the driver
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection) -> None:
            connection.exec_driver_sql(begin)

        return engine

    def check_schema(self, create: bool) -> None:
        """Create the tables in an empty database; otherwise require :data:`SCHEMA_VERSION`."""
        tables = set(inspect(self.read_engine).get_table_names())
        ours = set(Base.metadata.tables)
        if not tables & ours:
            if not create:
                raise SchemaError(f"the database {self.safe_url} holds no cxrmap annotation tables")
            Base.metadata.create_all(self.write_engine)
            if self.is_sqlite and self.write_engine.url.database:
                os.chmod(self.write_engine.url.database, 0o600)  # password hashes: private to the server
            with self.session(write=True) as session:
                if session.get(SchemaVersion, SCHEMA_VERSION) is None:
                    session.add(SchemaVersion(version=SCHEMA_VERSION))
            return
        if "schema_version" not in tables:
            raise SchemaError(
                f"the database {self.safe_url} has tables ({', '.join(sorted(tables & ours))}) but no "
                "schema_version table: it was not made by cxrmap annotate; use another database or folder"
            )
        with self.session() as session:
            versions = session.scalars(select(SchemaVersion.version)).all()
        found = max(versions) if versions else None
        if found == 1:
            upgrade_1_to_2(self)
            found = 2
        if found != SCHEMA_VERSION:
            if found is None or found < SCHEMA_VERSION:
                hint = (
                    "it was made by an older cxrmap; export its masks with that version "
                    "(`cxrmap annotate export`) or restore a backup that matches this version"
                )
            else:
                hint = "it was made by a newer cxrmap; upgrade cxrmap (pip install -U cxrmap) to open it"
            raise SchemaError(
                f"the annotation database {self.safe_url} has schema version {found}, this cxrmap reads "
                f"version {SCHEMA_VERSION}: {hint}"
            )

    @property
    def safe_url(self) -> str:
        """The URL without its password (for messages)."""

        return make_url(self.url).render_as_string(hide_password=True)

    @contextlib.contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        """A transaction: committed at the end of the block, rolled back on an exception.

        ``write=True`` takes SQLite's write lock at once (``BEGIN IMMEDIATE``), so read-then-write
        transactions never fail half-way with "database is locked".
        """
        session = (self._write if write else self._read)()
        try:
            with session.begin():
                yield session
        finally:
            session.close()

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` answer (``"ok"`` when sound); ``"ok"`` for other backends."""
        if not self.is_sqlite:
            return "ok"
        with self.read_engine.connect() as connection:
            rows = connection.exec_driver_sql("PRAGMA integrity_check").fetchall()
        return "; ".join(str(row[0]) for row in rows)

    def dispose(self) -> None:
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()


def upgrade_1_to_2(db: Database) -> None:
    """Upgrade a version-1 database in place, in one transaction: empty JSON texts become their empty
    value, every JSON text is checked, PostgreSQL's JSON columns change type, ``login_limits`` is created.

    Raises:
        SchemaError: a row holds text that is not JSON, or a state outside its enumeration.
    """
    with db.write_engine.connect() as connection, connection.begin():
        if not db.is_sqlite:  # SQLite's BEGIN IMMEDIATE already keeps a second server waiting
            connection.execute(text("LOCK TABLE schema_version IN EXCLUSIVE MODE"))
        if connection.execute(select(func.max(SchemaVersion.version))).scalar() != 1:
            return  # another server upgraded it meanwhile
        for table, columns in JSON_COLUMNS.items():
            for column, empty in columns.items():
                quoted = connection.dialect.identifier_preparer.quote(column)
                connection.execute(
                    text(f"UPDATE {table} SET {quoted} = :empty WHERE {quoted} IS NULL OR {quoted} = ''"),
                    {"empty": empty},
                )
                for value in connection.execute(text(f"SELECT {quoted} FROM {table}")).scalars():
                    try:
                        json.loads(value)
                    except ValueError:
                        raise SchemaError(
                            f"cannot upgrade {db.safe_url}: a row of {table}.{column} is not JSON "
                            f"({value[:60]!r}); repair or delete that row, then start again"
                        ) from None
                if not db.is_sqlite:
                    connection.execute(
                        text(f"ALTER TABLE {table} ALTER COLUMN {quoted} TYPE JSON USING {quoted}::json")
                    )
        for table in Base.metadata.sorted_tables:
            for column in table.columns:
                if isinstance(column.type, Enum):
                    allowed = set(column.type.enums)
                    quoted = connection.dialect.identifier_preparer.quote(column.name)
                    query = text(f"SELECT DISTINCT {quoted} FROM {table.name}")
                    found = set(connection.execute(query).scalars()) - {None}
                    if found - allowed:
                        raise SchemaError(
                            f"cannot upgrade {db.safe_url}: {table.name}.{column.name} holds "
                            f"{sorted(found - allowed)}, not one of {sorted(allowed)}"
                        )
        LoginLimit.__table__.create(connection, checkfirst=True)
        connection.execute(SchemaVersion.__table__.insert().values(version=2))
