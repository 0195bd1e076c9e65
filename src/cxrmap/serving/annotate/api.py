"""The JSON API of ``cxrmap annotate serve``, one FastAPI router per concern (:data:`ROUTERS`): auth, review,
admin users, projects (stages, export), images, jobs, dashboard.

Rules applied to every endpoint (see ANNOTATE API notes in the docs and :mod:`cxrmap.serving.annotate.auth`):

- a state change (POST, PUT, PATCH, DELETE) without the right ``X-CSRF-Token`` header is refused
  (permission denied) before anything else happens (:func:`csrf_protect`, an app-wide dependency);
- each endpoint names its role: :func:`require_reviewer` (reviewers, only in the projects they belong to,
  only their own reviews: another's review token is "not found"), :func:`require_admin` (the admin routers
  as a whole), or :func:`require_user` (any account); anonymous requests are unauthenticated;
- reviewers never receive a candidate's origin, model, database id or image name.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, select

from cxrmap.core.errors import AuthenticationError, PermissionDeniedError, RateLimitedError
from cxrmap.core.images import FAST_PNG, encode_png
from cxrmap.data.io import read_image
from cxrmap.serving.annotate import auth, jobs, projects, stats, workflow
from cxrmap.serving.annotate.db import (
    Accepted,
    AuthSession,
    Candidate,
    Image,
    Job,
    Member,
    Project,
    Review,
    Round,
    User,
    iso,
    utcnow,
)
from cxrmap.serving.annotate.errors import WorkflowConflict, not_found
from cxrmap.serving.annotate.masks import load_mask, mask_png
from cxrmap.serving.annotate.workflow import API, STAGE1_FOLDS

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
LAST_SEEN_EVERY = 60.0
PNG = "image/png"


# ------------------------------------------------------------------------------------- request bodies
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginBody(_Body):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class PasswordBody(_Body):
    old_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class UserCreateBody(_Body):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    role: str


class UserPatchBody(_Body):
    active: bool | None = None
    role: str | None = None
    password: str | None = Field(default=None, max_length=1024)


class ProjectBody(_Body):
    name: str = Field(max_length=128)
    source: dict[str, Any]
    reviews_per_image: int = 1


class ProjectPatchBody(_Body):
    reviews_per_image: int


class StageBody(_Body):
    networks: list[dict[str, Any]] | str
    folds: int = STAGE1_FOLDS
    training: dict[str, Any] | None = None
    seed: int = 0
    limit: int | None = None


class DraftBody(_Body):
    seq: int = Field(ge=0, le=2**62)
    state: dict[str, Any]


class SubmitBody(_Body):
    decision: str
    choice: str | None = Field(default=None, max_length=100)
    start_from: str | None = Field(default=None, max_length=100)
    mask: dict[str, Any] | None = None


class EmptyBody(_Body):
    pass


# ---------------------------------------------------------------------------------- authentication
def server(request: Request):
    """The :class:`cxrmap.serving.annotate.app.Server` of this app."""
    return request.app.state.annotate


def _unauthenticated(expired: bool = False) -> AuthenticationError:
    if expired:
        return AuthenticationError(
            "Your session has expired; log in again (your drafts are kept).", code="session_expired"
        )
    return AuthenticationError("Log in first (POST /api/v1/auth/login).")


def current_principal(request: Request) -> auth.Principal | None:
    """The logged-in user of the request (looked up once per request), None when anonymous or expired."""
    if hasattr(request.state, "principal"):
        return request.state.principal
    request.state.principal, request.state.expired = None, False
    token = request.cookies.get(auth.SESSION_COOKIE)
    if token:
        srv = server(request)
        sid = auth.session_id(srv.secret, token)
        now = utcnow()
        with srv.db.session() as session:
            row = session.get(AuthSession, sid)
            user = session.get(User, row.user_id) if row is not None else None
        if row is not None and user is not None:
            stale = now - row.last_seen_at > auth.IDLE_TIMEOUT or now - row.created_at > auth.MAX_AGE
            if stale or not user.active:
                with srv.db.session(write=True) as session:
                    session.execute(delete(AuthSession).where(AuthSession.id == sid))
                request.state.expired = True
            else:
                if (now - row.last_seen_at).total_seconds() > LAST_SEEN_EVERY:
                    with srv.db.session(write=True) as session:
                        live = session.get(AuthSession, sid)
                        if live is not None:
                            live.last_seen_at = now
                request.state.principal = auth.Principal(
                    user.id, user.username, user.role, sid, row.csrf_token
                )
    return request.state.principal


def csrf_protect(request: Request) -> None:
    """App-wide: a state-changing request must carry the session's CSRF token (or, anonymous, the
    pre-session token that equals its ``cxrmap_csrf`` cookie)."""
    if request.method in SAFE_METHODS:
        return
    given = request.headers.get(auth.CSRF_HEADER)
    principal = current_principal(request)
    if principal is None and request.state.expired:
        raise _unauthenticated(expired=True)  # say so, so that the page logs in again (its drafts are kept)
    expected = principal.csrf_token if principal is not None else request.cookies.get(auth.CSRF_COOKIE)
    if not auth.same_token(given, expected):
        raise PermissionDeniedError(
            f"Missing or wrong {auth.CSRF_HEADER} header: get the token from GET /api/v1/auth/session "
            "(a new one after each login) and send it with every change.",
            code="csrf_failed",
        )


def require_user(request: Request) -> auth.Principal:
    principal = current_principal(request)
    if principal is None:
        raise _unauthenticated(request.state.expired)
    return principal


def require_admin(request: Request) -> auth.Principal:
    principal = require_user(request)
    if principal.role != "admin":
        raise PermissionDeniedError("This needs an admin account.")
    return principal


def require_reviewer(request: Request) -> auth.Principal:
    principal = require_user(request)
    if principal.role != "reviewer":
        raise PermissionDeniedError("This needs a reviewer account (admins do not review).")
    return principal


def _secure(request: Request) -> bool:
    srv = server(request)
    return bool(
        srv.secure_cookies
        or request.url.scheme == "https"
        or request.headers.get("x-forwarded-proto", "").split(",")[0].strip() == "https"
    )


def _set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="strict", secure=_secure(request), path="/")


def _user_dict(user: User) -> dict:
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "active": user.active,
        "created_at": iso(user.created_at),
    }


def _png(data: bytes) -> Response:
    return Response(data, media_type=PNG)


auth_router = APIRouter(prefix=API, tags=["auth"])
"""Logging in and out, the session and its CSRF token, one's own password."""


