"""The annotation pages in a real browser: Debian's headless Chromium driven by Playwright (sync API).

A tiny project (4 radiographs of 80 x 64 with doctors' masks; Stage I with three networks from a fast
stand-in trainer, so four candidates per image) is set up through the HTTP API. In the browser: wrong
passwords (then "too many attempts"); a reviewer chooses a candidate on the first image; rejects the
second image's candidates and draws (brush, lasso while offline, fill + undo), loses the session (login
and back) and reloads the page with the draft intact, submits; on a tablet-sized page rejects the third
and submits candidate A as the start of the drawing. An admin exports the project, creates a second one
from a folder through the form, and opens the dashboard. Screenshots are saved under the test's tmp
folder (their paths are printed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers.browser import launch_chromium, playwright_or_skip

pytestmark = pytest.mark.browser

sync_api = playwright_or_skip()

WIDTH, HEIGHT = 80, 64  # not square: the drawn mask must come back at the radiograph's own width and height
# Words that would tell a reviewer where a candidate comes from (or which image this is).
ORIGIN_WORDS = ("manual", "model", "machine", "unet", "dla", "resnet", "fold", "origin", "xray_", "doctor")
LEFT = {"unet": 6, "unetplusplus": 28, "dla": 50}


def stand_in_trainer(task):
    """A trainer that trains nothing: each network predicts its own rectangle (fast, deterministic)."""
    from cxrmap.data.io import read_image

    left = LEFT[task.network.arch]
    masks = {}
    for image_id, path in task.predict:
        mask = np.zeros(read_image(path).shape, bool)
        mask[16:44, left : left + 24] = True
        masks[image_id] = mask
    return masks


def write_dataset(root: Path) -> tuple[Path, Path]:
    """Four small grey radiographs (80 x 64) and their doctors' masks (an ellipse each)."""
    from PIL import Image

    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    for i in range(4):
        base = 60 + 100 * np.exp(-(((xx - 25) / 14) ** 2 + ((yy - 32) / 24) ** 2))
        base += 100 * np.exp(-(((xx - 55) / 14) ** 2 + ((yy - 32) / 24) ** 2))
        pixels = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / f"xray_{i}.png")
        mask = ((xx - 24 - 4 * i) / 10) ** 2 + ((yy - 30) / 12) ** 2 <= 1
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(masks / f"mask_xray_{i}.png")
    return images, masks


@pytest.fixture(scope="module")
def annotate_server(tmp_path_factory):
    """A running annotation server with one project in Stage I review (3 networks), an admin, a reviewer."""
    import httpx

    from cxrmap.serving.annotate.app import create_app
    from cxrmap.serving.annotate.simulate import ApiClient
    from cxrmap.serving.demo.app import serve_in_background
    from tests.helpers.annotate import add_users, setup_project

    root = tmp_path_factory.mktemp("annotate")
    images, masks = write_dataset(root / "data")
    app = create_app(root / "server", trainer=stand_in_trainer, fast_hash=True)
    users = add_users(app, reviewers=1)
    with serve_in_background(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        admin = ApiClient(client, "admin", users["admin"])
        project_id = setup_project(app, admin, images, masks, members=["rev1"], name="ward-3")
        yield {
            "url": url,
            "srv": app.state.annotate,
            "project_id": project_id,
            "images": images,
            "admin": ("admin", users["admin"]),
            "reviewer": ("rev1", users["rev1"]),
        }


def new_page(browser, problems: list[str], **context_args):
    context = browser.new_context(**context_args)
    page = context.new_page()
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url} {r.failure}"))
    page.on("response", lambda r: problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None)
    return page


def expected_problem(text: str) -> bool:
    """The refusals the test provokes: wrong passwords, the offline spell, the ended session."""
    return (
        "/api/v1/auth/login" in text
        and text[:3] in ("401", "429")  # wrong passwords, then too many
        or any(f"status of {code}" in text for code in (401, 403, 429))  # their console echo
        or "ERR_INTERNET_DISCONNECTED" in text  # offline
        or "ERR_ABORTED" in text  # a page left while it loaded (favicon)
        or "/draft" in text
        and text[:3] in ("401", "403")
    )  # the ended session


def log_in(page, url: str, user: tuple[str, str]) -> None:
    page.fill("#username", user[0])
    page.fill("#password", user[1])
    page.click("#login-button")


def wait_review(page, previous: str = "") -> str:
    """Wait until a review other than `previous` is on screen with all its pictures; return its token."""
    page.wait_for_function(
        """(previous) => {
        const image = document.getElementById('radiograph');
        const pictures = [image, ...document.querySelectorAll('#gallery img')];
        return !document.getElementById('workspace').hidden && (!previous || !image.src.includes(previous))
            && pictures.length > 1 && pictures.every((p) => p.complete && p.naturalWidth > 0);
    }""",
        arg=previous,
    )
    return review_token(page)


def review_token(page) -> str:
    """The review shown now (from its radiograph's URL)."""
    return page.get_attribute("#radiograph", "src").split("/reviews/")[1].split("/")[0]


