"""The Gradio page: drop a medical image, see its nearest neighbours and two captions.

Thin on purpose: layout and event wiring only; everything else lives in `pipeline/`.
"""

from __future__ import annotations

import argparse
import html
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr

from pipeline import present
from pipeline.config import Settings
from pipeline.errors import BackendError, InputError
from pipeline.images import content_id
from pipeline.runtime import Runtime
from sharelink import open_share_link

log = logging.getLogger("app")

STATIC = Path(__file__).resolve().parent / "static"
CSS = (STATIC / "page.css").read_text(encoding="utf-8")
JS = (STATIC / "page.js").read_text(encoding="utf-8")  # screen-reader names Gradio lacks


def raw_path(payload) -> str | None:
    """Hand the uploaded file over untouched.

    Gradio's own image preprocessing opens the file with Pillow and fails with a generic error on
    anything Pillow cannot read; our decoder gives the user a sentence instead (and reads DICOM).
    Set on the instance: a gr.Image subclass would make Gradio write a .pyi beside this file.
    """
    return None if payload is None else payload.path


def examples(settings: Settings, count: int = 7) -> list[str]:
    """Held-out demo images (not in the collection) written once to the data directory."""
    from ingest.demo import MODALITIES, item

    folder = settings.data_dir / "examples"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(min(count, len(MODALITIES))):
        demo = item(100_000 + i)  # far past any demo count, so never a neighbour of itself
        path = folder / demo.name
        if not path.exists():
            path.write_bytes(demo.image)
        paths.append(str(path))
    return paths


def caption_panel(panel: str, label: str) -> tuple[gr.Textbox, tuple]:
    """A caption box with a copy button, and its feedback row beneath."""
    with gr.Column(min_width=260):
        # max_lines == lines: a fixed height, so streaming never moves the page.
        box = gr.Textbox(
            label=label,
            lines=5,
            max_lines=5,
            interactive=False,
            buttons=["copy"],
            elem_id=f"{panel}-caption",
        )
        return box, feedback_row(panel)


def feedback_row(panel: str) -> tuple[gr.Button, gr.Button, gr.Textbox]:
    """Thumbs up/down ("Good"/"Poor") and an optional comment under a caption."""
    with gr.Row(elem_classes="feedback"):
        # Words, not emoji: the thumbs must read on machines without an emoji font.
        up = gr.Button("Good", size="sm", min_width=60, elem_id=f"{panel}-up")
        down = gr.Button("Poor", size="sm", min_width=60, elem_id=f"{panel}-down")
        comment = gr.Textbox(
            placeholder="Comment (optional)",
            show_label=False,
            lines=1,
            max_lines=1,
            scale=4,
            container=False,
            elem_id=f"{panel}-comment",
        )
    return up, down, comment


