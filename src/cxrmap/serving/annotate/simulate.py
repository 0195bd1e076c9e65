"""Simulated reviewers and the whole two-stage workflow on phantoms, run through the HTTP API.

Paper Sec. II-B, Fig. 4, played out on synthetic chest X-rays whose true infection masks are known:

- "manual" Stage I masks are the true masks degraded as a hurried hand would draw them
  (:func:`degrade_mask`: a wobbly outline, too large or too small, shifted, with holes);
- a :class:`SimulatedReviewer` sees only what a doctor sees through the API (the radiograph and the blinded
  candidates A, B, ...): it recognises the radiograph, scores every candidate by its Dice with the true
  mask (its "expert judgement", with a little perception noise), chooses the best, or -- when even the best
  is below ``dice_floor`` -- rejects them all and draws the true mask with small noise (:func:`draw_mask`);
- :func:`run_simulation` imports the images, runs Stage I and Stage II jobs, lets the reviewers work,
  exports, indexes the export with :func:`cxrmap.data.readers.index_dataset` and measures everything
  against the true masks. The figures answer the paper's claim that the collaborative masks beat the
  doctors' hurried manual ones.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from cxrmap.core.errors import CxrmapError
from cxrmap.core.fileio import write_bytes_atomic, write_text_atomic
from cxrmap.data.io import read_image, read_mask
from cxrmap.data.phantom.shapes import generate
from cxrmap.data.readers import index_dataset
from cxrmap.serving.annotate import auth
from cxrmap.serving.annotate.app import create_app
from cxrmap.serving.annotate.masks import dice, encode_rle, mask_png


@dataclass(frozen=True)
class SimulationConfig:
    """The simulated project (defaults: about 5-8 minutes on two CPU cores, depending on their load).

    Attributes:
        n_images: COVID-19 phantoms in the project.
        manual_share: share of them with a hurried "manual" mask (the Stage I subset).
        size: phantom image side in pixels (the networks train at the same size).
        stage1_networks, stage2_networks: ``arch:encoder`` lists (paper: three in Stage I, five in II).
        folds: Stage I cross-validation folds.
        epochs, batch_size, lr: training of every network.
        reviewers: simulated reviewers; reviews_per_image: reviews before an image's mask is accepted.
        dice_floor: a reviewer rejects all candidates whose best Dice is below this, and draws the mask.
        perception_noise: standard deviation of the noise on a reviewer's Dice judgement.
        degrade: strength of the manual masks' degradation (1 = a hurried hand).
        threads: torch CPU threads of the training jobs (None: torch's default).
        seed: seed of everything.
    """

    n_images: int = 48
    manual_share: float = 0.5
    size: int = 64
    stage1_networks: str = "unet:tu-resnet10t,unetplusplus:tu-resnet10t,dla:tu-resnet10t"
    stage2_networks: str = (
        "unet:tu-resnet10t,unetplusplus:tu-resnet10t,dla:tu-resnet10t,"
        "unet:tu-mobilenetv3_small_050,dla:tu-mobilenetv3_small_050"
    )
    folds: int = 3
    epochs: int = 20
    batch_size: int = 4
    lr: float = 3e-3
    reviewers: int = 2
    reviews_per_image: int = 2
    dice_floor: float = 0.6
    perception_noise: float = 0.02
    degrade: float = 1.0
    threads: int | None = None
    seed: int = 0


def _disc(radius: int) -> np.ndarray:

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _wobble(
    mask: np.ndarray, rng: np.random.Generator, blur: float, amount: float, cells: int = 6
) -> np.ndarray:
    """``mask`` with a smooth random outline: blurred, plus low-frequency noise, thresholded at 0.5."""

    h, w = mask.shape
    noise = cv2.resize(
        rng.normal(0, 1, (cells, cells)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
    )
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), blur)
    return soft + amount * noise > 0.5


def degrade_mask(mask: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """A hurried hand's version of the true ``mask``: wobbly outline, dilated or eroded, shifted, with holes.

    Sizes scale with the image (``strength`` 1 at 96 px: 1-3 px of dilation/erosion, up to 2 px shift,
    0-2 holes of 3-6 px radius).
    """

    h, w = mask.shape
    scale = max(h, w) / 96 * strength
    out = _wobble(np.asarray(mask, bool), rng, max(0.5, 1.5 * scale), 0.2 * strength).astype(np.uint8)
    radius = int(round(rng.uniform(1, 3) * scale))
    if radius:
        out = cv2.dilate(out, _disc(radius)) if rng.random() < 0.5 else cv2.erode(out, _disc(radius))
    dx, dy = (rng.uniform(-2, 2, 2) * scale).round()
    out = cv2.warpAffine(out, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), flags=cv2.INTER_NEAREST)
    ys, xs = np.nonzero(out)
    for _ in range(int(rng.integers(0, 3)) if len(ys) else 0):
        k = int(rng.integers(len(ys)))
        cv2.circle(out, (int(xs[k]), int(ys[k])), max(1, int(rng.uniform(3, 6) * scale)), 0, -1)
    return out.astype(bool)


def draw_mask(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A careful doctor's drawing of the true ``mask``: its outline off by about a pixel."""
    h, w = mask.shape
    return _wobble(np.asarray(mask, bool), rng, max(0.5, max(h, w) / 96), 0.08, cells=8)


def pixels_key(image: np.ndarray) -> str:
    """Identity of a radiograph by its pixels (how a simulated reviewer recognises an image it is shown)."""
    return hashlib.sha256(np.ascontiguousarray(image).tobytes() + str(image.shape).encode()).hexdigest()


def _decode_png(data: bytes) -> np.ndarray:

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("L"))