@auth_router.get("/auth/session")
def session_info(request: Request, response: Response) -> dict:
    """Who is logged in, and the CSRF token to send with every change (a pre-session one when anonymous)."""
    principal = current_principal(request)
    if principal is not None:
        return {
            "authenticated": True,
            "user": {"username": principal.username, "role": principal.role},
            "csrf_token": principal.csrf_token,
        }
    token = request.cookies.get(auth.CSRF_COOKIE) or auth.new_token()
    _set_cookie(request, response, auth.CSRF_COOKIE, token)
    if request.cookies.get(auth.SESSION_COOKIE):
        response.delete_cookie(auth.SESSION_COOKIE, path="/")
    return {"authenticated": False, "user": None, "csrf_token": token}


@auth_router.post("/auth/login")
def login(body: LoginBody, request: Request, response: Response) -> dict:
    """Log in with user name and password: sets the session cookie and answers a new CSRF token (failed
    attempts back off)."""
    srv = server(request)
    client = request.client.host if request.client else "unknown"
    keys = [f"user:{body.username.lower()}", f"ip:{client}"]
    wait = srv.limiter.retry_after(keys)
    if wait:
        raise RateLimitedError(
            f"Too many failed logins; try again in {wait} seconds.",
            retry_after=wait,
            code="too_many_attempts",
        )
    with srv.db.session() as session:
        user = session.scalars(select(User).where(User.username == body.username)).first()
    stored = user.password_hash if user is not None and user.active else None
    if not auth.verify_password(srv.hasher, stored, body.password):
        srv.limiter.failed(keys)
        raise AuthenticationError("Wrong user name or password.", code="bad_credentials")
    srv.limiter.succeeded(keys[0])
    token, csrf = auth.new_token(), auth.new_token()
    with srv.db.session(write=True) as session:
        if srv.hasher.check_needs_rehash(user.password_hash):
            session.get(User, user.id).password_hash = srv.hasher.hash(body.password)
        oldest = utcnow() - auth.MAX_AGE
        session.execute(
            delete(AuthSession).where(AuthSession.user_id == user.id, AuthSession.created_at < oldest)
        )
        session.add(AuthSession(id=auth.session_id(srv.secret, token), user_id=user.id, csrf_token=csrf))
    _set_cookie(request, response, auth.SESSION_COOKIE, token)
    response.delete_cookie(auth.CSRF_COOKIE, path="/")
    return {"user": {"username": user.username, "role": user.role}, "csrf_token": csrf}


