"""Projects: creation, import of radiographs (with the doctors' manual masks where they exist), members.

Two sources (paper Sec. II-B starts from images of which a subset carries hand-drawn masks):

- ``{"kind": "folder", "images": DIR, "masks": DIR | None}``: a plain folder of radiographs, masks named
  ``X.png`` or ``mask_X.png`` in the masks folder (optional, any subset);
- ``{"kind": "tree", "root": DIR}``: the COVID-19 images of every layout ``cxrmap index`` recognises under
  ``DIR`` that carries infection masks (QaTa-COV19 v1/v2, COVID-QU-Ex;
  :func:`cxrmap.data.readers.infection_folders`), masks optional.

A project is created only for a source that holds radiographs, and :func:`import_project` removes it again
when its import fails, so a failed import leaves no empty project (nor its name taken). The import is
resumable: images already in the project are skipped, so a re-run after a crash completes it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

from cxrmap.core.errors import DataError
from cxrmap.data import readers
from cxrmap.data.io import check_image, read_mask
from cxrmap.serving.annotate.db import Database, Image, Member, Project, User
from cxrmap.serving.annotate.errors import WorkflowConflict, WorkflowError, not_found
from cxrmap.serving.annotate.masks import save_mask

SOURCE_KINDS = ("folder", "tree")
BATCH = 100


def check_source(source: dict) -> dict:
    """Validate an import source (see the module notes); return it with absolute paths.

    Raises:
        DataError: unknown kind, a missing folder.
    """
    if not isinstance(source, dict) or source.get("kind") not in SOURCE_KINDS:
        raise DataError(
            f"an import source must be {{'kind': 'folder', 'images': DIR, 'masks': DIR or null}} or "
            f"{{'kind': 'tree', 'root': DIR}}; got {source!r}"
        )
    keys = ("images", "masks") if source["kind"] == "folder" else ("root",)
    out = {"kind": source["kind"]}
    for key in keys:
        value = source.get(key)
        if value in (None, "") and key == "masks":
            out[key] = None
            continue
        if not isinstance(value, str) or not Path(value).expanduser().is_dir():
            raise DataError(
                f"the {key} folder {value!r} does not exist on the server; give an existing folder"
            )
        out[key] = str(Path(value).expanduser().resolve())
    return out


def find_pairs(source: dict) -> tuple[list[tuple[Path, Path | None]], list[str]]:
    """``[(image, manual mask or None)]`` of an import source, and warnings (unreadable files...).

    Raises:
        DataError: no image found.
    """

    source = check_source(source)
    if source["kind"] == "folder":
        masks = Path(source["masks"]) if source["masks"] else None
        folders, warnings = [(Path(source["images"]), masks, ("mask_", ""))], []
    else:
        folders, warnings = readers.infection_folders(source["root"])
    pairs: list[tuple[Path, Path | None]] = []
    for image_dir, mask_dir, prefixes in folders:
        images, skipped = readers.list_images(image_dir)
        matched, mask_skipped, mask_warnings = readers.pair_masks(images, mask_dir, prefixes, "mask")
        warnings += [f"skipped {path}: {why}" for path, why in skipped + mask_skipped] + mask_warnings
        pairs += [(image, matched.get(image)) for image in images]
    if not pairs and source["kind"] == "folder":
        raise DataError(
            f"no radiograph (PNG, JPEG or DICOM) was found in the images folder {source['images']}; "
            "give the folder that holds the image files themselves"
        )
    if not pairs:
        raise DataError(
            f"no COVID-19 radiograph was found under {source['root']}: a tree import reads "
            f"{readers.LAYOUTS['qata-cov19-v1']}; {readers.LAYOUTS['qata-cov19-v2']}; or "
            f"{readers.LAYOUTS['covid-qu-ex']} (its COVID-19 images); for a plain folder use --images"
        )
    return pairs, warnings


def create_project(db: Database, name: str, source: dict, reviews_per_image: int = 1) -> int:
    """Insert a project row (its images come with :func:`import_images`); return its id.

    Raises:
        WorkflowError: the name is taken or empty, or ``reviews_per_image`` is not in 1..20.
        DataError: a bad source, or one that holds no radiograph (then no project is made).
    """
    name = (name or "").strip()
    if not name or len(name) > 128:
        raise WorkflowError("a project needs a name of 1 to 128 characters", code="invalid_name")
    check_reviews_per_image(reviews_per_image)
    source = check_source(source)
    find_pairs(source)
    with db.session(write=True) as session:
        if session.scalar(select(Project.id).where(Project.name == name)) is not None:
            raise WorkflowConflict(
                f"a project named {name!r} exists already; choose another name", code="name_taken"
            )
        project = Project(name=name, reviews_per_image=reviews_per_image, source=source)
        session.add(project)
        session.flush()
        return project.id


def check_reviews_per_image(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 20:
        raise WorkflowError(
            f"reviews_per_image must be a whole number from 1 to 20, got {value!r}", code="invalid_setting"
        )
    return value


def unique_names(paths: list[Path]) -> list[str]:
    """File stems made unique (``name``, ``name_2``...) in order: the export names of the images."""
    seen: set[str] = set()
    names = []
    for path in paths:
        stem, n = path.stem, 1
        name = stem
        while name.lower() in seen:
            n += 1
            name = f"{stem}_{n}"
        seen.add(name.lower())
        names.append(name)
    return names


def import_images(
    db: Database,
    project_dir: str | Path,
    project_id: int,
    progress: Callable[[float, str], None] | None = None,
) -> dict:
    """Add the radiographs of the project's source (and copies of their manual masks) to the project.

    Masks whose size differs from their image's are left out with a warning (a doctor's mask must cover
    its radiograph pixel for pixel). Images already in the project are skipped (resumable).

    Returns:
        ``{"images": added, "with_manual": masks added, "total": images in the project, "warnings": [...]}``
    """

    with db.session() as session:
        project = session.get(Project, project_id)
        if project is None:
            raise not_found(f"project {project_id}")
        source = project.source
        present = set(session.scalars(select(Image.name).where(Image.project_id == project_id)))
    pairs, warnings = find_pairs(source)
    names = unique_names([image for image, _ in pairs])
    added = manual = 0
    batch: list[Image] = []
    try:
        for i, ((image_path, mask_path), name) in enumerate(zip(pairs, names, strict=True)):
            if progress and i % 20 == 0:
                progress(i / len(pairs), f"importing image {i + 1} of {len(pairs)}")
            if name in present:
                continue
            try:
                info = check_image(image_path)
            except DataError as error:
                warnings.append(f"skipped {image_path}: {error}")
                continue
            manual_path = ""
            if mask_path is not None:
                try:
                    mask = read_mask(mask_path)
                except DataError as error:
                    warnings.append(f"manual mask {mask_path} left out: {error}")
                else:
                    if mask.shape == (info.height, info.width):
                        manual_path = save_mask(project_dir, "manual", mask)
                        manual += 1
                    else:
                        warnings.append(
                            f"manual mask {mask_path} left out: it is {mask.shape[1]} x {mask.shape[0]} "
                            f"but its image is {info.width} x {info.height}"
                        )
            batch.append(
                Image(
                    project_id=project_id,
                    name=name,
                    path=str(image_path),
                    width=info.width,
                    height=info.height,
                    manual_path=manual_path,
                )
            )
            added += 1
            if len(batch) >= BATCH:
                _insert(db, batch)
                batch = []
        _insert(db, batch)
    except BaseException:  # the files of rows never written would be orphans
        for image in batch:
            if image.manual_path:
                (Path(project_dir) / image.manual_path).unlink(missing_ok=True)
        raise
    with db.session() as session:
        total = session.scalar(select(func.count()).select_from(Image).where(Image.project_id == project_id))
    return {"images": added, "with_manual": manual, "total": int(total or 0), "warnings": warnings[:200]}


def _insert(db: Database, images: list[Image]) -> None:
    if images:
        with db.session(write=True) as session:
            session.add_all(images)


def delete_project(db: Database, project_dir: str | Path, project_id: int) -> None:
    """Remove a project whose import failed: its row, its images' rows (cascade) and its manual mask files."""
    with db.session(write=True) as session:
        project = session.get(Project, project_id)
        if project is None:
            return
        files = [
            p for p in session.scalars(select(Image.manual_path).where(Image.project_id == project_id)) if p
        ]
        session.delete(project)
    for relative in files:
        (Path(project_dir) / relative).unlink(missing_ok=True)


def set_member(db: Database, project_id: int, user_id: int, member: bool) -> None:
    """Add (``member=True``) or remove a reviewer from a project.

    Raises:
        WorkflowError: unknown project or user, or the user is not a reviewer.
    """
    with db.session(write=True) as session:
        if session.get(Project, project_id) is None:
            raise not_found(f"project {project_id}")
        user = session.get(User, user_id)
        if user is None:
            raise not_found(f"user {user_id}")
        if user.role != "reviewer":
            raise WorkflowError(
                f"{user.username} is an {user.role}; only reviewers review images", code="not_a_reviewer"
            )
        existing = session.get(Member, (project_id, user_id))
        if member and existing is None:
            session.add(Member(project_id=project_id, user_id=user_id))
        elif not member and existing is not None:
            session.delete(existing)
