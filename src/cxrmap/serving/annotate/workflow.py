"""The two-stage workflow of paper Sec. II-B (Fig. 4): stage jobs, blinded reviews, the acceptance rule.

Stage I (:func:`run_stage1`): the images with a doctor's manual mask are split into ``folds`` folds; every
network is trained on the manual masks of all folds but one and predicts the held-out fold, so each image
gets one mask per network from a network that never saw it, plus its manual mask.
Stage II (:func:`run_stage2`): every network is trained on all accepted masks and predicts the images
that have none yet (optionally ``limit`` of them per run); repeated until every image has an accepted mask.

Reviews: a reviewer claims an image (:func:`next_review`); its candidates are shown in an order shuffled
per review (stored with the labels A, B, ... and opaque per-review tokens, never DB ids or origins). The
reviewer chooses one, or rejects all and submits a drawn mask (:func:`submit`).

Acceptance rule: an image's mask is accepted when ``reviews_per_image`` reviews of its current round are
done: the outcome chosen by most of them wins (a chosen candidate, or "rejected" with the drawn mask of the
earliest rejecting review); ties go to the outcome of the earliest submitted review. The accepted mask is
unique per image (a database constraint); open reviews of an accepted image are withdrawn. Claims: an image
is offered to at most ``reviews_per_image`` reviewers at once; an open review idle for :data:`CLAIM_TTL`
no longer holds its place (it can still be submitted).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import and_, func, or_, select, update

from cxrmap.core.errors import TooLargeError
from cxrmap.core.images import FAST_PNG, encode_png
from cxrmap.data.io import read_image, read_mask
from cxrmap.serving.annotate.db import (
    Accepted,
    Candidate,
    Database,
    Draft,
    Image,
    Job,
    Member,
    Project,
    Review,
    Round,
    iso,
    utcnow,
)
from cxrmap.serving.annotate.errors import WorkflowConflict, WorkflowError, not_found
from cxrmap.serving.annotate.masks import (
    MASK_DIR,
    MaskError,
    decode_mask_upload,
    load_mask,
    mask_png,
    overlay,
    save_mask,
)
from cxrmap.serving.annotate.training import TrainTask, parse_networks, parse_training

CLAIM_TTL = timedelta(hours=1)
MAX_DRAFT_BYTES = 2 * 2**20
STAGE_KINDS = {"stage1": 1, "stage2": 2}
API = "/api/v1"
STAGE1_FOLDS = 5
"""Stage I cross-validation folds when none are given (paper Sec. II-B: a 5-fold scheme)."""


# ------------------------------------------------------------------------------------------ stage jobs
def stage_params(db: Database, project_id: int, stage: int, body: dict) -> dict:
    """Check that ``stage`` can start now with ``body``'s settings; return the job parameters.

    Raises:
        NotFoundError: unknown project.
        WorkflowError: a bad setting (networks, training, seed, folds, limit).
        WorkflowConflict: another stage job queued or running, too few manual/accepted masks, Stage I
            images still under review (Stage II), nothing left to annotate.
    """
    networks = parse_networks(body.get("networks"))
    training = parse_training(body.get("training"))
    seed = body.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise WorkflowError(f"seed must be a non-negative whole number, got {seed!r}", code="invalid_setting")
    params = {
        "networks": [{"arch": n.arch, "encoder": n.encoder} for n in networks],
        "training": training,
        "seed": seed,
    }
    with db.session() as session:
        if session.get(Project, project_id) is None:
            raise not_found(f"project {project_id}")
        busy = session.scalar(
            select(Job.id).where(
                Job.project_id == project_id,
                Job.kind.in_(["import", "stage1", "stage2"]),
                Job.state.in_(["queued", "running"]),
            )
        )
        if busy is not None:
            raise WorkflowConflict(
                f"job {busy} of this project is still queued or running; wait for it or cancel it",
                code="job_running",
            )
        counts = status_counts(session, project_id)
        if stage == 1:
            folds = STAGE1_FOLDS if body.get("folds") is None else body["folds"]
            if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= 20:
                raise WorkflowError(
                    f"folds must be a whole number from 2 to 20, got {folds!r}", code="invalid_setting"
                )
            manual = session.scalar(
                select(func.count())
                .select_from(Image)
                .where(Image.project_id == project_id, Image.status == "new", Image.manual_path != "")
            )
            if manual < max(folds, 3):
                raise WorkflowConflict(
                    f"Stage I needs manual masks on at least {max(folds, 3)} images not yet reviewed; the "
                    f"project has {manual}. Import the doctors' masks (masks folder / Ground-truths)",
                    code="too_few_masks",
                )
            params["folds"] = folds
        else:
            limit = body.get("limit")
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
                raise WorkflowError(
                    f"limit must be a positive whole number or null, got {limit!r}", code="invalid_setting"
                )
            pending1 = session.scalar(
                select(func.count())
                .select_from(Image)
                .join(Round, Image.round_id == Round.id)
                .where(Image.project_id == project_id, Image.status == "pending", Round.stage == 1)
            )
            if pending1:
                raise WorkflowConflict(
                    f"{pending1} Stage I images still wait for their reviews; Stage II trains on "
                    "the masks Stage I accepts, finish those reviews first",
                    code="stage1_open",
                )
            if counts["accepted"] < 2:
                raise WorkflowConflict(
                    f"Stage II trains on accepted masks and the project has {counts['accepted']}; "
                    "run Stage I (and its reviews) first",
                    code="too_few_masks",
                )
            if counts["new"] == 0:
                raise WorkflowConflict(
                    "every image already has candidates or an accepted mask; nothing is left for Stage II",
                    code="nothing_to_do",
                )
            params["limit"] = limit
    return params


def status_counts(session, project_id: int) -> dict[str, int]:
    """Number of the project's images per status (``new``, ``pending``, ``accepted``) and ``total``."""
    rows = session.execute(
        select(Image.status, func.count()).where(Image.project_id == project_id).group_by(Image.status)
    ).all()
    counts = {"new": 0, "pending": 0, "accepted": 0, **{status: int(n) for status, n in rows}}
    counts["total"] = sum(counts[s] for s in ("new", "pending", "accepted"))
    return counts