@auth_router.post("/auth/logout")
def logout(request: Request, response: Response, principal=Depends(require_user)) -> dict:
    """End this session."""
    with server(request).db.session(write=True) as session:
        session.execute(delete(AuthSession).where(AuthSession.id == principal.session_id))
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    return {"ok": True}


@auth_router.post("/auth/password")
def change_password(body: PasswordBody, request: Request, principal=Depends(require_user)) -> dict:
    """Change one's own password (the current one is asked); other sessions of the account end."""
    srv = server(request)
    with srv.db.session() as session:
        stored = session.get(User, principal.user_id).password_hash
    if not auth.verify_password(srv.hasher, stored, body.old_password):
        raise PermissionDeniedError("The current password is wrong.", code="bad_credentials")
    new_hash = auth.hash_password(srv.hasher, body.new_password)
    with srv.db.session(write=True) as session:
        session.get(User, principal.user_id).password_hash = new_hash
        session.execute(
            delete(AuthSession).where(
                AuthSession.user_id == principal.user_id, AuthSession.id != principal.session_id
            )
        )
    return {"ok": True}


review_router = APIRouter(prefix=API, tags=["review"])
"""The reviewer's side: their projects, their reviews, drafts and submissions."""


@review_router.get("/review/projects")
def review_projects(request: Request, principal=Depends(require_reviewer)) -> dict:
    """The projects this reviewer belongs to, with how many images wait for them."""
    return {"projects": workflow.reviewer_projects(server(request).db, principal.user_id)}


@review_router.post("/review/projects/{project_id}/next")
def review_next(project_id: int, request: Request, principal=Depends(require_reviewer)) -> dict:
    """Open (or resume) this reviewer's next review in a project; null when nothing waits."""
    item = workflow.next_review(server(request).db, project_id, principal.user_id)
    if item is None:
        return {"review": None, "message": "Nothing is waiting for you in this project."}
    return {"review": item}


@review_router.get("/review/mine")
def review_mine(request: Request, project_id: int | None = None, principal=Depends(require_reviewer)) -> dict:
    """This reviewer's reviews, open and submitted, optionally of one project."""
    return {"reviews": workflow.my_reviews(server(request).db, principal.user_id, project_id)}


@review_router.get("/reviews/{token}")
def review_get(token: str, request: Request, principal=Depends(require_reviewer)) -> dict:
    """One of this reviewer's reviews: the blinded candidates (A, B, C...) and its state."""
    return workflow.get_review(server(request).db, token, principal.user_id)


@review_router.get("/reviews/{token}/image.png", response_class=Response)
def review_image(token: str, request: Request, principal=Depends(require_reviewer)) -> Response:
    """The radiograph of a review, as PNG."""
    return _png(workflow.review_image(server(request).db, token, principal.user_id))


@review_router.get("/reviews/{token}/candidates/{ctoken}/mask.png", response_class=Response)
def review_mask(token: str, ctoken: str, request: Request, principal=Depends(require_reviewer)) -> Response:
    """One candidate mask of a review, as a binary PNG (its origin is not told)."""
    srv = server(request)
    return _png(workflow.candidate_png(srv.db, srv.project_dir, token, ctoken, principal.user_id, "mask"))


@review_router.get("/reviews/{token}/candidates/{ctoken}/overlay.png", response_class=Response)
def review_overlay(
    token: str, ctoken: str, request: Request, principal=Depends(require_reviewer)
) -> Response:
    """One candidate mask of a review drawn over the radiograph, as PNG."""
    srv = server(request)
    return _png(workflow.candidate_png(srv.db, srv.project_dir, token, ctoken, principal.user_id, "overlay"))


@review_router.get("/reviews/{token}/drawn.png", response_class=Response)
def review_drawn(token: str, request: Request, principal=Depends(require_reviewer)) -> Response:
    """The mask this reviewer drew for a submitted rejection, as PNG."""
    srv = server(request)
    return _png(workflow.drawn_png(srv.db, srv.project_dir, token, principal.user_id))


@review_router.get("/reviews/{token}/draft")
def draft_get(token: str, request: Request, principal=Depends(require_reviewer)) -> dict:
    """The stored draft of a review (the editor's state), if any."""
    return workflow.get_draft(server(request).db, token, principal.user_id)


