"""Background jobs: import, Stage I, Stage II, export -- never run inside a request.

A job's whole state (queued, running, done, failed, cancelled; progress; message; result) lives in the
``jobs`` table. :class:`JobWorker` is a thread of the server that claims the oldest queued job (an atomic
``UPDATE ... WHERE state = 'queued'``), runs it and records the outcome. At start-up, jobs found
``running`` (the server died under them) are re-queued; a re-run job skips the work it finished before
(finished trainings keep a ``done.json``, an interrupted training resumes from its ``last.pt``, written
about once a minute, an import skips the images it added).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from sqlalchemy import select, update

from cxrmap.core.errors import CxrmapError
from cxrmap.serving.annotate import export, projects, workflow
from cxrmap.serving.annotate.db import Database, Job, iso, utcnow
from cxrmap.serving.annotate.errors import not_found
from cxrmap.serving.annotate.training import JobCancelled, Trainer

logger = logging.getLogger("cxrmap.serving.annotate.jobs")

KINDS = ("import", "stage1", "stage2", "export")
MAX_ATTEMPTS = 3
REPORT_INTERVAL = 1.0


def enqueue(db: Database, project_id: int | None, kind: str, params: dict) -> int:
    """Add a queued job; return its id."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    with db.session(write=True) as session:
        job = Job(project_id=project_id, kind=kind, params=params)
        session.add(job)
        session.flush()
        return job.id


def job_dict(job: Job) -> dict:
    return {
        "id": job.id,
        "project_id": job.project_id,
        "kind": job.kind,
        "state": job.state,
        "progress": round(float(job.progress), 4),
        "message": job.message,
        "error": job.error,
        "result": job.result or {},
        "attempts": job.attempts,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
    }


def get_job(db: Database, job_id: int) -> dict:
    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise not_found(f"job {job_id}")
        return job_dict(job)


def list_jobs(db: Database, project_id: int | None = None, limit: int = 50) -> list[dict]:
    with db.session() as session:
        query = select(Job).order_by(Job.id.desc()).limit(limit)
        if project_id is not None:
            query = query.where(Job.project_id == project_id)
        return [job_dict(job) for job in session.scalars(query)]


def cancel(db: Database, job_id: int) -> dict:
    """Cancel a queued job now, a running one at its next progress report; finished jobs stay as they are."""
    with db.session(write=True) as session:
        job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
        if job is None:
            raise not_found(f"job {job_id}")
        if job.state == "queued":
            job.state, job.finished_at, job.message = "cancelled", utcnow(), "cancelled before it started"
        elif job.state == "running":
            job.cancel_requested = True
        return job_dict(job)


def requeue_running(db: Database) -> int:
    """Put back in the queue the jobs left ``running`` by a server that died; return how many."""
    with db.session(write=True) as session:
        session.execute(
            update(Job)
            .where(Job.state == "running", Job.attempts >= MAX_ATTEMPTS)
            .values(
                state="failed",
                finished_at=utcnow(),
                error=f"the server stopped {MAX_ATTEMPTS} times while running this job; start it again",
            )
        )
        result = session.execute(
            update(Job)
            .where(Job.state == "running")
            .values(state="queued", message="re-queued after a server restart")
        )
        return int(result.rowcount or 0)


def claim(db: Database, job_id: int) -> bool:
    """Atomically mark the queued job ``job_id`` running; False when it is not queued (any more)."""
    with db.session(write=True) as session:
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == "queued")
            .values(state="running", started_at=utcnow(), attempts=Job.attempts + 1, progress=0.0)
        )
        return bool(claimed.rowcount)


def claim_next(db: Database) -> int | None:
    """Atomically mark the oldest queued job running; return its id (None when the queue is empty)."""
    with db.session() as session:
        queued = list(session.scalars(select(Job.id).where(Job.state == "queued").order_by(Job.id).limit(5)))
    return next((job_id for job_id in queued if claim(db, job_id)), None)


class Reporter:
    """Writes a running job's progress to the database (at most once a second) and notices cancellation."""

    def __init__(self, db: Database, job_id: int, listener=None) -> None:
        self.db, self.job_id, self.last, self.listener = db, job_id, 0.0, listener

    def __call__(self, fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - self.last < REPORT_INTERVAL:
            return
        self.last = now
        if self.listener is not None:
            self.listener(fraction, message)
        with self.db.session(write=True) as session:
            job = session.get(Job, self.job_id)
            job.progress, job.message = max(0.0, min(1.0, float(fraction))), message[:500]
            cancelled = job.cancel_requested
        if cancelled:
            raise JobCancelled()


def run_job(db: Database, project_dir: str | Path, trainer: Trainer, job_id: int, listener=None) -> dict:
    """Run the (already claimed) job ``job_id`` and record its outcome; return its final JSON view.

    ``listener(fraction, message)`` also receives the progress reports (the CLI prints them).
    """

    with db.session() as session:
        job = session.get(Job, job_id)
        kind, params, project_id = job.kind, job.params or {}, job.project_id
    report = Reporter(db, job_id, listener)
    state, error, result = "done", "", {}
    try:
        if kind == "import":
            result = projects.import_images(db, project_dir, project_id, progress=report)
        elif kind in workflow.STAGE_KINDS:
            ctx = workflow.StageContext(db, Path(project_dir), trainer, job_id, project_id, report)
            runner = workflow.run_stage1 if kind == "stage1" else workflow.run_stage2
            result = runner(ctx, params)
        else:
            result = export.export_project(db, project_dir, project_id, params.get("out"), progress=report)
    except JobCancelled:
        state, error = "cancelled", "cancelled by an admin"
    except CxrmapError as exc:  # user errors, WorkflowError included
        state, error = "failed", str(exc)
    except Exception as exc:  # a bug or a crash of the training: logged, reported without internals
        logger.exception("job %s (%s) failed", job_id, kind)
        state, error = "failed", f"internal error ({type(exc).__name__}); see the server log"
    with db.session(write=True) as session:
        job = session.get(Job, job_id)
        job.state, job.error, job.finished_at = state, error[:2000], utcnow()
        job.result = json.loads(json.dumps(result, default=str))
        if state == "done":
            job.progress, job.message = 1.0, "done"
        return job_dict(job)


class JobWorker:
    """The server's background thread: runs queued jobs one at a time, polling the database.

    Args:
        db: the database.
        project_dir: the server's folder.
        trainer: the training hook of the stage jobs.
        poll: seconds between looks at an empty queue.
    """

    def __init__(self, db: Database, project_dir: str | Path, trainer: Trainer, poll: float = 0.5) -> None:
        self.db, self.project_dir, self.trainer, self.poll = db, Path(project_dir), trainer, poll
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        requeued = requeue_running(self.db)
        if requeued:
            logger.warning("re-queued %d job(s) left running by a previous server", requeued)
        self._thread = threading.Thread(target=self._loop, name="cxrmap-annotate-jobs", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at the queue now (called after a job is enqueued)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job_id = claim_next(self.db)
                if job_id is not None:
                    run_job(self.db, self.project_dir, self.trainer, job_id)
                    continue
            except Exception:  # keep the worker alive (e.g. database briefly unreachable)
                logger.exception("job worker error")
            self._wake.wait(self.poll)
            self._wake.clear()
