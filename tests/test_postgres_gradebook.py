"""nbgrader's gradebook on a real PostgreSQL server (tests/pg_server.py): light, no autograding."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

import pg_server

# The fixtures postgres_url and postgres_db_url come from tests/pg_server.py via tests/conftest.py.


@pytest.fixture(autouse=True)
def alembic_on_path(monkeypatch):
    """nbgrader's Gradebook runs `alembic` from PATH when it creates a new gradebook: use this environment's."""
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))


def test_the_server_is_postgresql_on_localhost_only(postgres_url):
    engine = sa.create_engine(postgres_url)
    with engine.connect() as connection:
        version = connection.execute(sa.text("SELECT version()")).scalar_one()
        address = connection.execute(sa.text("SELECT host(inet_server_addr())")).scalar_one()
        listen = connection.execute(sa.text("SHOW listen_addresses")).scalar_one()
        sockets = connection.execute(sa.text("SHOW unix_socket_directories")).scalar_one()
    engine.dispose()
    assert version.startswith("PostgreSQL "), version
    assert (address, listen) == ("127.0.0.1", "127.0.0.1")
    assert sockets.startswith(os.path.realpath(tempfile.gettempdir())) and "/var/run" not in sockets


def test_nbgrader_gradebook_creates_its_tables_and_reads_back(postgres_db_url):
    from nbgrader.api import Gradebook

    with Gradebook(postgres_db_url) as gradebook:
        gradebook.add_student("ada", first_name="Ada", last_name="Lovelace", email="ada@example.org")
        gradebook.add_assignment("unet_segmentation", duedate=datetime(2030, 1, 31, 23, 59))
    engine = sa.create_engine(postgres_db_url)
    tables = set(sa.inspect(engine).get_table_names())
    engine.dispose()
    assert {"student", "assignment", "notebook", "grade", "alembic_version"} <= tables

    with Gradebook(postgres_db_url) as gradebook:  # a new connection: the rows really are in the database
        student = gradebook.find_student("ada")
        assert (student.first_name, student.last_name, student.email) == ("Ada", "Lovelace", "ada@example.org")
        assert gradebook.find_assignment("unet_segmentation").duedate == datetime(2030, 1, 31, 23, 59)
        assert [s.id for s in gradebook.students] == ["ada"]


# Each writer waits for the `go` file so both write at the same time, then adds its students one commit each.
WRITER = """
import json, os, sys, time
from nbgrader.api import Gradebook
url, prefix, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with Gradebook(url) as gradebook:
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.005)
    start = time.time()
    for i in range(count):
        gradebook.add_student(f"{prefix}{i:03d}", first_name=prefix)
    print(json.dumps([start, time.time()]), flush=True)
"""


def test_two_processes_adding_students_at_once_lose_nothing(postgres_db_url, tmp_path):
    from nbgrader.api import Gradebook

    with Gradebook(postgres_db_url):  # create the schema first: nbgrader's own creation is not race-free
        pass
    go, count = tmp_path / "go", 50
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, postgres_db_url, prefix, str(count), str(go)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for prefix in ("a", "b")]
    for writer in writers:
        assert writer.stdout.readline().strip() == "ready", writer.stderr.read()
    go.touch()
    spans = []
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        spans.append(json.loads(out))
    print(f"writer time spans (s since epoch): {spans}")

    with Gradebook(postgres_db_url) as gradebook:
        ids = [s.id for s in gradebook.students]
    expected = {f"{p}{i:03d}" for p in "ab" for i in range(count)}
    assert len(ids) == len(expected) and set(ids) == expected


def test_a_server_that_cannot_start_says_why_with_its_log(postgres_url, monkeypatch):
    with socket.socket() as busy:  # the port the server is given is already taken
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setattr(pg_server, "_free_port", lambda: busy.getsockname()[1])
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="(?s)start failed.*server log tail.*could not bind"):
            with pg_server.running_postgres():
                pass
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("ci", ["", "true"])
def test_missing_postgres_skips_but_fails_in_ci(ci, monkeypatch):
    monkeypatch.setattr(pg_server, "_bin_dir", lambda: None)
    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected, match=r"\.ci/run should have installed" if ci else "apt-get install postgresql"):
        pg_server.require_postgres()
