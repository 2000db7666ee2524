"""A real, throwaway PostgreSQL server for tests, so nbgrader's gradebook can be tried on PostgreSQL.

nbgrader takes any SQLAlchemy URL (``--db=`` / ``CourseDirectory.db_url``); SQLite hides problems a
shared server shows (types, concurrent writers), so the tests start the real thing: the Debian
``postgresql`` package's binaries, a cluster in a temp folder, TCP on 127.0.0.1 only, sockets in that
folder (not /var/run), trust authentication, fsync off (nothing here needs to survive a crash).

Use ``running_postgres()`` directly, or the fixtures ``postgres_url`` (one server per test session)
and ``postgres_db_url`` (a new empty database per test); tests/conftest.py imports them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

SUPERUSER = "postgres"  # the cluster's superuser name (any name works; trust auth has no passwords)


def _bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin with the server tools (Debian's layout; they are not on PATH)."""
    candidates = [Path(d) for d in glob.glob("/usr/lib/postgresql/*/bin")]
    candidates.sort(key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)
    for directory in reversed(candidates):
        if all((directory / tool).is_file() for tool in ("initdb", "pg_ctl", "createdb")):
            return directory
    return None


def postgres_missing_reason() -> str | None:
    """Why a server cannot be started here (None when it can): the tests skip or fail with this text."""
    if _bin_dir() is None:
        return "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)"
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: it runs as Debian's `postgres` user instead
        try:
            import pwd
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no 'postgres' system user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root but `runuser` (util-linux) is missing to run PostgreSQL as 'postgres'"
    return None


def _free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (the kernel picks it, so parallel runs don't collide)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _check_traversable(directory: Path) -> None:
    """As root the server runs as 'postgres', which must reach the cluster folder (not so under /root)."""
    for parent in [directory, *directory.parents]:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise ValueError(f"{directory} is not reachable by the 'postgres' user ({parent} is not "
                             "world-traversable); put the server under /tmp")


@contextlib.contextmanager
def running_postgres(base_dir: Path | None = None, dbname: str = "gradebook") -> Iterator[str]:
    """Start a PostgreSQL cluster in a new temp folder under ``base_dir`` (default: the system temp
    folder) and yield a SQLAlchemy URL ``postgresql+psycopg2://postgres@127.0.0.1:PORT/<dbname>``;
    on exit stop the server and delete the folder."""
    reason = postgres_missing_reason()
    if reason:
        raise RuntimeError(reason)
    bin_dir = _bin_dir()
    base_dir = Path(base_dir or tempfile.gettempdir()).resolve()
    as_root = os.geteuid() == 0
    if as_root:
        _check_traversable(base_dir)
    root = Path(tempfile.mkdtemp(prefix="pg-", dir=base_dir))  # short: socket paths are limited to ~107 bytes
    data, log = root / "data", root / "server.log"
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(root, "postgres", "postgres")

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        # cwd=root: the postgres user may not be able to enter the caller's working directory
        return subprocess.run([*prefix, *args], cwd=root, capture_output=True, text=True, timeout=timeout)

    def fail(step: str, result: subprocess.CompletedProcess) -> None:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no server log)"
        raise RuntimeError(f"PostgreSQL {step} failed (exit {result.returncode}):\n"
                           f"{result.stdout[-2000:]}{result.stderr[-2000:]}\n--- server log tail ---\n{tail}")

    port = _free_port()
    started = False
    try:
        result = run(str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
                     "--encoding=UTF8", "--no-locale", "--no-sync")
        if result.returncode:
            fail("initdb", result)
        with open(data / "postgresql.conf", "a") as conf:  # appended settings override the defaults above
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{root}'\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        # -w: pg_ctl returns once the server accepts connections (or fails after -t seconds)
        result = run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start")
        started = True  # even on failure a half-started server may be running: always try to stop it
        if result.returncode:
            fail("start", result)
        result = run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, dbname)
        if result.returncode:
            fail("createdb", result)
        yield f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{port}/{dbname}"
    finally:
        if started:
            pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "30", "stop"]
            if run(*pg_ctl, "-m", "fast").returncode:
                run(*pg_ctl, "-m", "immediate")
        shutil.rmtree(root, ignore_errors=True)


def require_postgres() -> None:
    """Skip the test when PostgreSQL is not installed, except in CI (CI=true), where that is a failure:
    a CI run that silently skipped the PostgreSQL tests would look green while testing nothing."""
    reason = postgres_missing_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; in CI, .ci/run should have installed it (apt-get install postgresql)")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One real PostgreSQL server for the test session: yields its SQLAlchemy URL (database 'gradebook').
    Skips when PostgreSQL is not installed, or fails in CI (require_postgres)."""
    require_postgres()
    started = time.monotonic()
    with running_postgres() as url:
        print(f"PostgreSQL ready at {url} in {time.monotonic() - started:.1f}s")
        yield url


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on a running server (dropped afterwards): its SQLAlchemy URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:  # FORCE: a test may have left a connection open
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_db_url(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the session's server for one test (dropped afterwards): a fresh gradebook."""
    with fresh_database(postgres_url) as url:
        yield url
