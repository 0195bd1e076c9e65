"""The demo page in a real browser: Debian's headless Chromium driven by Playwright (sync API).

Uploads a real sample (when the samples are present) by the file chooser and a phantom by drag-and-drop,
checks the map, decision, severity, the opacity slider, the downloads and the phone layout, and saves
screenshots under the test's tmp folder (their paths are printed).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from cxrmap.core.citation import PAPER
from cxrmap.serving.demo.app import create_app, serve_in_background
from tests.helpers.browser import launch_chromium, playwright_or_skip
from tests.helpers.checkpoints import CROSS_VALIDATED, write_tiny_checkpoint

pytestmark = pytest.mark.browser

sync_api = playwright_or_skip()

DROP_FILE = """([name, b64]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, { type: "image/png" }));
    const zone = document.getElementById("drop");
    const init = { dataTransfer: transfer, bubbles: true, cancelable: true };
    zone.dispatchEvent(new DragEvent("dragover", init));
    zone.dispatchEvent(new DragEvent("drop", init));
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    checkpoint = write_tiny_checkpoint(tmp_path_factory.mktemp("model") / "model.pt", metrics=CROSS_VALIDATED)
    with serve_in_background(create_app(checkpoint)) as url:
        yield url


@pytest.fixture(scope="module")
def phantom_png(tmp_path_factory) -> Path:
    from cxrmap.data.phantom.shapes import generate

    root = generate(
        tmp_path_factory.mktemp("phantom"), n_covid=1, n_control=0, size=192, seed=5, progress=False
    )
    return next((root / "QaTa-COV19-v1" / "Images").glob("*.png"))


def real_sample(request) -> Path | None:
    """A real COVID-19 sample radiograph, or None where the samples are absent."""
    try:
        root = request.getfixturevalue("samples_root")
    except pytest.skip.Exception:
        return None
    return sorted(root.glob("Infection Segmentation Data/Test/COVID-19/images/*.png"))[0]


def wait_for_result(page, name: str) -> None:
    page.wait_for_function(
        "(name) => document.getElementById('status').textContent.includes('Done')"
        " && document.getElementById('status').textContent.includes(name)",
        arg=name,
        timeout=60_000,
    )


def check_result(page, image_size: tuple[int, int]) -> dict:
    """The result panel shows the decision, both images at the image's size, and the severity."""
    assert page.locator("#result").is_visible()
    label = page.locator("#decision-label").inner_text()
    assert label in ("COVID-19 detected", "No COVID-19 detected")
    assert "threshold 0.50" in page.locator("#decision-score").inner_text()
    sizes = page.evaluate("""() => ['cxr', 'map-base', 'map-overlay'].map((id) => {
        const image = document.getElementById(id);
        return [image.complete, image.naturalWidth, image.naturalHeight];
    })""")
    assert sizes == [[True, *image_size]] * 3
    overall = page.locator("#severity-overall").inner_text()
    assert overall.endswith("of the lungs") or overall == "Not available."
    if overall != "Not available.":
        assert page.locator("#zones-body tr").count() == 4
    else:
        assert page.locator("#severity-note").is_visible()
    return {"label": label, "severity": overall}