class StageContext:
    """What a stage job needs: the database, the project folder, the trainer, the job and its reporter."""

    def __init__(
        self, db: Database, project_dir: Path, trainer, job_id: int, project_id: int, report
    ) -> None:
        self.db, self.project_dir, self.trainer = db, Path(project_dir), trainer
        self.job_id, self.project_id, self.report = job_id, project_id, report

    @property
    def workdir(self) -> Path:
        return self.project_dir / "jobs" / f"job-{self.job_id}"


def _run_tasks(ctx: StageContext, tasks: list[tuple[str, TrainTask]]) -> dict[str, dict[int, str]]:
    """Run every (key, task) not finished before (its ``done.json``); return key -> {image id: mask file}."""
    results: dict[str, dict[int, str]] = {}
    for index, (key, task) in enumerate(tasks):
        done = task.workdir / "done.json"
        if not done.is_file():

            def report(fraction: float, message: str, index=index, key=key) -> None:
                ctx.report((index + fraction) / len(tasks), f"{key} ({index + 1}/{len(tasks)}): {message}")

            task.report = report
            report(0.0, "starting")
            masks = ctx.trainer(task)
            missing = {image_id for image_id, _ in task.predict} - set(masks)
            if missing:
                raise WorkflowError(
                    f"{key} returned no mask for {len(missing)} images", code="trainer_failed"
                )
            files = {}
            for image_id, mask in masks.items():
                files[int(image_id)] = save_mask(task.workdir, "pred", np.asarray(mask, bool))
            from cxrmap.core.fileio import write_text_atomic

            write_text_atomic(done, json.dumps({str(k): v for k, v in files.items()}))
        results[key] = {int(k): str(task.workdir / v) for k, v in json.loads(done.read_text()).items()}
    return results