class ApiClient:
    """A logged-in client of the annotation API (an httpx/TestClient-like ``client``) and its CSRF token."""

    def __init__(self, client, username: str, password: str) -> None:
        self.client = client
        token = self.check(client.get("/api/v1/auth/session"))["csrf_token"]
        answer = client.post(
            "/api/v1/auth/login",
            json={"username": username, "password": password},
            headers={"X-CSRF-Token": token},
        )
        self.csrf = self.check(answer)["csrf_token"]

    @staticmethod
    def check(response) -> dict:
        if response.status_code >= 400:
            raise CxrmapError(
                f"{response.request.method} {response.request.url.path} answered "
                f"{response.status_code}: {response.text[:300]}"
            )
        return response.json()

    def get(self, path: str, **kwargs):
        return self.client.get(path, **kwargs)

    def send(self, method: str, path: str, body: dict | None = None) -> dict:
        return self.check(self.client.request(method, path, json=body, headers={"X-CSRF-Token": self.csrf}))

    def wait_job(self, job: dict, timeout: float = 3600.0, progress=None) -> dict:
        """Poll a job until it ends; raise unless it is done."""
        deadline = time.monotonic() + timeout
        while job["state"] in ("queued", "running"):
            if time.monotonic() > deadline:
                raise CxrmapError(f"job {job['id']} ({job['kind']}) did not finish within {timeout:.0f} s")
            time.sleep(0.2)
            job = self.check(self.get(f"/api/v1/admin/jobs/{job['id']}"))["job"]
            if progress is not None:
                progress(job)
        if job["state"] != "done":
            raise CxrmapError(f"job {job['id']} ({job['kind']}) ended {job['state']}: {job['error']}")
        return job


class SimulatedReviewer:
    """A reviewer that judges candidates by their Dice with the true mask (see the module notes).

    Args:
        api: the reviewer's logged-in :class:`ApiClient`.
        references: :func:`pixels_key` of each radiograph -> its true mask.
        dice_floor: below this best Dice, reject all and draw.
        noise: standard deviation of the perception noise added to each Dice.
        seed: seed of the noise and the drawing.
    """

    def __init__(
        self,
        api: ApiClient,
        references: dict[str, np.ndarray],
        dice_floor: float = 0.6,
        noise: float = 0.02,
        seed: int = 0,
    ) -> None:
        self.api, self.references = api, references
        self.dice_floor, self.noise = dice_floor, noise
        self.rng = np.random.default_rng(seed)

    def review_one(self, project_id: int) -> dict | None:
        """Claim, judge and submit one review; return the submitted review (None when nothing is left)."""
        item = self.api.send("POST", f"/api/v1/review/projects/{project_id}/next")["review"]
        if item is None:
            return None
        image = _decode_png(self._get(item["image"]["url"]))
        reference = self.references[pixels_key(image)]
        scores = []
        for candidate in item["candidates"]:
            mask = _decode_png(self._get(candidate["mask_url"])) > 127
            scores.append(dice(mask, reference) + self.rng.normal(0.0, self.noise))
        best = int(np.argmax(scores))
        chosen = item["candidates"][best]["token"]
        path = f"/api/v1/reviews/{item['token']}"
        self.api.send(
            "PUT", f"{path}/draft", {"seq": 1, "state": {"looking_at": item["candidates"][best]["label"]}}
        )
        if scores[best] >= self.dice_floor:
            body = {"decision": "choose", "choice": chosen}
        else:
            drawn = draw_mask(reference, self.rng)
            self.api.send(
                "PUT", f"{path}/draft", {"seq": 2, "state": {"start_from": chosen, "rle": encode_rle(drawn)}}
            )
            body = {
                "decision": "reject",
                "start_from": chosen,
                "mask": {
                    "format": "rle",
                    "width": int(drawn.shape[1]),
                    "height": int(drawn.shape[0]),
                    "counts": encode_rle(drawn),
                },
            }
        return self.api.send("POST", f"{path}/submit", body)

    def _get(self, url: str) -> bytes:
        response = self.api.get(url)
        if response.status_code >= 400:
            self.api.check(response)
        return response.content


