"""A local Gradio web demo of an exported model: upload an image, see the overlay, the mask, the polyp
area and the inference time. Served by `python -m tune.best demo --model DIR`; uses `core.predict.Predictor`.

Offline by construction: analytics and Gradio's version check are off, no share link or share buttons, no
server-side rendering (which would start Node), and the theme uses system fonts (no font download).
It forgets: an upload is read from its file (refused from its header above the pixel limit, as every image
is: core/image_files.py), uploads over MAX_UPLOAD are refused, and Gradio's copies of uploads and results
are deleted after FORGET_AFTER_S and when the server stops. Errors name no server path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core import image_files
from core.predict import Predictor, overlay

# Read by gradio when it is imported and when a Blocks is made: the version check and analytics call home.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr

SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "sans-serif")
SYSTEM_MONO_FONTS = ("ui-monospace", "monospace")
LOCAL_BUTTONS: tuple[Literal["download", "share", "fullscreen"], ...] = ("download", "fullscreen")
MAX_UPLOAD = "20mb"
FORGET_AFTER_S = 600  # Gradio's cache of uploads and results: checked this often, files this old deleted


def segment(predictor: Predictor, image: str | np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """One uploaded image (its file, or RGB pixels) -> (overlay RGB, mask 0/255, a Markdown line of polyp
    area and time). A file that cannot be used is a gr.Error naming only the problem, not the server's path."""
    if image is None:
        return None, None, "Upload an image."
    if isinstance(image, str):
        try:
            image = image_files.to_rgb8(image_files.decode(Path(image)))
        except image_files.ImageFileError as err:
            raise gr.Error(f"This image cannot be used: {err}.") from None
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = np.ascontiguousarray(image[..., :3], dtype=np.uint8)  # drop an alpha channel
    prediction = predictor.predict([image])[0]
    height, width = image.shape[:2]
    text = (
        f"**Polyp area: {prediction.area_percent:.1f}%** of the image ({width}x{height} px) · "
        f"inference {prediction.seconds * 1000:.0f} ms ({predictor.runtime})"
    )
    return overlay(image, prediction.mask), prediction.mask.astype(np.uint8) * 255, text


def build_demo(predictor: Predictor) -> gr.Blocks:
    title = "Polyp segmentation demo"
    warning = (
        "\n\n**This model was trained on SYNTHETIC demo data**: its masks say nothing about real polyps."
        if predictor.synthetic
        else ""
    )
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(FORGET_AFTER_S, FORGET_AFTER_S)) as demo:
        gr.Markdown(
            f"# {title}\nModel `{predictor.describe()}`. Upload a colonoscopy image; the predicted "
            f"polyp region is tinted red and outlined.{warning}"
        )
        with gr.Row():
            # The file, not pixels Gradio decoded: a small file may declare a huge picture (read with a cap).
            image = gr.Image(label="image", type="filepath", sources=["upload", "clipboard"])
            # PNG, not Gradio's default WebP: a downloaded mask must stay exactly 0/255. No "share" button:
            # it posts to Hugging Face.
            shown = gr.Image(
                label="overlay", type="numpy", format="png", interactive=False, buttons=list(LOCAL_BUTTONS)
            )
            mask = gr.Image(
                label="mask", type="numpy", image_mode="L", format="png", interactive=False, buttons=list(LOCAL_BUTTONS)
            )
        summary = gr.Markdown()
        run = gr.Button("Segment", variant="primary")
        gr.on(
            triggers=[image.upload, run.click],
            fn=lambda img: segment(predictor, img),
            inputs=image,
            outputs=[shown, mask, summary],
            api_name="segment",
        )
    return demo


def launch(
    demo: gr.Blocks,
    host: str = "127.0.0.1",
    port: int | None = None,
    block: bool = True,
    auth: tuple[str, str] | None = None,
) -> tuple[Any, str, str]:
    """Serve on host:port (a free port from 7860 up when None), behind `auth` (user, password) when given;
    never a public share link. Returns what `gr.Blocks.launch` does: (app, local URL, share URL)."""
    theme = gr.themes.Default(font=list(SYSTEM_FONTS), font_mono=list(SYSTEM_MONO_FONTS))
    return demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        ssr_mode=False,
        prevent_thread_lock=not block,
        quiet=not block,
        show_error=True,
        theme=theme,
        max_file_size=MAX_UPLOAD,
        auth=auth,
    )