def run_stage1(ctx: StageContext, params: dict) -> dict:
    """Stage I: k-fold training on the manual masks, candidates = manual + each network's held-out mask."""
    networks = parse_networks(params["networks"])
    folds, seed = int(params["folds"]), int(params.get("seed", 0))
    with ctx.db.session() as session:
        images = session.scalars(
            select(Image)
            .where(Image.project_id == ctx.project_id, Image.status == "new", Image.manual_path != "")
            .order_by(Image.id)
        ).all()
    if len(images) < folds:
        raise WorkflowConflict(
            f"Stage I needs at least {folds} images with manual masks, found {len(images)}",
            code="too_few_masks",
        )
    permutation = np.random.default_rng(seed).permutation(len(images))
    fold_of = {images[i].id: rank % folds for rank, i in enumerate(permutation)}
    tasks = []
    for network in networks:
        for fold in range(folds):
            key = f"{network.name}-fold{fold}"
            tasks.append(
                (
                    key,
                    TrainTask(
                        network,
                        params["training"],
                        train=[
                            (im.path, str(ctx.project_dir / im.manual_path))
                            for im in images
                            if fold_of[im.id] != fold
                        ],
                        predict=[(im.id, im.path) for im in images if fold_of[im.id] == fold],
                        workdir=ctx.workdir / key,
                        seed=seed,
                    ),
                )
            )
    results = _run_tasks(ctx, tasks)
    candidates = {
        im.id: [("manual", "", None, str(ctx.project_dir / im.manual_path), im.manual_path)] for im in images
    }
    for network in networks:
        for fold in range(folds):
            for image_id, path in results[f"{network.name}-fold{fold}"].items():
                candidates[image_id].append(("model", network.name, fold, path, None))
    return _open_round(ctx, 1, candidates)


def run_stage2(ctx: StageContext, params: dict) -> dict:
    """Stage II: train every network on all accepted masks, predict the images without one."""
    networks = parse_networks(params["networks"])
    seed = int(params.get("seed", 0))
    with ctx.db.session() as session:
        accepted = session.execute(
            select(Image.path, Accepted.mask_path)
            .join(Accepted, Accepted.image_id == Image.id)
            .where(Image.project_id == ctx.project_id)
            .order_by(Image.id)
        ).all()
        query = (
            select(Image).where(Image.project_id == ctx.project_id, Image.status == "new").order_by(Image.id)
        )
        if params.get("limit"):
            query = query.limit(int(params["limit"]))
        targets = session.scalars(query).all()
    if len(accepted) < 2 or not targets:
        raise WorkflowConflict(
            f"Stage II needs accepted masks ({len(accepted)}) and images without one ({len(targets)})",
            code="nothing_to_do",
        )
    train = [(path, str(ctx.project_dir / mask)) for path, mask in accepted]
    tasks = [
        (
            network.name,
            TrainTask(
                network,
                params["training"],
                train=train,
                predict=[(im.id, im.path) for im in targets],
                workdir=ctx.workdir / network.name,
                seed=seed,
            ),
        )
        for network in networks
    ]
    results = _run_tasks(ctx, tasks)
    candidates = {}
    for im in targets:
        candidates[im.id] = (
            [("manual", "", None, str(ctx.project_dir / im.manual_path), im.manual_path)]
            if im.manual_path
            else []
        )
        candidates[im.id] += [("model", n.name, None, results[n.name][im.id], None) for n in networks]
    return _open_round(ctx, 2, candidates)


def _open_round(ctx: StageContext, stage: int, candidates: dict[int, list[tuple]]) -> dict:
    """Store the candidates (mask files under random names) and put the images under review, atomically."""

    stored: dict[int, list[tuple]] = {}
    for image_id, items in candidates.items():
        stored[image_id] = []
        for origin, model, fold, path, relative in items:
            relative = relative or save_mask(ctx.project_dir, "candidates", read_mask(path))
            stored[image_id].append((origin, model, fold, relative))
    with ctx.db.session(write=True) as session:
        existing = session.scalar(select(Round.id).where(Round.job_id == ctx.job_id))
        if existing is not None:
            return {"round": existing, "images": len(candidates)}
        round_ = Round(project_id=ctx.project_id, stage=stage, job_id=ctx.job_id)
        session.add(round_)
        session.flush()
        images = session.scalars(
            select(Image).where(Image.id.in_(list(stored)), Image.status == "new").with_for_update()
        ).all()
        for image in images:
            for origin, model, fold, relative in stored[image.id]:
                session.add(
                    Candidate(
                        image_id=image.id,
                        round_id=round_.id,
                        stage=stage,
                        origin=origin,
                        model=model,
                        fold=fold,
                        mask_path=relative,
                    )
                )
            image.status, image.round_id = "pending", round_.id
        return {"round": round_.id, "images": len(images), "stage": stage}