def build(runtime: Runtime) -> gr.Blocks:
    """Lay out the page and wire the Caption event to the pipeline."""
    # Neighbour thumbnails as files for the gallery; removed when the page object goes.
    thumbs = tempfile.TemporaryDirectory(prefix="medcap-thumbs-", ignore_cleanup_errors=True)

    def caption(image_path: str | None, k: float) -> Iterator[tuple]:
        if not image_path:
            raise gr.Error(
                "Add an image first: upload, paste or drag one in.", print_exception=False
            )
        data = Path(image_path).read_bytes()
        try:
            pipeline = runtime.pipeline()
            status = pipeline.status()
            image_id = content_id(data)
            for n, answer in enumerate(pipeline.run(data, int(k))):
                # Neighbours go out first and again with the final answer (API clients read
                # the last update); in between, streamed updates carry caption text only.
                whole = n == 0 or answer.done
                yield (
                    present.gallery(answer, Path(thumbs.name)) if whole else gr.skip(),
                    present.neighbour_list(answer) if whole else gr.skip(),
                    present.caption_text(answer.rag, answer.rag_note),
                    present.caption_text(answer.classic, answer.classic_note),
                    present.status_line(status, answer.timings, runtime.notes()),
                    image_id if whole else gr.skip(),
                )
        except InputError as exc:
            raise gr.Error(html.escape(exc.sentence), print_exception=False) from None
        except BackendError as exc:
            runtime.reset()  # the next request reconnects
            raise gr.Error(html.escape(exc.sentence), print_exception=False) from None

    def rate(panel: str, rating: str, caption_text: str, comment: str, image_id: str) -> str:
        if not image_id:
            raise gr.Error("Caption an image first, then rate its captions.", print_exception=False)
        try:
            runtime.record_feedback(image_id, panel, caption_text, rating, comment)
        except InputError as exc:
            raise gr.Error(html.escape(exc.sentence), print_exception=False) from None
        gr.Info("Thank you: your rating was saved.")
        return ""  # clears the comment box

    def refresh_status() -> str:
        status, problem = runtime.status()
        return present.status_line(status, {}, problem or runtime.notes())

    def while_building() -> tuple:
        # Polled by a timer while the demo collection fills, so the page shows the progress.
        building = not runtime.demo.finished
        note = runtime.notes() if building else ""
        return (
            refresh_status(),
            gr.Markdown(note, visible=bool(note)),
            gr.Timer(active=building),
        )

    # Uploads live only in Gradio's cache; sweep it hourly of anything older than an hour.
    with gr.Blocks(title="Medical Image Captioning with RAG", delete_cache=(3600, 3600)) as page:
        gr.Markdown(
            "# Medical Image Captioning with RAG\n"
            "Drop a medical image: the page finds the most similar images in the collection "
            "and writes two captions, one with their captions as reference (RAG) and one "
            "without (classic)."
        )
        gr.Markdown(f"**Not a diagnosis.** {present.NOTICE}", elem_id="notice")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                image = gr.Image(
                    label="Medical image (PNG, JPEG, WebP, TIFF, BMP, GIF or DICOM)",
                    type="filepath",
                    sources=["upload", "clipboard"],
                    height=300,
                    elem_id="query-image",
                )
                image.preprocess = raw_path
                gr.Examples(
                    examples=examples(runtime.settings),
                    inputs=image,
                    label="Examples (synthetic, held out of the collection)",
                    elem_id="examples",
                )
                top_k = gr.Slider(
                    1,
                    10,
                    value=runtime.settings.top_k,
                    step=1,
                    label="Neighbours to retrieve (top-k)",
                    elem_id="top-k",
                )
                run = gr.Button("Caption", variant="primary", elem_id="caption-button")
                building = not runtime.demo.finished
                note = gr.Markdown(
                    runtime.notes() if building else "",
                    visible=building,
                    elem_id="collection-note",
                )
            with gr.Column(scale=3, min_width=300):
                with gr.Row(elem_id="captions"):
                    rag, rag_feedback = caption_panel(
                        "rag", "RAG caption (with the neighbours' captions as reference)"
                    )
                    classic, classic_feedback = caption_panel(
                        "classic", "Classic caption (the image alone)"
                    )
                gallery = gr.Gallery(
                    label="Most similar images in the collection",
                    columns=5,
                    height="auto",
                    object_fit="contain",
                    format="jpeg",
                    elem_id="neighbours",
                )
                neighbours = gr.Markdown(elem_id="neighbour-captions")
        status = gr.Markdown(elem_id="status")
        image_id = gr.State("")  # the upload's hash, for feedback; never the image itself
        run.click(
            caption,
            inputs=[image, top_k],
            outputs=[gallery, neighbours, rag, classic, status, image_id],
            api_name="caption",
        )
        for panel, box, (up, down, comment) in (
            ("rag", rag, rag_feedback),
            ("classic", classic, classic_feedback),
        ):
            for button, rating in ((up, "up"), (down, "down")):
                button.click(
                    partial(rate, panel, rating),
                    inputs=[box, comment, image_id],
                    outputs=comment,
                    api_visibility="private",
                )
        page.load(refresh_status, outputs=status, api_visibility="private")
        timer = gr.Timer(1.0, active=building)
        timer.tick(
            while_building,
            outputs=[status, note, timer],
            show_progress="hidden",
            api_visibility="private",
        )
    return page


def configure_queue(page: gr.Blocks, settings: Settings) -> gr.Blocks:
    """Bound how many requests run at once and how many may wait, from the settings."""
    return page.queue(
        default_concurrency_limit=settings.queue_concurrency, max_size=settings.queue_size
    )


def launch_options(settings: Settings) -> dict:
    """What every launch of the page passes to Gradio, besides the address."""
    return {
        "auth": settings.auth_pairs() or None,
        "max_file_size": f"{settings.max_upload_mb}mb",
        "css": CSS,
        "js": JS,
    }


def on_space(settings: Settings, env: Mapping[str, str] = os.environ) -> Settings:
    """On a Hugging Face Space, listen where Spaces expects (all interfaces) and never share."""
    if not env.get("SPACE_ID"):
        return settings
    return replace(settings, server_name=env.get("GRADIO_SERVER_NAME") or "0.0.0.0", share=False)


def parse_args(settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the captioning page.")
    parser.add_argument("--host", default=settings.server_name, help="address to listen on")
    parser.add_argument("--port", type=int, default=settings.server_port, help="port")
    parser.add_argument("--share", action="store_true", default=settings.share, help="public link")
    return parser.parse_args()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "faiss.loader", "milvus_lite"):  # their INFO lines are noise here
        logging.getLogger(chatty).setLevel(logging.WARNING)
    settings = on_space(Settings.from_env())
    args = parse_args(settings)
    settings = replace(settings, server_name=args.host, server_port=args.port, share=args.share)
    runtime = Runtime(settings)
    runtime.start(background=True)  # serve the page while the collection loads
    page = build(runtime)
    # Serve first, share second: a share service that is down must never delay the local page.
    configure_queue(page, settings).launch(
        server_name=settings.server_name,
        server_port=settings.server_port,
        share=False,
        prevent_thread_lock=True,
        quiet=True,
        **launch_options(settings),
    )
    print(f"* Running on local URL: {page.local_url}", flush=True)
    if settings.share:
        open_share_link(page)
    page.block_thread()


if __name__ == "__main__":
    main()
