"""Export of the accepted masks as a QaTa-COV19 data set with a provenance manifest.

Layout (what :func:`cxrmap.data.readers.index_dataset` reads as ``qata-cov19-v1``)::

    OUT/QaTa-COV19-v1/Images/NAME.png
    OUT/QaTa-COV19-v1/Ground-truths/mask_NAME.png      accepted mask, 0/255, the image's size
    OUT/provenance.csv                                  a cxrmap manifest (``cxrmap train --manifest``)

``provenance.csv`` holds the manifest columns (absolute paths into OUT, label/group ``covid``, source
``annotate:<project>``, stratified folds when there are enough images) plus, per image: ``stage``,
``decision`` (choose | reject), ``chosen_origin`` (manual | model | drawn), ``chosen_model``,
``chosen_fold``, ``reviewers``, ``reviews``, ``opened_at``, ``submitted_at``, ``accepted_at``,
``original_path``. Only images with an accepted mask are exported. The folder is written beside OUT and
moved into place at the end: an interrupted export leaves nothing half-written.
"""

from __future__ import annotations

import re
import secrets
import shutil
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from cxrmap.core.errors import DataError
from cxrmap.core.fileio import write_bytes_atomic
from cxrmap.core.images import FAST_PNG, encode_png
from cxrmap.data.io import check_image, read_image
from cxrmap.data.manifest import normalise_manifest, write_manifest
from cxrmap.data.splits import assign_folds
from cxrmap.serving.annotate.db import Accepted, Candidate, Database, Image, Project, Review, User, iso
from cxrmap.serving.annotate.errors import WorkflowConflict, not_found
from cxrmap.serving.annotate.masks import load_mask, mask_png

DATASET = "QaTa-COV19-v1"
PROVENANCE = "provenance.csv"


def default_out(project_dir: Path, name: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "project"
    return Path(project_dir) / "exports" / f"{slug}-{datetime.now():%Y%m%d-%H%M%S}"


def export_project(
    db: Database, project_dir: str | Path, project_id: int, out: str | Path | None = None, progress=None
) -> dict:
    """Write the project's accepted masks to ``out`` (default ``DIR/exports/<name>-<time>``).

    Returns:
        ``{"path": out, "images": n, "provenance": out/provenance.csv}``.

    Raises:
        NotFoundError: unknown project.
        WorkflowConflict: no accepted mask yet, or ``out`` exists and is not empty.
    """

    project_dir = Path(project_dir)
    with db.session() as session:
        project = session.get(Project, project_id)
        if project is None:
            raise not_found(f"project {project_id}")
        name = project.name
        rows = session.execute(
            select(Image, Accepted, Candidate)
            .join(Accepted, Accepted.image_id == Image.id)
            .outerjoin(Candidate, Candidate.id == Accepted.candidate_id)
            .where(Image.project_id == project_id)
            .order_by(Image.id)
        ).all()
        reviews: dict[tuple[int, int], list[tuple]] = {}
        for review, username in session.execute(
            select(Review, User.username)
            .join(User, User.id == Review.reviewer_id)
            .join(Image, Image.id == Review.image_id)
            .where(Image.project_id == project_id, Review.status == "done")
            .order_by(Review.submitted_at)
        ):
            reviews.setdefault((review.image_id, review.round_id), []).append(
                (username, review.opened_at, review.submitted_at)
            )
    if not rows:
        raise WorkflowConflict(
            "no image of this project has an accepted mask yet; review some first", code="nothing_to_export"
        )
    out = Path(out) if out else default_out(project_dir, name)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise WorkflowConflict(
            f"the export folder {out} exists and is not empty; give a new folder", code="out_exists"
        )
    staging = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    final_dir = out.resolve() / DATASET
    records = []
    try:
        for i, (image, accepted, candidate) in enumerate(rows):
            if progress and i % 20 == 0:
                progress(i / len(rows), f"exporting image {i + 1} of {len(rows)}")
            target = staging / DATASET / "Images" / f"{image.name}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            if check_image(image.path).format == "PNG":
                shutil.copyfile(image.path, target)
            else:
                write_bytes_atomic(target, encode_png(read_image(image.path), FAST_PNG))
            mask_name = f"mask_{image.name}.png"
            write_bytes_atomic(
                staging / DATASET / "Ground-truths" / mask_name,
                mask_png(load_mask(project_dir, accepted.mask_path)),
            )
            done = reviews.get((image.id, accepted.round_id), [])
            records.append(
                {
                    "image_path": str(final_dir / "Images" / f"{image.name}.png"),
                    "mask_path": str(final_dir / "Ground-truths" / mask_name),
                    "label": "covid",
                    "group": "covid",
                    "source": f"annotate:{name}",
                    "finding": "covid-19",
                    "image_name": image.name,
                    "stage": str(accepted.stage),
                    "decision": accepted.decision,
                    "chosen_origin": "drawn" if candidate is None else candidate.origin,
                    "chosen_model": "" if candidate is None else candidate.model,
                    "chosen_fold": "" if candidate is None or candidate.fold is None else str(candidate.fold),
                    "reviewers": ";".join(username for username, _, _ in done),
                    "reviews": str(len(done)),
                    "opened_at": ";".join(iso(opened) or "" for _, opened, _ in done),
                    "submitted_at": ";".join(iso(submitted) or "" for _, _, submitted in done),
                    "accepted_at": iso(accepted.accepted_at),
                    "original_path": image.path,
                }
            )
        manifest = _with_folds(normalise_manifest(records))
        write_manifest(manifest, staging / PROVENANCE)
        if out.exists():
            out.rmdir()
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.replace(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"path": str(out.resolve()), "images": len(records), "provenance": str(out.resolve() / PROVENANCE)}


def _with_folds(manifest):
    """The manifest with 5 stratified folds (fewer for small exports; none below 2 images)."""

    k = min(5, len(manifest))
    if k < 2:
        return manifest
    try:
        return assign_folds(manifest, k=k, seed=0)
    except DataError:
        return manifest
