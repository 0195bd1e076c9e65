"""Eight reviewers' sessions against a live annotation server for ``--seconds``, on SQLite and on PostgreSQL,
with the server killed (SIGKILL) and restarted half-way.

Each reviewer loops: take the next image, save two drafts, submit (choose a candidate or reject with a
drawn RLE mask). A request that meets the dead server is retried once it is back (a submit resent as it
was: the API makes that safe). Prints per backend the requests, errors (answers >= 400 other than a
withdrawn review, and failed connections outside the outage), p95 latency per kind of request, and
whether every acknowledged submit is in the database exactly once. Exits with status 1 when one is not.

    python benchmarks/bench_annotate_load.py [--seconds 60] [--backend sqlite|postgresql|both] [--images 240]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared test helpers (fake training)

from tests.helpers.annotate import add_users, fake_trainer, setup_project, start_server, tiny_data  # noqa: E402
from tests.helpers.postgres import Unavailable, create_database, free_port, postgres_cluster  # noqa: E402

from cxrmap.serving.annotate.app import create_app  # noqa: E402
from cxrmap.serving.annotate.db import Accepted, Database, Review, default_url  # noqa: E402
from cxrmap.serving.annotate.masks import encode_rle  # noqa: E402
from cxrmap.serving.annotate.simulate import ApiClient  # noqa: E402

REVIEWERS = 8


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = {"next": [], "draft": [], "submit": []}
        self.errors: Counter = Counter()
        self.outage_retries = 0
        self.acknowledged: list[str] = []


def reviewer(url, name, password, project_id, stats: Stats, stop: threading.Event, down: threading.Event, i):
    client = httpx.Client(base_url=url, timeout=60)
    api = None

    def call(kind: str, method: str, path: str, body=None):
        """One request, retried while the server is down; (status, json) or None when stopped."""
        nonlocal api
        while not stop.is_set():
            try:
                if api is None:
                    api = ApiClient(client, name, password)
                start = time.perf_counter()
                answer = client.request(method, path, json=body, headers={"X-CSRF-Token": api.csrf})
                elapsed = time.perf_counter() - start
            except (httpx.HTTPError, OSError) as error:
                with stats.lock:
                    if down.is_set():
                        stats.outage_retries += 1
                    else:
                        stats.errors[f"{kind}: {type(error).__name__}"] += 1
                time.sleep(0.2)
                continue
            except Exception as error:  # a failed login (the server answered >= 400)
                with stats.lock:
                    stats.errors[f"login: {str(error)[:80]}"] += 1
                time.sleep(0.2)
                continue
            with stats.lock:
                stats.latency[kind].append(elapsed)
                if answer.status_code >= 400 and not (kind == "submit" and answer.status_code == 409):
                    stats.errors[f"{kind}: HTTP {answer.status_code}"] += 1
            return answer.status_code, answer.json()
        return None

    seq = 0
    while not stop.is_set():
        got = call("next", "POST", f"/api/v1/review/projects/{project_id}/next")
        if got is None or got[0] != 200 or got[1]["review"] is None:
            break  # stopped, or no image left
        item = got[1]["review"]
        path = f"/api/v1/reviews/{item['token']}"
        for _ in range(2):
            seq += 1
            call("draft", "PUT", f"{path}/draft", {"seq": seq, "state": {"n": seq}})
        if seq % 4:
            body = {
                "decision": "choose",
                "choice": item["candidates"][seq % len(item["candidates"])]["token"],
            }
        else:
            mask = np.zeros((item["image"]["height"], item["image"]["width"]), bool)
            mask[i : i + 20, 10:40] = True
            upload = {
                "format": "rle",
                "width": mask.shape[1],
                "height": mask.shape[0],
                "counts": encode_rle(mask),
            }
            body = {"decision": "reject", "mask": upload}
        got = call("submit", "POST", f"{path}/submit", body)
        if got is not None and got[0] == 200:
            with stats.lock:
                stats.acknowledged.append(item["token"])
    client.close()


def run_backend(backend: str, db_url: str | None, seconds: float, images: int, work: Path) -> bool:
    folder = work / backend
    images_dir, manual_dir, _, _ = tiny_data(work / f"data-{backend}", n_images=images, manual_share=1.0)
    app = create_app(folder, db_url, trainer=fake_trainer, fast_hash=True)
    users = add_users(app, reviewers=REVIEWERS)
    names = [f"rev{i + 1}" for i in range(REVIEWERS)]
    with TestClient(app, base_url="http://127.0.0.1") as client:
        admin = ApiClient(client, "admin", users["admin"])
        project_id = setup_project(app, admin, images_dir, manual_dir, names, folds=2)
    app.state.annotate.db.dispose()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(folder, port, db_url)
    stats, stop, down = Stats(), threading.Event(), threading.Event()
    threads = [
        threading.Thread(target=reviewer, args=(url, n, users[n], project_id, stats, stop, down, i))
        for i, n in enumerate(names)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds / 2)
    down.set()
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    killed_at = time.perf_counter() - started
    server = start_server(folder, port, db_url)
    down.clear()
    outage = time.perf_counter() - started - killed_at
    time.sleep(max(0.0, seconds - (time.perf_counter() - started)))
    stop.set()
    for thread in threads:
        thread.join(120)
    elapsed = time.perf_counter() - started
    server.send_signal(signal.SIGTERM)
    server.wait(30)
    db = Database(db_url or default_url(folder))
    with db.session() as session:
        rows = Counter(session.scalars(select(Review.token).where(Review.status == "done")))
        per_image = session.execute(select(Accepted.image_id, func.count()).group_by(Accepted.image_id)).all()
    db.dispose()
    acknowledged = Counter(stats.acknowledged)
    once = all(rows[token] == 1 for token in acknowledged) and all(n == 1 for _, n in per_image)
    requests = sum(len(v) for v in stats.latency.values())
    print(
        f"\n{backend}: {elapsed:.1f} s, {REVIEWERS} reviewers, server killed at {killed_at:.1f} s "
        f"(back after {outage:.1f} s; {stats.outage_retries} requests retried meanwhile)"
    )
    print(
        f"  requests answered: {requests} ({requests / elapsed:.1f}/s); "
        f"submits acknowledged: {len(acknowledged)}"
    )
    for kind, values in stats.latency.items():
        if values:
            p50, p95 = np.percentile(np.array(values) * 1000, [50, 95])
            print(f"  {kind:7s} n={len(values):5d}  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms")
    print(f"  errors: {sum(stats.errors.values())} {dict(stats.errors) if stats.errors else ''}")
    print(
        f"  every acknowledged submit in the database exactly once: {'yes' if once else 'NO'} "
        f"({len(acknowledged)} acknowledged, {sum(rows.values())} done reviews, {len(per_image)} accepted)"
    )
    return once


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each backend's run")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--images", type=int, default=240, help="phantoms to review (enough for the run)")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="cxrmap-bench-load-") as tmp:
        work = Path(tmp)
        if args.backend in ("sqlite", "both"):
            ok &= run_backend("sqlite", None, args.seconds, args.images, work)
        if args.backend in ("postgresql", "both"):
            try:
                with postgres_cluster() as base:
                    ok &= run_backend("postgresql", create_database(base), args.seconds, args.images, work)
            except Unavailable as why:
                print(f"\npostgresql: skipped ({why})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