# -------------------------------------------------------------------------------------------- reviews
def _labels(n: int) -> list[str]:
    """A, B, ..., Z, AA, AB, ... for ``n`` positions."""
    out = []
    for i in range(n):
        label, k = "", i
        while True:
            label = chr(ord("A") + k % 26) + label
            k = k // 26 - 1
            if k < 0:
                break
        out.append(label)
    return out


def _is_member(session, project_id: int, user_id: int) -> bool:
    return session.get(Member, (project_id, user_id)) is not None


def reviewer_projects(db: Database, user_id: int) -> list[dict]:
    """The projects the reviewer belongs to, with what waits for them and what they did."""
    out = []
    with db.session() as session:
        projects = session.scalars(
            select(Project)
            .join(Member, Member.project_id == Project.id)
            .where(Member.user_id == user_id)
            .order_by(Project.id)
        ).all()
        for project in projects:
            mine = session.execute(
                select(Review.status, func.count())
                .join(Image, Image.id == Review.image_id)
                .where(Image.project_id == project.id, Review.reviewer_id == user_id)
                .group_by(Review.status)
            ).all()
            mine = dict(mine)
            out.append(
                {
                    "id": project.id,
                    "name": project.name,
                    "waiting": len(_claimable(session, project, user_id)),
                    "open_by_me": int(mine.get("open", 0)),
                    "done_by_me": int(mine.get("done", 0)),
                }
            )
    return out


def _claimable(session, project: Project, user_id: int) -> list[int]:
    """Ids of the pending images the reviewer may claim now (see the module notes), in id order."""
    cutoff = utcnow() - CLAIM_TTL
    in_round = and_(Review.image_id == Image.id, Review.round_id == Image.round_id)
    busy = (
        select(Review.image_id, func.count().label("n"))
        .join(Image, in_round)
        .where(
            Image.project_id == project.id,
            Image.status == "pending",
            or_(Review.status == "done", and_(Review.status == "open", Review.last_active_at > cutoff)),
        )
        .group_by(Review.image_id)
    ).subquery()
    mine = (
        select(Review.image_id)
        .join(Image, in_round)
        .where(Image.project_id == project.id, Review.reviewer_id == user_id)
    )
    query = (
        select(Image.id)
        .outerjoin(busy, busy.c.image_id == Image.id)
        .where(
            Image.project_id == project.id,
            Image.status == "pending",
            func.coalesce(busy.c.n, 0) < project.reviews_per_image,
            Image.id.not_in(mine),
        )
        .order_by(Image.id)
    )
    return list(session.scalars(query))


def next_review(db: Database, project_id: int, user_id: int) -> dict | None:
    """The reviewer's oldest open review of the project, or a new one on the next claimable image.

    Raises:
        NotFoundError: the project does not exist or the user is not one of its reviewers.
    """
    with db.session(write=True) as session:
        project = session.scalars(select(Project).where(Project.id == project_id).with_for_update()).first()
        if project is None or not _is_member(session, project_id, user_id):
            raise not_found(f"project {project_id}")
        review = session.scalars(
            select(Review)
            .join(Image, Image.id == Review.image_id)
            .where(Image.project_id == project_id, Review.reviewer_id == user_id, Review.status == "open")
            .order_by(Review.opened_at, Review.id)
        ).first()
        if review is None:
            claimable = _claimable(session, project, user_id)
            if not claimable:
                return None
            image = session.get(Image, claimable[0])
            ids = list(
                session.scalars(
                    select(Candidate.id)
                    .where(Candidate.image_id == image.id, Candidate.round_id == image.round_id)
                    .order_by(Candidate.id)
                )
            )
            secrets.SystemRandom().shuffle(ids)
            review = Review(
                token="r_" + secrets.token_hex(16),
                image_id=image.id,
                round_id=image.round_id,
                reviewer_id=user_id,
                order=ids,
                labels=_labels(len(ids)),
                tokens=["c_" + secrets.token_hex(12) for _ in ids],
            )
            session.add(review)
            session.flush()
        review.last_active_at = utcnow()
        return review_item(session, review)