def test_demo_page_in_chromium(server, phantom_png, request, tmp_path):
    from PIL import Image

    shots: list[Path] = []
    problems: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page = context.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
        page.on("response", lambda r: problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None)
        page.goto(server + "/")

        page.wait_for_function("() => document.querySelectorAll('#card-body tr').length > 3")
        card = page.locator("#card").inner_text()
        assert "U-Net + resnet18" in card and "64 × 64 px" in card
        assert page.locator("#phantom-warning").is_visible()
        assert "phantom" in page.locator("#phantom-warning").inner_text().lower()
        assert "research use only" in page.locator("#notice").inner_text().lower()
        assert "–" in page.locator("#card-tables").inner_text()  # the undefined (NaN) figure
        assert page.evaluate("() => document.getElementById('colorbar').naturalWidth") > 0

        sample = real_sample(request)
        if sample is not None:  # the file chooser
            page.set_input_files("#file", str(sample))
            wait_for_result(page, sample.name)
            shown = check_result(page, Image.open(sample).size)
            print(f"real sample {sample.name}: {shown}")
            shots.append(tmp_path / "desktop-real-sample.png")
            page.screenshot(path=str(shots[-1]), full_page=True)

        # drag and drop a phantom
        page.evaluate(DROP_FILE, [phantom_png.name, base64.b64encode(phantom_png.read_bytes()).decode()])
        wait_for_result(page, phantom_png.name)
        shown = check_result(page, Image.open(phantom_png).size)
        print(f"phantom {phantom_png.name}: {shown}")

        opacity = "() => getComputedStyle(document.getElementById('map-overlay')).opacity"
        assert page.evaluate(opacity) == "0.7"
        page.locator("#opacity").fill("25")
        assert page.evaluate(opacity) == "0.25"
        assert page.locator("#opacity-value").inner_text() == "25%"
        shots.append(tmp_path / "desktop-phantom-opacity25.png")
        page.screenshot(path=str(shots[-1]), full_page=True)

        with page.expect_download() as download_info:
            page.click("#download-json")
        saved = json.loads(Path(download_info.value.path()).read_text())
        assert saved["decision"] in ("covid", "no_covid") and saved["map_png"].startswith("data:image/png")
        with page.expect_download() as download_info:
            page.click("#download-map")
        assert download_info.value.suggested_filename.endswith(".png")
        assert Path(download_info.value.path()).read_bytes().startswith(b"\x89PNG")

        # a refusal is shown as a message, not a crash
        page.set_input_files(
            "#file", files=[{"name": "fake.png", "mimeType": "image/png", "buffer": b"GIF89a not a png"}]
        )
        page.wait_for_function("() => document.getElementById('status').textContent.startsWith('Refused')")
        assert "PNG, JPEG or DICOM" in page.locator("#status").inner_text()
        assert page.locator("#result").is_hidden()  # no stale result beside the refusal

        page.set_viewport_size({"width": 390, "height": 844})  # a phone in portrait
        page.set_input_files("#file", str(phantom_png))
        wait_for_result(page, phantom_png.name)
        check_result(page, Image.open(phantom_png).size)
        page.locator("#opacity").fill("100")
        assert page.evaluate(opacity) == "1"
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways on a phone ({width}px wide)"
        shots.append(tmp_path / "phone-phantom.png")
        page.screenshot(path=str(shots[-1]), full_page=True)
        browser.close()

    for shot in shots:
        print(f"screenshot: {shot}")
    # The refused upload answers 415 (Chromium logs it as a failed resource); anything else is a problem.
    assert [p for p in problems if "415" not in p] == []


RAW_KEYS = ("cross_validated", "segmentation_covid", "sensitivity_ci", "f1_ci", "specificity_ci", " · ")


def test_model_card_speaks_the_papers_terms(server):
    """Tables I and III with their intervals, the data and the threshold; the raw keys only in the JSON."""
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(server + "/")
        page.wait_for_function("() => document.querySelectorAll('#card-tables table').length == 2")
        section = page.locator("section.card")
        shown = section.inner_text()
        tables = page.locator("#card-tables table")
        table_i, table_iii = tables.nth(0).inner_text(), tables.nth(1).inner_text()
        assert "Table I" in table_i and "Table III" in table_iii
        for text, expected in (
            (table_i, ("F1", "Sensitivity", "Specificity", "83.20% ± 0.41%", "80.00% ± 0.50%")),
            (table_iii, ("Sensitivity", "Specificity", "F1", "94.96% ± 0.79%", "99.88% ± 0.02%", "–")),
        ):
            assert all(item in text for item in expected), text
        assert "synthetic phantoms (not patients)" in shown and "5 cross-validation folds" in shown
        assert "0.50 (stored with the model" in shown and "64 × 64 px" in shown
        assert not [key for key in RAW_KEYS if key in shown]
        assert not page.locator("#card-json").is_visible()
        page.locator("section.card details summary").click()
        assert "sensitivity_ci" in page.locator("#card-json").inner_text()  # the full JSON, one click away
        assert PAPER.doi in page.locator("footer").inner_text()
        browser.close()
