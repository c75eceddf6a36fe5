"""The Gradio page: drop a medical image, see its nearest neighbours and two captions.

Thin on purpose: layout and event wiring only; everything else lives in `pipeline/`.
"""

from __future__ import annotations

import argparse
import html
import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr

from pipeline import present
from pipeline.config import Settings
from pipeline.errors import BackendError, InputError
from pipeline.runtime import Runtime

log = logging.getLogger("app")

CSS = """
#captions textarea { font-size: 1.05rem; line-height: 1.45; }
#notice { border-left: 4px solid #d97706; padding: 0.4rem 0.8rem; }
"""


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


def build(runtime: Runtime) -> gr.Blocks:
    """Lay out the page and wire the Caption event to the pipeline."""

    def caption(image_path: str | None, k: float) -> Iterator[tuple]:
        if not image_path:
            raise gr.Error(
                "Add an image first: upload, paste or drag one in.", print_exception=False
            )
        data = Path(image_path).read_bytes()
        try:
            pipeline = runtime.pipeline()
            status = pipeline.status()
            for answer in pipeline.run(data, int(k)):
                yield (
                    present.gallery(answer),
                    present.neighbour_list(answer),
                    present.caption_text(answer.rag, answer.rag_note),
                    present.caption_text(answer.classic, answer.classic_note),
                    present.status_line(status, answer.timings, runtime.notes()),
                )
        except InputError as exc:
            raise gr.Error(html.escape(exc.sentence), print_exception=False) from None
        except BackendError as exc:
            runtime.reset()  # the next request reconnects
            raise gr.Error(html.escape(exc.sentence), print_exception=False) from None

    def refresh_status() -> str:
        status, problem = runtime.status()
        return present.status_line(status, {}, problem or runtime.notes())

    with gr.Blocks(title="Medical Image Captioning with RAG") as page:
        gr.Markdown(
            "# Medical Image Captioning with RAG\n"
            "Drop a medical image: the page finds the most similar images in the collection "
            "and writes two captions, one with their captions as reference (RAG) and one "
            "without (classic)."
        )
        gr.Markdown(f"**Not a diagnosis.** {present.NOTICE}", elem_id="notice")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=280):
                image = gr.Image(
                    label="Medical image (PNG, JPEG, WebP, TIFF, BMP, GIF or DICOM)",
                    type="filepath",
                    sources=["upload", "clipboard"],
                    height=320,
                    elem_id="query-image",
                )
                image.preprocess = raw_path
                top_k = gr.Slider(
                    1,
                    10,
                    value=runtime.settings.top_k,
                    step=1,
                    label="Neighbours to retrieve (top-k)",
                    elem_id="top-k",
                )
                run = gr.Button("Caption", variant="primary", elem_id="caption-button")
                gr.Examples(
                    examples=examples(runtime.settings),
                    inputs=image,
                    label="Examples (synthetic, held out of the collection)",
                )
            with gr.Column(scale=3, min_width=320):
                with gr.Row(elem_id="captions"):
                    rag = gr.Textbox(
                        label="RAG caption (with the neighbours' captions as reference)",
                        lines=4,
                        interactive=False,
                        buttons=["copy"],
                        elem_id="rag-caption",
                    )
                    classic = gr.Textbox(
                        label="Classic caption (the image alone)",
                        lines=4,
                        interactive=False,
                        buttons=["copy"],
                        elem_id="classic-caption",
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
        run.click(
            caption,
            inputs=[image, top_k],
            outputs=[gallery, neighbours, rag, classic, status],
            api_name="caption",
        )
        page.load(refresh_status, outputs=status, api_visibility="private")
    return page


def parse_args(settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the captioning page.")
    parser.add_argument("--host", default=settings.server_name, help="address to listen on")
    parser.add_argument("--port", type=int, default=settings.server_port, help="port")
    parser.add_argument("--share", action="store_true", default=settings.share, help="public link")
    return parser.parse_args()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    args = parse_args(settings)
    settings = replace(settings, server_name=args.host, server_port=args.port, share=args.share)
    runtime = Runtime(settings)
    runtime.start(background=True)  # serve the page while the collection loads
    page = build(runtime)
    page.queue(default_concurrency_limit=4).launch(
        server_name=settings.server_name,
        server_port=settings.server_port,
        share=settings.share,
        auth=settings.auth_pairs() or None,
        max_file_size=f"{settings.max_upload_mb}mb",
        css=CSS,
    )


if __name__ == "__main__":
    main()