def _own_review(session, token: str, user_id: int, lock: bool = False) -> Review:
    query = select(Review).where(Review.token == str(token))
    review = session.scalars(query.with_for_update() if lock else query).first()
    if review is None or review.reviewer_id != user_id:
        raise not_found("this review")
    image = session.get(Image, review.image_id)
    if not _is_member(session, image.project_id, user_id):
        raise not_found("this review")
    return review


def review_item(session, review: Review) -> dict:
    """The blinded JSON view of a review: tokens, labels and URLs only (see ANNOTATE API notes)."""
    image = session.get(Image, review.image_id)
    project = session.get(Project, image.project_id)
    base = f"{API}/reviews/{review.token}"
    tokens, labels = review.tokens, review.labels
    candidates = [
        {
            "label": label,
            "token": token,
            "mask_url": f"{base}/candidates/{token}/mask.png",
            "overlay_url": f"{base}/candidates/{token}/overlay.png",
        }
        for label, token in zip(labels, tokens, strict=True)
    ]
    draft = session.get(Draft, review.id)
    submission = None
    if review.status == "done":
        order = review.order
        start = tokens[order.index(review.start_from_id)] if review.start_from_id in order else None
        if review.decision == "choose":
            submission = {
                "decision": "choose",
                "choice": tokens[review.choice_position],
                "label": labels[review.choice_position],
            }
        else:
            submission = {"decision": "reject", "start_from": start, "drawn_url": f"{base}/drawn.png"}
    return {
        "token": review.token,
        "project": {"id": project.id, "name": project.name},
        "status": "submitted" if review.status == "done" else review.status,
        "image": {"url": f"{base}/image.png", "width": image.width, "height": image.height},
        "candidates": candidates,
        "draft": None if draft is None else {"seq": draft.seq, "state": draft.state},
        "submission": submission,
        "opened_at": iso(review.opened_at),
        "submitted_at": iso(review.submitted_at),
    }


def get_review(db: Database, token: str, user_id: int) -> dict:
    with db.session() as session:
        return review_item(session, _own_review(session, token, user_id))


def my_reviews(db: Database, user_id: int, project_id: int | None) -> list[dict]:
    with db.session() as session:
        query = (
            select(Review)
            .join(Image, Image.id == Review.image_id)
            .join(Member, and_(Member.project_id == Image.project_id, Member.user_id == user_id))
            .where(Review.reviewer_id == user_id)
            .order_by(Review.opened_at, Review.id)
        )
        if project_id is not None:
            query = query.where(Image.project_id == project_id)
        return [
            {
                "token": r.token,
                "status": "submitted" if r.status == "done" else r.status,
                "opened_at": iso(r.opened_at),
                "submitted_at": iso(r.submitted_at),
            }
            for r in session.scalars(query)
        ]


def review_image(db: Database, token: str, user_id: int) -> bytes:
    """The radiograph of a review as grey PNG (re-encoded: no metadata of the original file)."""

    with db.session() as session:
        path = session.get(Image, _own_review(session, token, user_id).image_id).path
    return encode_png(read_image(path), FAST_PNG)


def _candidate_mask(db: Database, project_dir: Path, token: str, ctoken: str, user_id: int):
    with db.session() as session:
        review = _own_review(session, token, user_id)
        tokens = review.tokens
        if ctoken not in tokens:
            raise not_found("this candidate")
        candidate = session.get(Candidate, review.order[tokens.index(ctoken)])
        image = session.get(Image, review.image_id)
        return load_mask(project_dir, candidate.mask_path), image.path


