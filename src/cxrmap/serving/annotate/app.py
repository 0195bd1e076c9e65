"""The annotation server: one FastAPI app over one database and one folder, with its job worker.

``create_app(DIR)`` opens (or creates) ``DIR/annotate.db`` (or the database of ``db_url``), the secret key
``DIR/secret.key`` (0600), and starts the background job worker with the app (FastAPI lifespan). Pages
are served from ``cxrmap/serving/annotate/static/`` (``/login``, ``/review``, ``/admin``, ``/dashboard``,
``/static/...``); the JSON API lives under ``/api/v1`` (the routers of :mod:`cxrmap.serving.annotate.api`).
The security headers, request ids, body-size limit, Host check and JSON error shape are those of
:mod:`cxrmap.serving.http`.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from cxrmap import __version__
from cxrmap.core.citation import cite_in
from cxrmap.core.errors import NotFoundError
from cxrmap.serving.annotate import api, auth, workflow
from cxrmap.serving.annotate.db import SCHEMA_VERSION, Database, default_url
from cxrmap.serving.annotate.jobs import JobWorker
from cxrmap.serving.annotate.training import Trainer, cxrmap_trainer
from cxrmap.serving.http.errors import install_error_handlers
from cxrmap.serving.http.middleware import install_middleware

logger = logging.getLogger("cxrmap.serving.annotate")

STATIC_DIR = Path(__file__).parent / "static"
PAGES = {
    "/login": "login.html",
    "/review": "review.html",
    "/admin": "admin.html",
    "/dashboard": "dashboard.html",
}
DEFAULT_MAX_UPLOAD_BYTES = 64 * 2**20
DEFAULT_MAX_PIXELS = 50_000_000


class Server:
    """Everything the endpoints share: database, folder, secret key, hasher, rate limiter, job worker.

    Args:
        project_dir: the server's folder (database, secret key, masks, job folders, exports).
        db_url: SQLAlchemy URL; default SQLite ``DIR/annotate.db``.
        trainer: the training hook of the stage jobs (default :func:`cxrmap_trainer`).
        secure_cookies: mark cookies Secure (serving behind HTTPS); also automatic for HTTPS requests and
            ``X-Forwarded-Proto: https``.
        fast_hash: cheap Argon2 parameters (tests only).
        worker: run the background job worker with the app.
        max_pixels: largest drawn-mask upload, in pixels.
        login_limits: failed logins allowed per 15 minutes, ``{"user": 5, "ip": 20}``.
    """

    def __init__(
        self,
        project_dir: str | Path,
        db_url: str | None = None,
        trainer: Trainer | None = None,
        secure_cookies: bool = False,
        fast_hash: bool = False,
        worker: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        login_limits: dict[str, int] | None = None,
    ) -> None:
        self.project_dir = Path(project_dir).resolve()
        self.project_dir.mkdir(parents=True, exist_ok=True)
        self.secret = auth.load_or_create_secret(self.project_dir)
        self.db = Database(db_url or default_url(self.project_dir))
        self.hasher = auth.make_hasher(fast=fast_hash)
        self.limiter = auth.RateLimiter(login_limits, db=self.db)
        self.secure_cookies = secure_cookies
        self.max_pixels = max_pixels
        self.worker = JobWorker(self.db, self.project_dir, trainer or cxrmap_trainer) if worker else None

    def wake(self) -> None:
        """Tell the worker a job was queued."""
        if self.worker is not None:
            self.worker.wake()

    def start(self) -> None:
        """Remove drawn-mask files a killed server never committed, then start the job worker."""
        orphans = workflow.remove_orphan_drawn(self.db, self.project_dir)
        if orphans:
            logger.warning(
                "removed %d drawn-mask file(s) of submissions a previous server never committed", orphans
            )
        if self.worker is not None:
            self.worker.start()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.db.dispose()


def create_app(
    project_dir: str | Path,
    db_url: str | None = None,
    *,
    trainer: Trainer | None = None,
    secure_cookies: bool = False,
    fast_hash: bool = False,
    worker: bool = True,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allowed_hosts: list[str] | None = None,
    login_limits: dict[str, int] | None = None,
):
    """Build the annotation server's app (see :class:`Server` for the arguments).

    Raises:
        SchemaError: the database holds another schema version.
        AuthError: the secret key file is readable by others.
    """

    srv = Server(
        project_dir,
        db_url,
        trainer=trainer,
        secure_cookies=secure_cookies,
        fast_hash=fast_hash,
        worker=worker,
        max_pixels=max_pixels,
        login_limits=login_limits,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        srv.start()
        try:
            yield
        finally:
            srv.stop()

    app = FastAPI(
        title="cxrmap annotate",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
        lifespan=lifespan,
        dependencies=[Depends(api.csrf_protect)],
        description="Collaborative human-machine annotation of COVID-19 infection masks "
        "(Degerli et al., Sec. II-B). Research use only.",
    )
    app.state.annotate = srv
    install_error_handlers(app)
    install_middleware(app, max_upload_bytes, allowed_hosts)
    for router in api.ROUTERS:
        app.include_router(router)

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict:
        """Liveness: the server answers, and the database schema version it runs on."""
        return {"status": "ok", "schema_version": SCHEMA_VERSION}

    @app.get("/", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse("/login", status_code=303)

    def page(name: str):
        def serve_page() -> HTMLResponse:
            path = STATIC_DIR / name
            if not path.is_file():
                raise NotFoundError(f"the page {name} is not installed")
            return HTMLResponse(cite_in(path.read_text("utf-8")))

        return serve_page

    for route, name in PAGES.items():
        app.add_api_route(route, page(name), methods=["GET"], include_in_schema=False)
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
