"""``cxrmap annotate import`` through the console entry point: a failed import leaves no project behind,
``--tree`` reads what ``cxrmap index`` reads (COVID-QU-Ex included), and each error names its own source."""

from __future__ import annotations

import sys

from sqlalchemy import func, select

from cxrmap.cli import main
from cxrmap.serving.annotate.db import Database, Image, Project, default_url
from tests.helpers.annotate import tiny_data


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``cxrmap annotate ARGS`` through :func:`cxrmap.cli.main`: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["cxrmap", "annotate", *args])
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def project_names(folder) -> list[str]:
    db = Database(default_url(folder))
    try:
        with db.session() as session:
            return list(session.scalars(select(Project.name).order_by(Project.name)))
    finally:
        db.dispose()


def test_a_failed_import_leaves_no_project_and_the_name_free(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    srv = tmp_path / "srv"
    code, _, err = run_cli(
        monkeypatch, capsys, "import", "--project", str(srv), "--name", "ward", "--images", str(empty)
    )
    assert code == 2
    assert "error: no radiograph (PNG, JPEG or DICOM) was found in the images folder" in err
    assert "tree" not in err
    assert project_names(srv) == []
    code, _, err = run_cli(
        monkeypatch, capsys, "import", "--project", str(srv), "--name", "ward", "--tree", str(empty)
    )
    assert code == 2
    assert "error: no COVID-19 radiograph was found under" in err and "COVID-QU-Ex" not in err
    assert "Infection Segmentation Data" in err and "QaTa-COV19-v1" in err
    assert project_names(srv) == []
    images_dir, manual_dir, _, _ = tiny_data(tmp_path / "data", n_images=4)
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "import",
        "--project",
        str(srv),
        "--name",
        "ward",
        "--images",
        str(images_dir),
        "--masks",
        str(manual_dir),
    )
    assert code == 0, err
    assert "project ward: 4 images, 2 with manual masks" in out
    assert project_names(srv) == ["ward"]


def test_an_import_that_fails_midway_is_removed_with_its_mask_files(tmp_path, monkeypatch, capsys):
    from cxrmap.serving.annotate import projects

    images_dir, manual_dir, _, _ = tiny_data(tmp_path / "data", n_images=4)
    srv = tmp_path / "srv"
    real = projects._insert
    calls = []

    def insert_then_fail(db, images):
        if calls:  # the second batch: its rows are never written
            raise OSError("disk full")
        real(db, images)
        calls.append(len(images))

    monkeypatch.setattr(projects, "BATCH", 2)
    monkeypatch.setattr(projects, "_insert", insert_then_fail)
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "import",
        "--project",
        str(srv),
        "--name",
        "ward",
        "--images",
        str(images_dir),
        "--masks",
        str(manual_dir),
    )
    assert code == 2
    assert "error: job 1 (import) failed: internal error (OSError); see the server log" in err
    assert calls == [2]
    assert project_names(srv) == []
    assert not list((srv / "masks").rglob("*.png"))


def test_tree_import_reads_a_covid_qu_ex_tree(samples_root, tmp_path, monkeypatch, capsys):
    srv = tmp_path / "srv"
    code, out, err = run_cli(
        monkeypatch, capsys, "import", "--project", str(srv), "--name", "quex", "--tree", str(samples_root)
    )
    assert code == 0, err
    covid = sorted((samples_root / "Infection Segmentation Data").glob("*/COVID-19/images/*"))
    assert covid and f"project quex: {len(covid)} images, {len(covid)} with manual masks" in out
    db = Database(default_url(srv))
    with db.session() as session:
        paths = set(session.scalars(select(Image.path)))
        assert session.scalar(select(func.count()).select_from(Image).where(Image.manual_path != "")) == len(
            covid
        )
    db.dispose()
    assert paths == {str(p) for p in covid}