def candidate_png(db: Database, project_dir: Path, token: str, ctoken: str, user_id: int, kind: str) -> bytes:
    """A candidate of a review as a 0/255 mask PNG (``kind="mask"``) or an overlay on the radiograph."""

    mask, image_path = _candidate_mask(db, project_dir, token, ctoken, user_id)
    if kind == "mask":
        return mask_png(mask)
    return encode_png(overlay(read_image(image_path), mask), FAST_PNG)


def drawn_png(db: Database, project_dir: Path, token: str, user_id: int) -> bytes:
    with db.session() as session:
        review = _own_review(session, token, user_id)
        if not review.drawn_path:
            raise not_found("a drawn mask of this review")
        return mask_png(load_mask(project_dir, review.drawn_path))


def get_draft(db: Database, token: str, user_id: int) -> dict:
    with db.session() as session:
        review = _own_review(session, token, user_id)
        draft = session.get(Draft, review.id)
        if draft is None:
            return {"seq": 0, "state": None, "updated_at": None}
        return {"seq": draft.seq, "state": draft.state, "updated_at": iso(draft.updated_at)}


def save_draft(db: Database, token: str, user_id: int, seq: int, state: Any) -> dict:
    """Keep ``state`` as the review's draft unless a draft with a higher ``seq`` is stored (idempotent).

    Raises:
        NotFoundError: not the reviewer's review. WorkflowConflict: already submitted.
        TooLargeError: the draft is too large.
    """
    text = json.dumps(state, separators=(",", ":"))
    if len(text) > MAX_DRAFT_BYTES:
        raise TooLargeError(
            f"the draft is {len(text):,} bytes, over the limit of {MAX_DRAFT_BYTES:,}; store the mask as RLE",
            code="draft_too_large",
        )
    with db.session(write=True) as session:
        review = _own_review(session, token, user_id, lock=True)
        if review.status != "open":
            raise WorkflowConflict(
                "this review is already submitted (or withdrawn); its draft is closed",
                code="already_submitted" if review.status == "done" else "withdrawn",
            )
        now = utcnow()
        review.last_active_at = now
        draft = session.get(Draft, review.id)
        if draft is not None and seq < draft.seq:
            return {"saved": False, "seq": draft.seq, "updated_at": iso(draft.updated_at)}
        if draft is None:
            session.add(Draft(review_id=review.id, seq=seq, state=state, updated_at=now))
        else:
            draft.seq, draft.state, draft.updated_at = seq, state, now
        return {"saved": True, "seq": seq, "updated_at": iso(now)}


def submit(db: Database, project_dir: Path, token: str, user_id: int, body: dict, max_pixels: int) -> dict:
    """Record a reviewer's decision (choose a candidate, or reject all with a drawn mask); maybe accept.

    Resending the identical submission answers the stored review again (safe retry after a lost answer).

    Raises:
        NotFoundError: not the reviewer's review.
        WorkflowConflict: already submitted differently, or withdrawn.
        WorkflowError: an unknown candidate token or an invalid drawn mask.
    """
    decision = body.get("decision")
    with db.session() as session:
        review = _own_review(session, token, user_id)
        tokens = review.tokens
        order = review.order
        image = session.get(Image, review.image_id)
        width, height = image.width, image.height
    mask = None
    if decision == "choose":
        choice = body.get("choice")
        if choice not in tokens:
            raise WorkflowError(
                "choice must be the token of one of this review's candidates", code="invalid_choice"
            )
        digest = hashlib.sha256(f"choose:{choice}".encode()).hexdigest()
    elif decision == "reject":
        start = body.get("start_from")
        if start is not None and start not in tokens:
            raise WorkflowError(
                "start_from must be null or the token of one of this review's candidates",
                code="invalid_choice",
            )
        try:
            mask = decode_mask_upload(body.get("mask"), width, height, max_pixels)
        except MaskError as error:
            raise WorkflowError(str(error), code="invalid_mask") from None
        digest = hashlib.sha256(f"reject:{start}:".encode() + np.packbits(mask).tobytes()).hexdigest()
    else:
        raise WorkflowError('decision must be "choose" or "reject"', code="invalid_decision")
    drawn = save_mask(project_dir, "drawn", mask) if mask is not None else None
    used = False
    try:
        with db.session(write=True) as session:
            session.scalars(select(Image).where(Image.id == image.id).with_for_update()).first()
            review = _own_review(session, token, user_id, lock=True)
            if review.status == "done":
                if review.digest != digest:
                    raise WorkflowConflict(
                        "this review was already submitted with another decision", code="already_submitted"
                    )
                return review_item(session, review)
            if review.status == "withdrawn":
                raise WorkflowConflict(
                    "this image was completed by other reviewers meanwhile; take the next one",
                    code="withdrawn",
                )
            review.status, review.decision, review.digest = "done", decision, digest
            review.submitted_at = review.last_active_at = utcnow()
            if decision == "choose":
                review.choice_position = tokens.index(body["choice"])
                review.choice_id = order[review.choice_position]
            else:
                start = body.get("start_from")
                review.start_from_id = order[tokens.index(start)] if start is not None else None
                review.drawn_path, used = drawn, True
            draft = session.get(Draft, review.id)
            if draft is not None:
                session.delete(draft)
            session.flush()
            _maybe_accept(session, review.image_id, review.round_id)
            return review_item(session, review)
    finally:
        if drawn is not None and not used:
            with contextlib.suppress(OSError):
                (Path(project_dir) / drawn).unlink()


