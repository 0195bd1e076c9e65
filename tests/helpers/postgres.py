"""A throwaway PostgreSQL cluster on loopback (Debian's ``initdb``/``pg_ctl`` under
``/usr/lib/postgresql/*/bin``; run as user ``postgres`` when started as root), for tests and benchmarks."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path


class Unavailable(RuntimeError):
    """No PostgreSQL server binaries, or no user to run them as (the message says which)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a cluster (trust auth, fsync off) and yield its base URL ``postgresql+psycopg://...:PORT``.

    Raises:
        Unavailable: psycopg or the server binaries are missing, or root has no ``postgres`` user.
    """
    try:
        import psycopg  # noqa: F401 - optional: only the PostgreSQL backend needs it
    except ImportError:
        raise Unavailable("psycopg is not installed (pip install 'cxrmap[postgres]')") from None
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise Unavailable("PostgreSQL server binaries not installed (apt-get install postgresql)")
    bindir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="cxrmap-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise Unavailable("running as root and there is no 'postgres' user to run the cluster") from None
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    os.chmod(root, 0o700)
    port = free_port()
    data = root / "data"

    def run(*args) -> None:
        subprocess.run(as_user + [str(a) for a in args], check=True, capture_output=True, timeout=120)

    run(bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    run(bindir / "pg_ctl", "-D", data, "-l", root / "server.log", "-w", "-t", "60", "-o", options, "start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def create_database(base: str) -> str:
    """A new empty database in the cluster at ``base``; its URL."""
    import psycopg  # optional: only the PostgreSQL backend needs it

    name = f"cxrmap_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(
        base.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True
    ) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{base}/{name}"