@review_router.put("/reviews/{token}/draft")
def draft_put(token: str, body: DraftBody, request: Request, principal=Depends(require_reviewer)) -> dict:
    """Store a review's draft unless a newer one (higher seq) is stored; safe to repeat."""
    return workflow.save_draft(server(request).db, token, principal.user_id, body.seq, body.state)


@review_router.post("/reviews/{token}/submit")
def review_submit(
    token: str, body: SubmitBody, request: Request, principal=Depends(require_reviewer)
) -> dict:
    """Submit a review: choose a candidate, or reject all and draw the mask (paper Sec. II-B); repeatable."""
    srv = server(request)
    return workflow.submit(
        srv.db, srv.project_dir, token, principal.user_id, body.model_dump(), srv.max_pixels
    )


users_router = APIRouter(prefix=API, tags=["admin"], dependencies=[Depends(require_admin)])
"""Accounts (admins only)."""


@users_router.get("/admin/users")
def users_list(request: Request) -> dict:
    """Every account."""
    with server(request).db.session() as session:
        return {"users": [_user_dict(u) for u in session.scalars(select(User).order_by(User.id))]}


@users_router.post("/admin/users", status_code=201)
def users_create(body: UserCreateBody, request: Request) -> dict:
    """Create an account (admin or reviewer)."""
    srv = server(request)
    user_id = auth.create_user(srv.db, srv.hasher, body.username, body.password, body.role)
    with srv.db.session() as session:
        return {"user": _user_dict(session.get(User, user_id))}


@users_router.patch("/admin/users/{user_id}")
def users_patch(
    user_id: int, body: UserPatchBody, request: Request, principal: auth.Principal = Depends(require_admin)
) -> dict:
    """Activate, deactivate, change the role or reset the password of an account (its sessions end)."""
    srv = server(request)
    new_hash = auth.hash_password(srv.hasher, body.password) if body.password is not None else None
    with srv.db.session(write=True) as session:
        user = session.get(User, user_id)
        if user is None:
            raise not_found(f"user {user_id}")
        if user.id == principal.user_id and (body.active is False or body.role not in (None, "admin")):
            raise WorkflowConflict("you cannot deactivate or demote your own account", code="self_change")
        if body.role is not None:
            user.role = auth.check_role(body.role)
            if user.role != "reviewer":
                session.execute(delete(Member).where(Member.user_id == user.id))
        if body.active is not None:
            user.active = body.active
        if new_hash is not None:
            user.password_hash = new_hash
        if body.active is False or new_hash is not None or body.role is not None:
            session.execute(delete(AuthSession).where(AuthSession.user_id == user.id))
        return {"user": _user_dict(user)}


projects_router = APIRouter(prefix=API, tags=["admin"], dependencies=[Depends(require_admin)])
"""Projects: creation, settings, members, the stages and the export (admins only)."""


@projects_router.get("/admin/projects")
def projects_list(request: Request) -> dict:
    """Every project with its settings, members, image counts and running job."""
    with server(request).db.session() as session:
        return {
            "projects": [
                project_dict(session, p) for p in session.scalars(select(Project).order_by(Project.id))
            ]
        }


@projects_router.post("/admin/projects", status_code=202)
def projects_create(body: ProjectBody, request: Request) -> dict:
    """Create a project from an image source; its import runs as a background job."""
    srv = server(request)
    project_id = projects.create_project(srv.db, body.name, body.source, body.reviews_per_image)
    job_id = jobs.enqueue(srv.db, project_id, "import", {})
    srv.wake()
    with srv.db.session() as session:
        project = project_dict(session, session.get(Project, project_id))
    return {"project": project, "job": jobs.get_job(srv.db, job_id)}


@projects_router.get("/admin/projects/{project_id}")
def project_get(project_id: int, request: Request) -> dict:
    """One project with its settings, members, image counts and running job."""
    with server(request).db.session() as session:
        return {"project": project_dict(session, _project(session, project_id))}


@projects_router.patch("/admin/projects/{project_id}")
def project_patch(project_id: int, body: ProjectPatchBody, request: Request) -> dict:
    """Change how many reviews each image needs."""
    projects.check_reviews_per_image(body.reviews_per_image)
    with server(request).db.session(write=True) as session:
        project = _project(session, project_id)
        project.reviews_per_image = body.reviews_per_image
        session.flush()
        return {"project": project_dict(session, project)}


@projects_router.put("/admin/projects/{project_id}/members/{user_id}")
def member_add(project_id: int, user_id: int, request: Request) -> dict:
    """Make a reviewer a member of the project."""
    return _set_member(request, project_id, user_id, True)