ORPHAN_GRACE = 60.0
"""Seconds a drawn-mask file without a row is kept (another server on the folder may be committing it)."""


def remove_orphan_drawn(db: Database, project_dir: str | Path, grace: float = ORPHAN_GRACE) -> int:
    """Delete the drawn-mask files no review refers to (left by a server killed between writing a
    submission's mask and committing it), older than ``grace`` seconds; return how many.

    A submission writes its mask before the transaction that refers to it commits (a confirmed review
    never lacks its mask); only a crash in between leaves a file behind, which this sweep removes.
    """
    folder = Path(project_dir) / MASK_DIR / "drawn"
    if not folder.is_dir():
        return 0
    with db.session() as session:
        used = set(session.scalars(select(Review.drawn_path).where(Review.drawn_path.is_not(None))))
    cutoff = time.time() - grace
    removed = 0
    for path in folder.iterdir():
        relative = f"{MASK_DIR}/drawn/{path.name}"
        if relative in used or not path.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime <= cutoff:
                path.unlink()
                removed += 1
    return removed


def _outcome(review: Review) -> tuple:
    return ("choose", review.choice_id) if review.decision == "choose" else ("reject",)


def decide(done: list[Review]) -> Review:
    """The review whose outcome wins (module notes): most votes, ties to the earliest submitted review.

    ``done`` must be sorted by submission time; the returned review carries the winning outcome (for a
    rejection, the earliest rejecting review, whose drawn mask is accepted).
    """
    votes = Counter(_outcome(r) for r in done)
    best = max(votes.values())
    return next(r for r in done if votes[_outcome(r)] == best)


def _maybe_accept(session, image_id: int, round_id: int) -> None:
    """Accept the image's mask when its round has ``reviews_per_image`` done reviews (call under the lock)."""
    image = session.get(Image, image_id)
    if image.status == "accepted" or image.round_id != round_id:
        return
    k = session.get(Project, image.project_id).reviews_per_image
    done = session.scalars(
        select(Review)
        .where(Review.image_id == image_id, Review.round_id == round_id, Review.status == "done")
        .order_by(Review.submitted_at, Review.id)
    ).all()
    if len(done) < k:
        return
    winner = decide(done)
    if winner.decision == "choose":
        mask_path = session.get(Candidate, winner.choice_id).mask_path
    else:
        mask_path = winner.drawn_path
    stage = session.get(Round, round_id).stage
    session.add(
        Accepted(
            image_id=image_id,
            round_id=round_id,
            stage=stage,
            decision=winner.decision,
            candidate_id=winner.choice_id if winner.decision == "choose" else None,
            review_id=winner.id,
            mask_path=mask_path,
        )
    )
    image.status = "accepted"
    session.execute(
        update(Review)
        .where(Review.image_id == image_id, Review.round_id == round_id, Review.status == "open")
        .values(status="withdrawn")
    )
    session.flush()
