"""The page as people use it: Debian's chromium, driven by Playwright, on the app served on
loopback. Full-page screenshots of every check go to test-artifacts/browser/; with
SCREENSHOT_DIR set (`make screenshots`) the desktop and phone results also become the README's.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright import sync_api

from pipeline.embedders import LocalEmbedder
from pipeline.store import Neighbour
from tests.serving import demo_runtime, served

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists():  # CI installs it; say so loudly rather than skip silently there
    pytest.fail(f"chromium not found at {CHROMIUM}: apt-get install chromium", pytrace=False)

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", REPO / "test-artifacts")) / "browser"
SCREENSHOT_DIR = os.environ.get("SCREENSHOT_DIR", "")
ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Nothing leaves the machine: every host name but loopback fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
GALLERY_LOADED = """n => {
  const imgs = [...document.querySelectorAll('#neighbours img')];
  return imgs.length === n && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


def loopback_only(route) -> None:
    host = re.match(r"^[a-z]+://([^/:]+)", route.request.url)
    if host and host.group(1) in ("127.0.0.1", "localhost"):
        route.continue_()
    else:  # e.g. the theme's web fonts: the page must work without them
        route.abort()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def offline(tmp_path_factory, model_dir) -> Iterator[str]:
    """The page with the real offline backends over a 42-image demo collection."""
    runtime = demo_runtime(tmp_path_factory.mktemp("browser"), model_dir)
    with served(runtime) as url:
        yield url


@pytest.fixture
def open_page(browser):
    contexts = []

    def open_(url: str, viewport: dict = DESKTOP):
        context = browser.new_context(viewport=viewport, device_scale_factor=1)
        context.route("**/*", loopback_only)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(url)
        page.wait_for_selector("#query-image input[type=file]", state="attached")
        return page

    yield open_
    for context in contexts:
        context.close()


def shot(page, name: str) -> Path:
    """A full-page screenshot into the artifacts folder."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def publish(path: Path, name: str) -> None:
    """With SCREENSHOT_DIR set, copy a screenshot there as a small palette PNG for the README."""
    if not SCREENSHOT_DIR:
        return
    out = Path(SCREENSHOT_DIR) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(path).convert("RGB")
    image.quantize(256, method=Image.Quantize.FASTOCTREE).save(out, optimize=True)
    assert out.stat().st_size < 300_000, f"{out} is {out.stat().st_size} bytes"


def demo_file(tmp_path: Path, index: int) -> Path:
    from ingest.demo import item

    demo = item(index)
    path = tmp_path / demo.name
    path.write_bytes(demo.image)
    return path


def upload(page, path: Path) -> None:
    page.locator("#query-image input[type=file]").set_input_files(str(path))
    page.wait_for_selector("#query-image img")


def caption_and_wait(page, k: int) -> None:
    page.get_by_role("button", name="Caption", exact=True).click()
    page.locator("#neighbours").scroll_into_view_if_needed()  # thumbnails load lazily
    page.wait_for_function(GALLERY_LOADED, arg=k)
    page.wait_for_function(
        "() => ['rag-caption', 'classic-caption'].every("
        "id => document.querySelector(`#${id} textarea`).value.length > 0)"
    )
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('generate')")


def text(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} textarea").input_value()


def box(page, selector: str) -> dict:
    return page.locator(selector).bounding_box()


def test_upload_caption_shows_neighbours_both_captions_status_and_notice(
    offline, open_page, tmp_path
):
    page = open_page(offline)
    upload(page, demo_file(tmp_path, 100_002))  # a held-out chest X-ray
    caption_and_wait(page, 5)

    listing = page.locator("#neighbour-captions li").all_inner_texts()
    assert len(listing) == 5
    assert all(re.match(r"^\d{1,3}% \S", row) for row in listing), listing
    # The offline RAG caption is the consensus of the neighbours: one of their captions.
    rag = text(page, "rag-caption")
    assert any(rag in row for row in listing)
    assert "chest" in rag.lower()
    assert "CAPTIONER=claude" in text(page, "classic-caption")
    for label in page.locator("#neighbours .caption-label").all_inner_texts():
        assert re.match(r"^\d{1,3}% · ", label)
    status = page.locator("#status").inner_text()
    assert "(42 images)" in status and "extractive" in status and "synthetic" in status
    assert re.search(r"search \d+ ms", status)
    notice = page.locator("#notice").inner_text()
    assert "Not a diagnosis" in notice
    assert page.locator("#rag-caption button[aria-label=Copy]").is_visible()
    assert page.locator("#classic-caption button[aria-label=Copy]").is_visible()
    # At a glance: the input on the left, the captions and neighbours on the right.
    image, rag_box, gallery = (
        box(page, "#query-image"),
        box(page, "#rag-caption"),
        box(page, "#neighbours"),
    )
    assert rag_box["x"] > image["x"] + image["width"] - 1
    assert abs(rag_box["y"] - image["y"]) < 40
    assert gallery["x"] >= rag_box["x"] - 1 and gallery["y"] > rag_box["y"]
    publish(shot(page, "desktop-result"), "screenshot-desktop.png")


def test_phone_viewport_stacks_and_keeps_both_captions_readable(offline, open_page, tmp_path):
    page = open_page(offline, PHONE)
    upload(page, demo_file(tmp_path, 100_002))
    caption_and_wait(page, 5)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    button, rag, classic = (
        box(page, "#caption-button"),
        box(page, "#rag-caption textarea"),
        box(page, "#classic-caption textarea"),
    )
    assert rag["y"] > button["y"] + button["height"]  # stacked: results below the controls
    assert classic["y"] >= rag["y"] + rag["height"]  # the two captions one above the other
    for area in (rag, classic):
        assert area["width"] >= 0.75 * PHONE["width"]  # full width, not squeezed side by side
    # Every neighbour's full caption is in the page text, no hover needed.
    assert page.locator("#neighbour-captions li").count() == 5
    publish(shot(page, "phone-result"), "screenshot-phone.png")


def test_bad_file_gets_a_sentence_and_the_page_keeps_working(offline, open_page, tmp_path):
    page = open_page(offline)
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"just some text, not pixels")
    page.locator("#query-image input[type=file]").set_input_files(str(bad))
    page.get_by_role("button", name="Caption", exact=True).click()
    toast = page.locator(".toast-body").filter(has_text="not an image")
    toast.wait_for()
    message = toast.inner_text()
    assert "Traceback" not in message
    shot(page, "bad-file")
    # The page still answers the next good upload.
    page.locator("#query-image button[aria-label='Remove Image']").click()
    upload(page, demo_file(tmp_path, 100_000))
    caption_and_wait(page, 5)


def test_example_fills_the_input_and_gets_captioned(offline, open_page):
    page = open_page(offline)
    example = page.get_by_role("button", name="Example image: synthetic chest x ray")
    example.click()
    page.wait_for_selector("#query-image img")
    caption_and_wait(page, 5)
    assert "chest" in text(page, "rag-caption").lower()
    shot(page, "example")


def test_top_k_change_is_followed_by_the_gallery(offline, open_page, tmp_path):
    page = open_page(offline)
    upload(page, demo_file(tmp_path, 100_001))
    number = page.get_by_label("number input for Neighbours to retrieve (top-k)")
    for k in (3, 8):
        number.fill(str(k))
        number.press("Enter")
        # By keyboard: focus the button and press Enter, as a keyboard user would.
        page.get_by_role("button", name="Caption", exact=True).focus()
        page.keyboard.press("Enter")
        page.locator("#neighbours").scroll_into_view_if_needed()
        page.wait_for_function(GALLERY_LOADED, arg=k)
        page.wait_for_function(
            f"() => document.querySelectorAll('#neighbour-captions li').length === {k}"
        )
        shot(page, f"top-k-{k}")


def test_inputs_have_names_for_screen_readers(offline, open_page):
    page = open_page(offline)
    expect = sync_api.expect  # waits: the names are given once the components render
    expect(page.get_by_label("Upload a medical image")).to_have_count(1)
    expect(page.get_by_role("textbox", name=re.compile("^RAG caption"))).to_have_count(1)
    expect(page.get_by_role("textbox", name=re.compile("^Classic caption"))).to_have_count(1)
    expect(page.get_by_role("slider", name=re.compile("Neighbours to retrieve"))).to_have_count(1)
    expect(page.get_by_role("button", name=re.compile("^Example image: "))).to_have_count(7)
    expect(page.locator("#status")).to_have_attribute("aria-live", "polite")


class GatedCaptioner:
    """A real Captioner that streams word by word and holds at half-way until released, so a
    test can look at a caption that has started but not finished."""

    name = "gated-stream"
    classic_unavailable = None
    RAG = "Synthetic stream test: the first half arrives now and the second half after release."
    CLASSIC = "Classic stream test: also written word by word, and held at the same place."

    def __init__(self) -> None:
        self.halfway = threading.Barrier(3)  # both streams and the test
        self.release = threading.Event()

    def _stream(self, text: str) -> Iterator[str]:
        words = text.split(" ")
        half = len(words) // 2
        for i, word in enumerate(words):
            if i == half:
                self.halfway.wait(timeout=120)
                self.release.wait(timeout=120)
            yield word if i == 0 else " " + word
            time.sleep(0.02)

    def rag(self, image: Image.Image, neighbours: Sequence[Neighbour]) -> Iterator[str]:
        yield from self._stream(self.RAG)

    def classic(self, image: Image.Image) -> Iterator[str]:
        yield from self._stream(self.CLASSIC)


def test_captions_stream_without_moving_the_layout(tmp_path_factory, model_dir, open_page):
    captioner = GatedCaptioner()
    runtime = demo_runtime(tmp_path_factory.mktemp("stream"), model_dir, captioner=captioner)
    with served(runtime) as url:
        page = open_page(url)
        upload(page, demo_file(tmp_path_factory.mktemp("q"), 100_003))
        page.get_by_role("button", name="Caption", exact=True).click()
        captioner.halfway.wait(timeout=120)
        half = {"rag-caption": captioner.RAG, "classic-caption": captioner.CLASSIC}
        for elem_id, full in half.items():
            page.wait_for_function(
                "([id, full]) => { const v = document.querySelector(`#${id} textarea`).value;"
                " return v.length > 0 && v !== full && full.startsWith(v); }",
                arg=[elem_id, full],
            )
        partial = {elem_id: text(page, elem_id) for elem_id in half}
        before = {s: box(page, s) for s in ("#captions", "#rag-caption", "#classic-caption")}
        shot(page, "streaming-partial")
        captioner.release.set()
        for elem_id, full in half.items():
            page.wait_for_function(
                "([id, full]) => document.querySelector(`#${id} textarea`).value === full",
                arg=[elem_id, full],
            )
        after = {s: box(page, s) for s in before}
        shot(page, "streaming-done")
    for elem_id, full in half.items():
        assert 0 < len(partial[elem_id]) < len(full)
    assert before == after  # fixed-height boxes: streaming never moves the page


class GatedEmbedder(LocalEmbedder):
    """The real local embedder, held after the demo build's first batch until released."""

    def __init__(self, model_dir: Path) -> None:
        super().__init__(model_dir)
        self.batches = 0
        self.release = threading.Event()

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        if threading.current_thread().name == "demo-ingest":
            self.batches += 1
            if self.batches == 2:
                self.release.wait(timeout=120)
        return super().embed(images)


def test_page_says_while_the_collection_is_being_built(tmp_path, model_dir, open_page):
    from pipeline.config import Settings
    from pipeline.runtime import Runtime

    (tmp_path / "models").symlink_to(model_dir)
    settings = Settings.from_mapping(
        {"MEDCAP_DATA_DIR": str(tmp_path), "DEMO_COUNT": "64", "EMBEDDER": "local"}
    )
    runtime = Runtime(settings)
    embedder = GatedEmbedder(settings.model_dir)
    runtime.embedder = embedder
    runtime.start()
    try:
        with served(runtime) as url:
            page = open_page(url)
            note = page.locator("#collection-note")
            note.wait_for()
            page.wait_for_function(
                "() => document.querySelector('#collection-note').innerText"
                ".includes('Building the synthetic demo collection: 32 of 64')"
            )
            shot(page, "collection-building")
            embedder.release.set()
            note.wait_for(state="hidden")  # the timer notices the end of the build
            page.wait_for_function(
                "() => document.querySelector('#status').innerText.includes('(64 images)')"
            )
            shot(page, "collection-built")
    finally:
        embedder.release.set()
        deadline = time.time() + 60
        while not runtime.demo.finished and time.time() < deadline:
            time.sleep(0.1)


def test_thumbs_and_comment_are_saved_without_the_image(tmp_path_factory, model_dir, open_page):
    import hashlib
    import json

    data = tmp_path_factory.mktemp("feedback")
    runtime = demo_runtime(data, model_dir)
    path = demo_file(data, 100_002)
    with served(runtime) as url:
        page = open_page(url)
        upload(page, path)
        caption_and_wait(page, 5)
        rag = text(page, "rag-caption")
        page.locator("#rag-comment input, #rag-comment textarea").fill("Matches the film well")
        page.locator("#rag-up").click()
        page.wait_for_function("() => document.body.innerText.includes('rating was saved')")
        page.locator("#classic-down").click()
        page.wait_for_function("() => document.body.innerText.split('rating was saved').length > 2")
        shot(page, "feedback")
    lines = (data / "feedback.jsonl").read_text().splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["panel"] == "rag" and first["rating"] == "up" and first["caption"] == rag
    assert first["comment"] == "Matches the film well"
    assert first["image_id"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert first["backends"]["captioner"] == "extractive"
    assert second["panel"] == "classic" and second["rating"] == "down"
    raw = (data / "feedback.jsonl").read_bytes()
    assert len(raw) < 2000 and b"\x89PNG" not in raw  # no image bytes, only text