@projects_router.delete("/admin/projects/{project_id}/members/{user_id}")
def member_remove(project_id: int, user_id: int, request: Request) -> dict:
    """Remove a reviewer from the project."""
    return _set_member(request, project_id, user_id, False)


@projects_router.post("/admin/projects/{project_id}/stage1", status_code=202)
def stage1(project_id: int, body: StageBody, request: Request) -> dict:
    """Start Stage I: train the networks in k-fold cross-validation on the manual masks, queue the reviews
    (paper Sec. II-B)."""
    return _start_stage(request, project_id, 1, body)


@projects_router.post("/admin/projects/{project_id}/stage2", status_code=202)
def stage2(project_id: int, body: StageBody, request: Request) -> dict:
    """Start a Stage II round: train on the accepted masks, predict the unannotated images, queue the reviews
    (paper Sec. II-B)."""
    return _start_stage(request, project_id, 2, body)


@projects_router.post("/admin/projects/{project_id}/export", status_code=202)
def export(project_id: int, request: Request, body: EmptyBody | None = None) -> dict:
    """Export the accepted masks as a QaTa-COV19-style data set with a provenance manifest (a job)."""
    srv = server(request)
    with srv.db.session() as session:
        _project(session, project_id)
    job_id = jobs.enqueue(srv.db, project_id, "export", {})
    srv.wake()
    return {"job": jobs.get_job(srv.db, job_id)}


images_router = APIRouter(prefix=API, tags=["admin"], dependencies=[Depends(require_admin)])
"""A project's images, candidates and accepted masks (admins only)."""