def drag(page, points: list[tuple[float, float]], box: dict) -> None:
    """Press, move through `points` (fractions of the image box) and release the mouse."""
    at = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for x, y in at[1:]:
        page.mouse.move(x, y, steps=6)
    page.mouse.up()


def wait_text(page, element_id: str, text: str) -> None:
    page.wait_for_function(
        "([id, text]) => document.getElementById(id).textContent.includes(text)", arg=[element_id, text]
    )


def wait_saved(page) -> None:
    page.wait_for_selector("#save-status.saved")


def marked_pixels(page) -> int:
    text = page.locator("#mask-size").inner_text()
    return 0 if text.startswith("Nothing") else int(text.split(" pixels")[0].replace(",", ""))


def test_review_admin_and_dashboard_pages(annotate_server, tmp_path):
    from PIL import Image
    from sqlalchemy import select

    from cxrmap.serving.annotate.db import Candidate, Review

    url, srv = annotate_server["url"], annotate_server["srv"]
    admin_user, reviewer_user = annotate_server["admin"], annotate_server["reviewer"]
    shots: list[Path] = []
    problems: list[str] = []

    def shot(page, name: str) -> None:
        shots.append(tmp_path / f"{name}.png")
        page.screenshot(path=str(shots[-1]), full_page=True)

    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = new_page(browser, problems, viewport={"width": 1280, "height": 860})

        # --- login: the review page sends an anonymous visitor to the login page and back
        page.goto(url + "/review")
        page.wait_for_url("**/login?next=%2Freview")
        log_in(page, url, (reviewer_user[0], "wrong-password"))
        wait_text(page, "login-status", "Wrong")
        shot(page, "login-error")
        for _ in range(5):  # someone guessing: refused with the time to wait (per user name)
            log_in(page, url, ("mallory", "guess-password"))
            page.wait_for_function("() => !document.getElementById('login-button').disabled")
        log_in(page, url, ("mallory", "guess-password"))
        wait_text(page, "login-status", "Try again in")
        assert page.locator("#login-button").is_disabled()
        page.reload()
        log_in(page, url, reviewer_user)
        page.wait_for_url("**/review")

        # --- first image: three blinded candidates, choose B
        first = wait_review(page)
        assert page.locator("#gallery .label").all_inner_texts() == ["A", "B", "C", "D"]
        html = page.content().lower()
        leaked = [word for word in ORIGIN_WORDS if word in html]
        assert leaked == [], f"the review page shows origin words {leaked}"
        assert "ward-3" in page.locator("#project").inner_text()
        page.keyboard.press("b")
        assert page.locator("#overlay").is_visible()
        assert page.get_attribute("#gallery .thumb >> nth=1", "aria-pressed") == "true"
        assert page.locator("#viewer-label").inner_text() == "Candidate B"
        assert page.locator("#choose").inner_text() == "Choose B"
        shot(page, "review-choose")
        page.click("#choose")
        second = wait_review(page, first)

        # --- second image: none acceptable; draw with the brush, a lasso (offline), a fill (undone)
        page.click("#reject")
        assert page.locator("#draw-panel").is_visible()
        assert page.locator("#choose").is_hidden()
        box = page.locator("#mask-canvas").bounding_box()
        assert box["width"] > WIDTH * 4, "the radiograph is not scaled up to the viewer"
        drag(page, [(0.2, 0.3), (0.35, 0.45), (0.5, 0.5)], box)
        after_brush = marked_pixels(page)
        assert after_brush > 20
        wait_saved(page)

        page.context.set_offline(True)  # a lost network: the draft waits in this browser and is retried
        page.keyboard.press("l")
        drag(page, [(0.6, 0.6), (0.9, 0.6), (0.9, 0.9), (0.6, 0.9)], box)
        after_lasso = marked_pixels(page)
        assert after_lasso > after_brush + 100
        page.wait_for_selector("#save-status.offline")
        assert "will retry" in page.locator("#save-status").inner_text()
        shot(page, "review-offline")
        page.context.set_offline(False)
        wait_saved(page)

        page.keyboard.press("f")
        page.mouse.click(box["x"] + 0.05 * box["width"], box["y"] + 0.05 * box["height"])
        assert marked_pixels(page) == WIDTH * HEIGHT  # the background filled: every pixel marked
        page.keyboard.press("Control+z")
        assert marked_pixels(page) == after_lasso
        page.keyboard.press("b")
        shot(page, "review-draw")

        # --- the session ends while drawing: to the login page and back, nothing lost
        page.context.clear_cookies()
        drag(page, [(0.1, 0.8), (0.3, 0.8)], box)
        final = marked_pixels(page)
        assert final > after_lasso
        page.wait_for_url("**/login?next=%2Freview")
        assert "log in (again)" in page.locator("#login-status").inner_text()
        log_in(page, url, reviewer_user)
        page.wait_for_url("**/review")
        page.wait_for_function("() => !document.getElementById('draw-panel').hidden")
        assert review_token(page) == second
        assert marked_pixels(page) == final
        assert "restored" in page.locator("#message").inner_text()
        wait_saved(page)

        # --- and a reload (a closed tab) brings back the server's draft
        page.reload()
        page.wait_for_function("() => !document.getElementById('draw-panel').hidden")
        assert review_token(page) == second and marked_pixels(page) == final
        page.click("#submit-drawn")
        third = wait_review(page, second)
        assert third not in (first, second)
        assert page.locator("#message").inner_text() == ""  # a fresh image: no draft

        # --- third image, on a tablet: none acceptable, the drawing starts from candidate A
        page.set_viewport_size({"width": 820, "height": 1180})
        page.keyboard.press("a")
        shot(page, "review-tablet")
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 820, f"the review page scrolls sideways on a tablet ({width}px wide)"
        page.click("#reject")
        page.click("#start-from button >> nth=1")
        page.wait_for_selector("#start-from button[aria-pressed=true] >> text=A")
        assert marked_pixels(page) > 0
        shot(page, "review-tablet-draw")
        page.click("#submit-drawn")
        wait_review(page, third)

        with srv.db.session() as session:
            done = {r.token: r for r in session.scalars(select(Review).where(Review.status == "done"))}
            chosen = session.get(Candidate, done[first].choice_id)
            start = session.get(Candidate, done[third].start_from_id)
        assert done[third].start_from_id == done[third].order[0]  # A: the first position
        assert (
            np.array(Image.open(srv.project_dir / done[third].drawn_path))
            == np.array(Image.open(srv.project_dir / start.mask_path))
        ).all()
        assert done[first].decision == "choose" and done[first].choice_position == 1
        assert done[second].decision == "reject" and done[second].start_from_id is None
        drawn = np.array(Image.open(srv.project_dir / done[second].drawn_path))
        assert drawn.shape == (HEIGHT, WIDTH) and int((drawn > 127).sum()) == final

        # --- admin: export the project, then the dashboard
        admin = new_page(browser, problems, viewport={"width": 1280, "height": 900})
        admin.goto(url + "/admin")
        admin.wait_for_url("**/login?next=%2Fadmin")
        log_in(admin, url, admin_user)
        admin.wait_for_url("**/admin")
        admin.wait_for_function("() => document.querySelectorAll('#projects tbody tr').length === 1")
        admin.click("#account button:has-text('Password')")  # own password: a dialog, checked before sending
        admin.fill("#pw-old", admin_user[1])
        admin.fill("#pw-new", "a-new-password-1")
        admin.fill("#pw-again", "a-new-password-2")
        admin.click("dialog button[type=submit]")
        assert "differ" in admin.locator("dialog .status").inner_text()
        admin.click("dialog button:has-text('Close')")
        admin.locator("dialog").wait_for(state="detached", timeout=5000)  # removed on its "close" event
        admin.click("#projects tbody tr button")
        admin.wait_for_function("() => !document.getElementById('project-panel').hidden")
        assert "ward-3" in admin.locator("#project-title").inner_text()
        admin.click("#export")
        wait_text(admin, "export-result", "Exported 3 images to /")
        exported = Path(admin.locator("#export-result .export-path").inner_text().strip())
        dataset = exported / "QaTa-COV19-v1"
        names = ["xray_0", "xray_1", "xray_2"]
        masks = sorted(p.name for p in (dataset / "Ground-truths").iterdir())
        assert masks == [f"mask_{n}.png" for n in names]
        assert sorted(p.name for p in (dataset / "Images").iterdir()) == [f"{n}.png" for n in names]
        assert (exported / "provenance.csv").is_file()
        shot(admin, "admin")

        # a second project from a folder on the server, through the form; its import job is polled
        admin.click("#new-project-box summary")
        admin.fill("#np-name", "ward-4")
        admin.fill("#np-images", str(annotate_server["images"]))
        admin.click("#new-project button[type=submit]")
        wait_text(admin, "project-title", "ward-4")
        admin.wait_for_function("() => document.querySelector('#jobs tbody tr .pill.done') !== null")
        admin.wait_for_function("() => document.querySelector('#project-counts b').textContent === '4'")
        admin.check("#members input[type=checkbox]")
        wait_text(admin, "members-status", "reviews ward-4")

        admin.goto(f"{url}/dashboard?project={annotate_server['project_id']}")
        admin.wait_for_function("() => document.querySelectorAll('#networks .bar-row').length === 3")
        assert admin.locator("#progress-accepted").inner_text().startswith("3 of 4 images accepted")
        machine = "33.3%" if chosen.origin == "model" else "0.0%"  # B is a network's mask or the doctor's
        assert f"Machine share: {machine} of 3 accepted masks" in admin.locator("#choices").inner_text()
        shot(admin, "dashboard")
        browser.close()

    for path in shots:
        print(f"screenshot: {path}")
    assert [p for p in problems if not expected_problem(p)] == []