def review_round(reviewers: list[SimulatedReviewer], project_id: int) -> int:
    """Let the reviewers take turns until nothing waits for any of them; return the reviews submitted."""
    total, active = 0, list(reviewers)
    while active:
        for reviewer in list(active):
            if reviewer.review_one(project_id) is None:
                active.remove(reviewer)
            else:
                total += 1
    return total


def make_data(out: Path, config: SimulationConfig, progress: bool = True) -> tuple[Path, Path, dict, dict]:
    """Phantoms + hurried manual masks for a subset; return (images dir, manual masks dir, truths, manual)."""

    root = generate(
        out / "phantom",
        n_covid=config.n_images,
        n_control=0,
        size=config.size,
        seed=config.seed,
        progress=progress,
    )
    images_dir = root / "QaTa-COV19-v1" / "Images"
    truth_dir = root / "QaTa-COV19-v1" / "Ground-truths"
    manual_dir = out / "manual-masks"
    rng = np.random.default_rng(config.seed + 1)
    images = sorted(images_dir.glob("*.png"))
    n_manual = int(round(config.manual_share * len(images)))
    chosen = set(rng.choice(len(images), size=n_manual, replace=False).tolist())
    truths, manual = {}, {}
    for i, path in enumerate(images):
        truth = read_mask(truth_dir / f"mask_{path.name}")
        truths[path.stem] = (pixels_key(read_image(path)), truth)
        if i in chosen:
            manual[path.stem] = degrade_mask(truth, rng, config.degrade)
            write_bytes_atomic(manual_dir / f"mask_{path.name}", mask_png(manual[path.stem]))
    return images_dir, manual_dir, truths, manual