@images_router.get("/admin/projects/{project_id}/images")
def images_list(
    project_id: int,
    request: Request,
    status: str | None = Query(default=None, max_length=16),
    offset: int = Query(default=0, ge=0),
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict:
    """The project's images with their status, stage, reviews and accepted mask (paged)."""
    with server(request).db.session() as session:
        _project(session, project_id)
        query = select(Image).where(Image.project_id == project_id)
        if status is not None:
            query = query.where(Image.status == ("new" if status == "unannotated" else status))
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        images = session.scalars(query.order_by(Image.id).offset(offset).limit(limit)).all()
        return {"images": [_image_dict(session, image) for image in images], "total": int(total)}


@images_router.get("/admin/images/{image_id}/image.png", response_class=Response)
def admin_image(image_id: int, request: Request) -> Response:
    """An image of a project, as PNG."""
    with server(request).db.session() as session:
        image = session.get(Image, image_id)
        if image is None:
            raise not_found(f"image {image_id}")
    return _png(encode_png(read_image(image.path), FAST_PNG))


@images_router.get("/admin/images/{image_id}/accepted.png", response_class=Response)
def admin_accepted(image_id: int, request: Request) -> Response:
    """The accepted mask of an image, as a binary PNG."""
    srv = server(request)
    with srv.db.session() as session:
        accepted = session.scalars(select(Accepted).where(Accepted.image_id == image_id)).first()
        if accepted is None:
            raise not_found(f"an accepted mask of image {image_id}")
    return _png(mask_png(load_mask(srv.project_dir, accepted.mask_path)))


@images_router.get("/admin/images/{image_id}/candidates")
def admin_candidates(image_id: int, request: Request) -> dict:
    """Every candidate mask of an image, with its origin, model, fold, stage and round."""
    with server(request).db.session() as session:
        if session.get(Image, image_id) is None:
            raise not_found(f"image {image_id}")
        rows = session.scalars(select(Candidate).where(Candidate.image_id == image_id).order_by(Candidate.id))
        return {
            "candidates": [
                {
                    "id": c.id,
                    "origin": c.origin,
                    "model": c.model,
                    "fold": c.fold,
                    "stage": c.stage,
                    "round": c.round_id,
                    "mask_url": f"{API}/admin/candidates/{c.id}/mask.png",
                }
                for c in rows
            ]
        }


@images_router.get("/admin/candidates/{candidate_id}/mask.png", response_class=Response)
def admin_candidate_mask(candidate_id: int, request: Request) -> Response:
    """One candidate mask, as a binary PNG."""
    srv = server(request)
    with srv.db.session() as session:
        candidate = session.get(Candidate, candidate_id)
        if candidate is None:
            raise not_found(f"candidate {candidate_id}")
    return _png(mask_png(load_mask(srv.project_dir, candidate.mask_path)))


jobs_router = APIRouter(prefix=API, tags=["admin"], dependencies=[Depends(require_admin)])
"""Background jobs (admins only)."""


@jobs_router.get("/admin/jobs")
def jobs_list(request: Request, project_id: int | None = None) -> dict:
    """The latest background jobs, optionally of one project."""
    return {"jobs": jobs.list_jobs(server(request).db, project_id)}


@jobs_router.get("/admin/jobs/{job_id}")
def job_get(job_id: int, request: Request) -> dict:
    """One background job: state, progress, result or error."""
    return {"job": jobs.get_job(server(request).db, job_id)}


@jobs_router.post("/admin/jobs/{job_id}/cancel")
def job_cancel(job_id: int, request: Request) -> dict:
    """Cancel a queued job now, a running one at its next progress report."""
    return {"job": jobs.cancel(server(request).db, job_id)}


dashboard_router = APIRouter(prefix=API, tags=["admin"], dependencies=[Depends(require_admin)])
"""The project dashboard (admins only)."""


@dashboard_router.get("/admin/projects/{project_id}/dashboard")
def dashboard(project_id: int, request: Request) -> dict:
    """The project's progress and the reviewers' choices and agreement (machine vs. drawn shares)."""
    srv = server(request)
    return stats.dashboard(srv.db, srv.project_dir, project_id)


ROUTERS = (
    auth_router,
    review_router,
    users_router,
    projects_router,
    images_router,
    jobs_router,
    dashboard_router,
)
"""Every router of the API, in the order the app includes them (pages: :mod:`cxrmap.serving.annotate.app`)."""


def _project(session, project_id: int) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise not_found(f"project {project_id}")
    return project


def _set_member(request: Request, project_id: int, user_id: int, member: bool) -> dict:
    db = server(request).db
    projects.set_member(db, project_id, user_id, member)
    with db.session() as session:
        return {"project": project_dict(session, session.get(Project, project_id))}


def _start_stage(request: Request, project_id: int, stage: int, body: StageBody) -> dict:
    srv = server(request)
    params = workflow.stage_params(srv.db, project_id, stage, body.model_dump())
    job_id = jobs.enqueue(srv.db, project_id, f"stage{stage}", params)
    srv.wake()
    return {"job": jobs.get_job(srv.db, job_id)}


def project_dict(session, project: Project) -> dict:
    """The admin's view of a project: settings, members, image counts, the job in progress."""
    counts = workflow.status_counts(session, project.id)
    with_manual = session.scalar(
        select(func.count()).select_from(Image).where(Image.project_id == project.id, Image.manual_path != "")
    )
    members = session.execute(
        select(User.id, User.username)
        .join(Member, Member.user_id == User.id)
        .where(Member.project_id == project.id)
        .order_by(User.username)
    ).all()
    active = session.scalars(
        select(Job).where(Job.project_id == project.id, Job.state.in_(["queued", "running"])).order_by(Job.id)
    ).first()
    rounds = session.execute(
        select(Round.stage, func.count()).where(Round.project_id == project.id).group_by(Round.stage)
    ).all()
    return {
        "id": project.id,
        "name": project.name,
        "reviews_per_image": project.reviews_per_image,
        "created_at": iso(project.created_at),
        "members": [{"id": i, "username": n} for i, n in members],
        "counts": {
            "images": counts["total"],
            "with_manual": int(with_manual or 0),
            "accepted": counts["accepted"],
            "pending": counts["pending"],
            "unannotated": counts["new"],
        },
        "rounds": {str(stage): int(n) for stage, n in rounds},
        "active_job": None if active is None else jobs.job_dict(active),
    }


def _image_dict(session, image: Image) -> dict:

    accepted = session.scalars(select(Accepted).where(Accepted.image_id == image.id)).first()
    done = session.scalar(
        select(func.count()).select_from(Review).where(Review.image_id == image.id, Review.status == "done")
    )
    stage = session.get(Round, image.round_id).stage if image.round_id is not None else None
    out = {
        "id": image.id,
        "name": image.name,
        "status": "unannotated" if image.status == "new" else image.status,
        "stage": stage,
        "has_manual": bool(image.manual_path),
        "reviews_done": int(done or 0),
        "accepted": None,
    }
    if accepted is not None:
        candidate = session.get(Candidate, accepted.candidate_id) if accepted.candidate_id else None
        out["accepted"] = {
            "decision": accepted.decision,
            "origin": candidate.origin if candidate else "drawn",
            "model": candidate.model if candidate else "",
            "mask_url": f"{API}/admin/images/{image.id}/accepted.png",
        }
    return out
