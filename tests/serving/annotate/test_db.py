"""The versioned schema: a version-1 database (JSON as text, states as plain strings) is upgraded in place
to version 2 and every row reads back with its values; a row that cannot be upgraded is a clear error."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from cxrmap.serving.annotate.db import (
    SCHEMA_VERSION,
    Accepted,
    Candidate,
    Database,
    Draft,
    Image,
    Job,
    LoginLimit,
    Project,
    Review,
    Round,
    SchemaError,
    SchemaVersion,
    User,
    default_url,
)

SCHEMA_V1 = Path(__file__).resolve().parents[2] / "helpers" / "annotate_schema_v1.sql"
WHEN = "2026-01-02 03:04:05.000000"
ROWS_V1 = [
    "INSERT INTO schema_version VALUES (1)",
    f"INSERT INTO users VALUES (1, 'admin', 'h1', 'admin', 1, '{WHEN}')",
    f"INSERT INTO users VALUES (2, 'rev1', 'h2', 'reviewer', 1, '{WHEN}')",
    "INSERT INTO projects VALUES (1, 'ward', 2, "
    f"""'{{"kind": "folder", "images": "/x", "masks": null}}', '{WHEN}')""",
    f"INSERT INTO projects VALUES (2, 'empty source', 1, '', '{WHEN}')",
    "INSERT INTO members VALUES (1, 2)",
    f"INSERT INTO rounds VALUES (1, 1, 1, 7, '{WHEN}')",
    "INSERT INTO images VALUES (1, 1, 'a', '/x/a.png', 64, 48, "
    f"'masks/manual/m.png', 'accepted', 1, '{WHEN}')",
    f"INSERT INTO images VALUES (2, 1, 'b', '/x/b.png', 64, 48, '', 'new', NULL, '{WHEN}')",
    f"INSERT INTO candidates VALUES (1, 1, 1, 1, 'manual', '', NULL, 'masks/manual/m.png', '{WHEN}')",
    "INSERT INTO candidates VALUES (2, 1, 1, 1, 'model', 'unet:resnet18', 0, "
    f"'masks/candidates/c.png', '{WHEN}')",
    f"""INSERT INTO reviews VALUES (1, 'r_1', 1, 1, 2, '[2, 1]', '["A", "B"]', '["c_x", "c_y"]', 'done',
        'reject', NULL, NULL, 2, 'masks/drawn/d.png', 'abc', '{WHEN}', '{WHEN}', '{WHEN}')""",
    f"""INSERT INTO reviews VALUES (2, 'r_2', 2, 1, 2, '[1]', '["A"]', '["c_z"]', 'open',
        NULL, NULL, NULL, NULL, NULL, NULL, '{WHEN}', '{WHEN}', NULL)""",
    f"""INSERT INTO drafts VALUES (2, 5, '{{"mask": [1, 2], "note": "é"}}', '{WHEN}')""",
    f"INSERT INTO accepted_masks VALUES (1, 1, 1, 1, 'reject', NULL, 1, 'masks/drawn/d.png', '{WHEN}')",
    f"""INSERT INTO jobs VALUES (7, 1, 'stage1', '{{"folds": 2}}', 'done', 1.0, 'done', '',
        '{{"images": 1}}', 1, 0, '{WHEN}', '{WHEN}', '{WHEN}')""",
    "INSERT INTO jobs VALUES (8, 1, 'export', '', 'failed', 0.5, '', 'disk full', '', 1, 0, "
    f"'{WHEN}', NULL, NULL)",
]


def write_v1(path: Path, rows: list[str]) -> None:
    with sqlite3.connect(path) as connection:
        connection.executescript(SCHEMA_V1.read_text())
        for row in rows:
            connection.execute(row)


def test_a_version_1_database_is_upgraded_in_place_and_every_row_reads_back(tmp_path):
    write_v1(tmp_path / "annotate.db", ROWS_V1)
    db = Database(default_url(tmp_path))
    when = datetime(2026, 1, 2, 3, 4, 5)
    try:
        with db.session() as session:
            assert max(session.scalars(select(SchemaVersion.version))) == SCHEMA_VERSION == 2
            users = session.scalars(select(User).order_by(User.id)).all()
            assert [(u.username, u.role, u.active, u.created_at) for u in users] == [
                ("admin", "admin", True, when),
                ("rev1", "reviewer", True, when),
            ]
            projects = session.scalars(select(Project).order_by(Project.id)).all()
            assert [(p.name, p.reviews_per_image, p.source) for p in projects] == [
                ("ward", 2, {"kind": "folder", "images": "/x", "masks": None}),
                ("empty source", 1, {}),
            ]
            images = session.scalars(select(Image).order_by(Image.id)).all()
            assert [(i.name, i.width, i.height, i.manual_path, i.status, i.round_id) for i in images] == [
                ("a", 64, 48, "masks/manual/m.png", "accepted", 1),
                ("b", 64, 48, "", "new", None),
            ]
            candidates = session.scalars(select(Candidate).order_by(Candidate.id)).all()
            assert [(c.origin, c.model, c.fold, c.mask_path) for c in candidates] == [
                ("manual", "", None, "masks/manual/m.png"),
                ("model", "unet:resnet18", 0, "masks/candidates/c.png"),
            ]
            done, open_ = session.scalars(select(Review).order_by(Review.id)).all()
            assert (done.order, done.labels, done.tokens, done.status, done.decision) == (
                [2, 1],
                ["A", "B"],
                ["c_x", "c_y"],
                "done",
                "reject",
            )
            assert (done.start_from_id, done.drawn_path, done.digest, done.submitted_at) == (
                2,
                "masks/drawn/d.png",
                "abc",
                when,
            )
            assert (open_.order, open_.status, open_.decision, open_.submitted_at) == (
                [1],
                "open",
                None,
                None,
            )
            draft = session.get(Draft, 2)
            assert (draft.seq, draft.state) == (5, {"mask": [1, 2], "note": "é"})
            accepted = session.get(Accepted, 1)
            assert (accepted.decision, accepted.review_id, accepted.mask_path) == (
                "reject",
                1,
                "masks/drawn/d.png",
            )
            assert session.get(Round, 1).job_id == 7
            jobs = session.scalars(select(Job).order_by(Job.id)).all()
            assert [(j.kind, j.params, j.state, j.result, j.error) for j in jobs] == [
                ("stage1", {"folds": 2}, "done", {"images": 1}, ""),
                ("export", {}, "failed", {}, "disk full"),
            ]
            assert session.scalars(select(LoginLimit)).all() == []
        with db.session(write=True) as session:
            session.add(LoginLimit(key="user:rev1", failures=1, level=0.0, updated_at=1.0, blocked_until=0.0))
    finally:
        db.dispose()
    again = Database(default_url(tmp_path))  # opening an upgraded database again changes nothing
    with again.session() as session:
        assert sorted(session.scalars(select(SchemaVersion.version))) == [1, 2]
        assert session.get(LoginLimit, "user:rev1").failures == 1
    again.dispose()


def test_a_row_that_cannot_be_upgraded_is_a_clear_error_and_changes_nothing(tmp_path):
    write_v1(
        tmp_path / "annotate.db",
        [*ROWS_V1[:4], f"INSERT INTO users VALUES (3, 'x', 'h', 'root', 1, '{WHEN}')"],
    )
    with pytest.raises(SchemaError, match=r"users.role holds \['root'\], not one of \['admin', 'reviewer'\]"):
        Database(default_url(tmp_path))
    with sqlite3.connect(tmp_path / "annotate.db") as connection:
        assert connection.execute("SELECT max(version) FROM schema_version").fetchone() == (1,)
        assert "login_limits" not in {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
    (tmp_path / "bad").mkdir()
    bad_json = f"INSERT INTO projects VALUES (1, 'w', 1, '{{not json', '{WHEN}')"
    write_v1(tmp_path / "bad" / "annotate.db", [*ROWS_V1[:3], bad_json])
    with pytest.raises(SchemaError, match=r"a row of projects.source is not JSON \('\{not json'\)"):
        Database(default_url(tmp_path / "bad"))


@pytest.fixture(scope="module")
def postgres():
    from tests.helpers.postgres import Unavailable, postgres_cluster

    try:
        with postgres_cluster() as base:
            yield base
    except Unavailable as why:
        pytest.skip(str(why))


def test_a_version_1_postgresql_database_is_upgraded_in_place(postgres):
    from sqlalchemy import create_engine, text

    from cxrmap.serving.annotate.db import JSON_COLUMNS, Base
    from tests.helpers.postgres import create_database

    url = create_database(postgres)
    engine = create_engine(url)
    with engine.begin() as connection:  # version 1: the same tables, JSON as text, no login_limits
        Base.metadata.create_all(
            connection, tables=[t for t in Base.metadata.sorted_tables if t.name != "login_limits"]
        )
        for table, columns in JSON_COLUMNS.items():
            for column in columns:
                connection.execute(text(f'ALTER TABLE {table} ALTER COLUMN "{column}" TYPE TEXT'))
        connection.execute(text("INSERT INTO schema_version VALUES (1)"))
        source = '{"kind": "tree", "root": "/t"}'
        connection.execute(text(f"INSERT INTO projects VALUES (1, 'ward', 2, '{source}', '{WHEN}')"))
        connection.execute(
            text(
                "INSERT INTO jobs VALUES (1, 1, 'import', '', 'done', 1.0, '', '', "
                f"""'{{"images": 3}}', 1, false, '{WHEN}', NULL, NULL)"""
            )
        )
    engine.dispose()
    db = Database(url)
    try:
        with db.session() as session:
            assert max(session.scalars(select(SchemaVersion.version))) == 2
            assert session.get(Project, 1).source == {"kind": "tree", "root": "/t"}
            job = session.get(Job, 1)
            assert (job.kind, job.params, job.state, job.result) == ("import", {}, "done", {"images": 3})
        with db.session(write=True) as session:
            session.add(
                LoginLimit(key="ip:1.2.3.4", failures=0, level=1.0, updated_at=1.0, blocked_until=0.0)
            )
    finally:
        db.dispose()
