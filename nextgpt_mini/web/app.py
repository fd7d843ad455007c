"""Chapter 07: `nextgpt-mini serve`, the web page: a gradio chat over one `WebChat`.

    nextgpt-mini serve                       # package:tiny_system, http://127.0.0.1:7860, offline
    nextgpt-mini serve --checkpoint DIR      # any save_pretrained / demo / train folder
    nextgpt-mini serve --share               # a public gradio.live link (Colab), only when asked

The page: the chat (text, images, video and sound players inline), a box that takes text and
attached files (upload, microphone), a camera snapshot, examples of all six directions, a panel
saying what the last turn did, and "New chat". One model serves every visitor: requests queue
and run one at a time (`CONCURRENCY`); each browser session keeps its own history in a gr.State.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path

from nextgpt_mini.models.nextgpt import load_system
from nextgpt_mini.tiny.demo import save_toy_media
from nextgpt_mini.web.chat import ChatState, WebChat

CONCURRENCY = 1  # one shared model: requests wait in the queue, not in parallel forward passes
QUEUE_SIZE = 64  # requests waiting beyond this are refused with gradio's "queue full"


def example_media(folder: Path) -> dict[str, Path]:
    """The demo's toy image, video and sound (`tiny.demo.save_toy_media`), for the examples."""
    folder.mkdir(parents=True, exist_ok=True)
    save_toy_media(folder)
    return {"image": folder / "image.png", "video": folder / "video.mp4", "audio": folder / "audio.wav"}


def examples(media: dict[str, Path]) -> list[dict]:
    """One request per direction, worded as the tiny system understands (MultimodalTextbox values)."""
    return [
        {"text": "Show me a big red circle on the left.", "files": []},
        {"text": "Make a video of a blue square moving up slowly.", "files": []},
        {"text": "Play a low steady tone over white noise.", "files": []},
        {"text": "What is in this picture?", "files": [str(media["image"])]},
        {"text": "What happens in this video?", "files": [str(media["video"])]},
        {"text": "What do you hear?", "files": [str(media["audio"])]},
        {"text": "What sound would this make?", "files": [str(media["image"])]},
    ]


def build_app(chat: WebChat):
    """The gradio Blocks of the page (not launched)."""
    import gradio as gr

    media = example_media(chat.out / "examples")
    chat.upload_roots = [*chat.upload_roots, chat.out / "examples"]
    with gr.Blocks(title="nextgpt-mini", delete_cache=(600, int(chat.keep_seconds))) as demo:
        gr.Markdown(f"## nextgpt-mini: any-to-any chat\nProfile **{chat.model.profile.name}**. Ask in words, attach "
                    "an image, a sound or a video, or ask for one. Requests are answered one at a time.")
        state = gr.State(ChatState())
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="chat", height=600, elem_id="chat", buttons=["copy"])
                # no file_types: gradio would refuse other files with a pop-up; `check_upload` answers in the chat
                box = gr.MultimodalTextbox(placeholder="Ask, or ask for an image, a video or a sound",
                                           file_count="multiple", sources=["upload", "microphone"], elem_id="box",
                                           show_label=False)
                new = gr.Button("New chat", elem_id="new")
            with gr.Column(scale=1):
                panel = gr.Markdown("What the last turn did appears here.", elem_id="panel")
                with gr.Accordion("Camera snapshot (attached to the next message)", open=False):
                    camera = gr.Image(sources=["webcam"], type="filepath", label="camera", elem_id="camera")
        gr.Examples(examples=examples(media), inputs=[box], label="Examples: text to image, video, sound; "
                    "image, video, sound to text; image to sound")

        def submit(message, snapshot, session, progress=gr.Progress()):  # noqa: B008 - gradio's way to ask for a progress bar
            if snapshot:
                message = {"text": (message or {}).get("text", ""), "files": [*(message or {}).get("files", []), snapshot]}
            session, said = chat.respond(message, session, report=lambda f, d: progress(f, desc=d))
            return session.messages, session, said, gr.MultimodalTextbox(value=None), None

        box.submit(submit, [box, camera, state], [chatbot, state, panel, box, camera], api_name="chat",
                   concurrency_limit=CONCURRENCY)
        new.click(lambda: ([], ChatState(), "New chat started."), None, [chatbot, state, panel], api_name="new")
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY)
    return demo


# the tiny decoders draw 32-64 px: shown larger, with square pixels, they can be read from the back of a room
CSS = "#chat img { min-width: 160px; object-fit: contain !important; image-rendering: pixelated; } #chat video { min-width: 192px; }"


def theme():
    """Gradio's default look with the system's fonts: the default fetches Google Fonts, which an
    offline room (or CI) cannot reach."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def serve(checkpoint: str | None = "package:tiny_system", profile=None, host: str = "127.0.0.1", port: int = 7860,
          share: bool = False, max_upload_mb: float = 20.0, out_dir: str | None = None, seed: int = 0,
          block: bool = True):
    """Load the system, build the page and launch it; returns the running Blocks when `block` is False."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a classroom
    chat = WebChat(load_system(checkpoint, profile), out_dir=out_dir, max_upload_mb=max_upload_mb, seed=seed)
    # uploads land in a folder of this server's own, so checks and cleanup know exactly where they are
    uploads = chat.out / "uploads"
    os.environ["GRADIO_TEMP_DIR"] = str(uploads)
    chat.upload_roots = [uploads]
    atexit.register(chat.close)
    for m in ("image", "video", "audio"):
        _ = chat.decoders[m].pipe  # load the decoders now, so the first visitor does not wait for it
    demo = build_app(chat)
    demo.launch(server_name=host, server_port=port, share=share, allowed_paths=[str(chat.out)],
                max_file_size=f"{int(max_upload_mb * 5)}mb", theme=theme(), css=CSS, ssr_mode=False, quiet=True,
                show_error=False, prevent_thread_lock=not block, footer_links=[])
    return demo