def run_simulation(
    out: str | Path, config: SimulationConfig | None = None, trainer=None, progress: bool = True, log=print
) -> dict:
    """Run the whole workflow on a phantom project through the API; write and return ``out/simulation.json``.

    Args:
        out: a new or empty folder (data, the server's folder, the export, ``simulation.json``).
        config: the project and its settings (:class:`SimulationConfig`).
        trainer: the stage jobs' training hook (default: cxrmap's training loop).
        progress: show progress bars of the phantom generation.
        log: where to print one line per step (``None``: silent).

    Returns:
        The figures: ``manual_dice`` (hurried manual masks vs truth), ``final_dice`` (accepted masks of the
        export vs truth, all images), ``final_dice_manual_subset`` (the same images as ``manual_dice``),
        ``machine_share_stage1``, ``machine_share_stage2``, ``drawn_share_stage2``, the dashboard, timings.
    """

    config = config or SimulationConfig()
    say = log or (lambda *args: None)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise CxrmapError(f"{out} is not empty; give a new folder for the simulation")
    started = time.perf_counter()
    images_dir, manual_dir, truths, manual = make_data(out / "data", config, progress)
    say(f"data: {len(truths)} phantoms, {len(manual)} with hurried manual masks")
    references = dict(truths.values())
    app = create_app(out / "server", trainer=trainer)
    srv = app.state.annotate
    admin_password = secrets.token_urlsafe(16)
    auth.create_user(srv.db, srv.hasher, "admin", admin_password, "admin")
    timings: dict[str, float] = {}

    def timed(name: str, since: float) -> None:
        timings[name] = round(time.perf_counter() - since, 1)
        say(f"{name}: {timings[name]} s")

    with TestClient(app, base_url="http://127.0.0.1") as client:
        admin = ApiClient(client, "admin", admin_password)
        reviewers = []
        for i in range(config.reviewers):
            password = secrets.token_urlsafe(16)
            user = admin.send(
                "POST",
                "/api/v1/admin/users",
                {"username": f"doctor{i + 1}", "password": password, "role": "reviewer"},
            )["user"]
            reviewers.append((user, password))
        t = time.perf_counter()
        answer = admin.send(
            "POST",
            "/api/v1/admin/projects",
            {
                "name": "phantom-simulation",
                "reviews_per_image": config.reviews_per_image,
                "source": {"kind": "folder", "images": str(images_dir), "masks": str(manual_dir)},
            },
        )
        project_id = answer["project"]["id"]
        admin.wait_job(answer["job"])
        for user, _ in reviewers:
            admin.send("PUT", f"/api/v1/admin/projects/{project_id}/members/{user['id']}")
        timed("import", t)
        doctors = [
            SimulatedReviewer(
                ApiClient(TestClient(app, base_url="http://127.0.0.1"), user["username"], pw),
                references,
                config.dice_floor,
                config.perception_noise,
                config.seed + 10 + i,
            )
            for i, (user, pw) in enumerate(reviewers)
        ]
        training = {
            "size": config.size,
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "lr": config.lr,
            "threads": config.threads,
        }
        t = time.perf_counter()
        job = admin.send(
            "POST",
            f"/api/v1/admin/projects/{project_id}/stage1",
            {
                "networks": config.stage1_networks,
                "folds": config.folds,
                "training": training,
                "seed": config.seed,
            },
        )["job"]
        admin.wait_job(job)
        timed("stage1_training", t)
        t = time.perf_counter()
        reviews1 = review_round(doctors, project_id)
        timed("stage1_reviews", t)
        reviews2 = 0
        t = time.perf_counter()
        rounds2 = 0
        while admin.check(admin.get(f"/api/v1/admin/projects/{project_id}"))["project"]["counts"][
            "unannotated"
        ]:
            job = admin.send(
                "POST",
                f"/api/v1/admin/projects/{project_id}/stage2",
                {"networks": config.stage2_networks, "training": training, "seed": config.seed},
            )["job"]
            admin.wait_job(job)
            reviews2 += review_round(doctors, project_id)
            rounds2 += 1
        timed("stage2_training_and_reviews", t)
        dashboard = admin.check(admin.get(f"/api/v1/admin/projects/{project_id}/dashboard"))
        job = admin.send("POST", f"/api/v1/admin/projects/{project_id}/export", {})["job"]
        export_dir = Path(admin.wait_job(job)["result"]["path"])
    indexed = index_dataset(export_dir, progress=False).manifest
    final = {}
    for row in indexed.itertuples():
        final[Path(row.image_path).stem] = dice(
            read_mask(row.mask_path), truths[Path(row.image_path).stem][1]
        )
    manual_dice = [dice(mask, truths[name][1]) for name, mask in manual.items()]
    choices = dashboard["choices"]
    result = {
        "manual_dice": round(float(np.mean(manual_dice)), 4),
        "final_dice": round(float(np.mean(list(final.values()))), 4),
        "final_dice_manual_subset": round(float(np.mean([final[name] for name in manual])), 4),
        "final_dice_stage2_images": round(float(np.mean([v for k, v in final.items() if k not in manual])), 4)
        if len(final) > len(manual)
        else None,
        "machine_share_stage1": choices["1"]["machine_share"],
        "machine_share_stage2": choices["2"]["machine_share"],
        "drawn_share_stage2": (
            round(
                choices["2"]["drawn"] / max(1, sum(choices["2"][k] for k in ("model", "manual", "drawn"))), 4
            )
        ),
        "images": len(truths),
        "manual_images": len(manual),
        "exported": len(final),
        "indexed_by_cxrmap_index": len(indexed),
        "reviews_stage1": reviews1,
        "reviews_stage2": reviews2,
        "stage2_rounds": rounds2,
        "export": str(export_dir),
        "dashboard": {
            k: dashboard[k] for k in ("progress", "choices", "networks", "agreement", "position_bias")
        },
        "config": asdict(config),
        "timings_s": timings,
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    write_text_atomic(out / "simulation.json", json.dumps(result, indent=2))
    say(
        f"manual masks Dice {result['manual_dice']:.3f} -> accepted masks Dice {result['final_dice']:.3f}; "
        f"machine share: Stage I {result['machine_share_stage1']}, Stage II {result['machine_share_stage2']}"
    )
    return result
