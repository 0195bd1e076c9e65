"""Shared helpers of the annotation server's tests (no tests here): tiny phantom projects, a fast stand-in
for the networks' training, logged-in API clients."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np

from cxrmap.data.io import read_mask
from cxrmap.serving.annotate import auth
from cxrmap.serving.annotate.simulate import ApiClient, SimulationConfig, degrade_mask, make_data

NETWORKS_1 = "unet:resnet18,unetplusplus:resnet18,dla:resnet18"
NETWORKS_2 = "unet:resnet18,unetplusplus:resnet18,dla:resnet18,unet:mobilenet_v2,dla:mobilenet_v2"
CSRF = "X-CSRF-Token"


def fake_trainer(task):
    """Stand-in for training: each network "predicts" the true phantom mask degraded with its own noise.

    The true mask lies beside the image (phantom layout ``Images/X.png`` -> ``Ground-truths/mask_X.png``).
    """
    seed = zlib.crc32(task.network.name.encode())
    task.report(0.5, "pretend training")
    out = {}
    for image_id, path in task.predict:
        path = Path(path)
        truth = read_mask(path.parent.parent / "Ground-truths" / f"mask_{path.name}")
        out[image_id] = degrade_mask(truth, np.random.default_rng(seed + image_id), 0.6)
    return out


def tiny_data(folder: Path, n_images: int = 8, manual_share: float = 0.5, seed: int = 0):
    """Phantoms (64 px) with hurried manual masks on a share: (images dir, manual dir, truths, manual)."""
    config = SimulationConfig(n_images=n_images, manual_share=manual_share, size=64, seed=seed)
    return make_data(folder, config, progress=False)


def add_users(app, reviewers: int = 2) -> dict[str, str]:
    """An admin and ``reviewers`` reviewers created directly in the database: username -> password."""
    srv = app.state.annotate
    users = {"admin": secrets.token_urlsafe(12)}
    auth.create_user(srv.db, srv.hasher, "admin", users["admin"], "admin")
    for i in range(reviewers):
        name = f"rev{i + 1}"
        users[name] = secrets.token_urlsafe(12)
        auth.create_user(srv.db, srv.hasher, name, users[name], "reviewer")
    return users


def user_id(app, username: str) -> int:
    from sqlalchemy import select

    from cxrmap.serving.annotate.db import User

    with app.state.annotate.db.session() as session:
        return session.scalar(select(User.id).where(User.username == username))


def wait_job(api: ApiClient, job: dict, timeout: float = 120.0) -> dict:
    return api.wait_job(job, timeout=timeout)


def setup_project(
    app,
    admin: ApiClient,
    images_dir: Path,
    manual_dir: Path,
    members: list[str],
    reviews_per_image: int = 1,
    folds: int = 2,
    name: str = "ward",
) -> int:
    """Create a project through the API, add ``members``, run Stage I (fake training); return its id."""
    answer = admin.send(
        "POST",
        "/api/v1/admin/projects",
        {
            "name": name,
            "reviews_per_image": reviews_per_image,
            "source": {"kind": "folder", "images": str(images_dir), "masks": str(manual_dir)},
        },
    )
    project_id = answer["project"]["id"]
    wait_job(admin, answer["job"])
    for member in members:
        admin.send("PUT", f"/api/v1/admin/projects/{project_id}/members/{user_id(app, member)}")
    job = admin.send(
        "POST",
        f"/api/v1/admin/projects/{project_id}/stage1",
        {"networks": NETWORKS_1, "folds": folds, "training": {"size": 64, "epochs": 1}},
    )["job"]
    wait_job(admin, job)
    return project_id


REVIEW_SERVER_PROJECT = "ward"


@contextlib.contextmanager
def review_server(folder: Path, data) -> Iterator[tuple]:
    """A running app (fake training, k=1) with a Stage I project and ``rev1`` logged in holding one open
    review: yields ``(app, rev1 ApiClient, review item)``."""
    from fastapi.testclient import TestClient

    from cxrmap.serving.annotate.app import create_app

    images_dir, manual_dir, _, _ = data
    app = create_app(folder, trainer=fake_trainer, fast_hash=True)
    users = add_users(app, reviewers=1)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        admin = ApiClient(client, "admin", users["admin"])
        project_id = setup_project(app, admin, images_dir, manual_dir, ["rev1"], name=REVIEW_SERVER_PROJECT)
        with TestClient(app, base_url="http://127.0.0.1") as own:
            rev1 = ApiClient(own, "rev1", users["rev1"])
            item = rev1.send("POST", f"/api/v1/review/projects/{project_id}/next")["review"]
            yield app, rev1, item


SERVER = """
import sys, uvicorn
from cxrmap.serving.annotate.app import create_app
app = create_app(sys.argv[1], sys.argv[3] or None, fast_hash=True, worker=False)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""
"""An annotation server in a process of its own (one that a test can kill -9): folder, port, database URL."""


def start_server(
    folder: Path, port: int, db_url: str | None = None, timeout: float = 120.0
) -> subprocess.Popen:
    """Start :data:`SERVER` on ``folder`` and ``port`` and wait until it answers ``/healthz``."""
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(folder), str(port), db_url or ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start")
