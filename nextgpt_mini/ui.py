"""Chapter 07: a chat window for notebooks (JupyterLab and Colab), built from ipywidgets.

    from nextgpt_mini.ui import ChatUI
    ChatUI(model)            # displays: a history, a text box, media to attach, a send button

The history renders the text of each turn, images inline, and audio and video players. Media can
be chosen from `data_samples/` or uploaded. `ChatUI.ask(text, media)` does what the button does,
from code (and from tests).
"""

from __future__ import annotations

import html
import tempfile
from pathlib import Path

from nextgpt_mini.constants import MODALITIES
from nextgpt_mini.course import data_samples_dir
from nextgpt_mini.generation import save_result
from nextgpt_mini.models.decoders import Decoders

SUFFIXES = {".png", ".jpg", ".jpeg", ".wav", ".flac", ".mp3", ".mp4", ".webm"}


def _sample_files(folder: Path | None) -> list[Path]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)


class ChatUI:
    def __init__(self, model, decoders=None, samples_dir: str | Path | None = None, seed: int = 0):
        import ipywidgets as w

        self.model, self.seed = model, seed
        self.decoders = decoders or Decoders(model.profile)
        self.history: list[dict] | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="nextgpt-chat-"))
        folder = Path(samples_dir) if samples_dir else data_samples_dir()
        self.text = w.Text(placeholder="Ask, or ask for an image, a video or a sound", layout=w.Layout(width="50%"))
        self.choose = w.Dropdown(options=[("no media", "")] + [(str(p.relative_to(folder)), str(p)) for p in _sample_files(folder)],
                                 description="attach")
        self.upload = w.FileUpload(accept=",".join(sorted(SUFFIXES)), multiple=False, description="upload")
        self.send = w.Button(description="Send", button_style="primary")
        self.new = w.Button(description="New chat")
        self.status = w.HTML()
        self.log = w.VBox([])
        self.send.on_click(lambda _: self._send())
        self.new.on_click(lambda _: self.reset())
        self.widget = w.VBox([self.log, w.HBox([self.text, self.send, self.new]), w.HBox([self.choose, self.upload]), self.status])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def reset(self) -> None:
        self.history = None
        self.log.children = ()

    def _attached(self) -> list[str]:
        files = [self.choose.value] if self.choose.value else []
        for item in self.upload.value:  # ipywidgets 8: a tuple of {"name", "content", ...}
            path = self._tmp / Path(item["name"]).name
            path.write_bytes(bytes(item["content"]))
            files.append(str(path))
        return files

    def _send(self) -> None:
        text = self.text.value.strip()
        if not text:
            return
        try:
            self.ask(text, self._attached())
        except Exception as err:  # noqa: BLE001 - shown in the window; a notebook must not die on a bad file
            self.status.value = f"<span style='color:#b00'>{html.escape(str(err))}</span>"
            return
        self.text.value = ""
        self.choose.value = ""
        self.upload.value = ()

    def ask(self, text: str, media: list[str] | None = None):
        """Send one message (with media file paths); returns the GenerationResult."""
        self.status.value = "thinking..."
        result = self.model.generate(text, media or None, history=self.history, decoders=self.decoders, seed=self.seed)
        self.history = result.history
        self.log.children = (*self.log.children, self._user_row(text, media or []), self._model_row(result))
        self.status.value = ""
        return result

    # ---------------------------------------------------------------- rendering
    def _user_row(self, text: str, media: list[str]):
        import ipywidgets as w

        parts = [w.HTML(f"<b>you:</b> {html.escape(text)}")]
        parts += [self._media_widget(Path(p)) for p in media]
        return w.VBox(parts)

    def _model_row(self, result):
        import ipywidgets as w

        paths = save_result(result, self._tmp, self.decoders, stem=f"turn{len(self.log.children) // 2}")
        parts = [w.HTML(f"<b>model:</b> {html.escape(result.text)}")]
        parts += [self._media_widget(p) for m in MODALITIES for p in paths[m]]
        return w.VBox(parts)

    @staticmethod
    def _media_widget(path: Path):
        import ipywidgets as w

        data = path.read_bytes()
        suffix = path.suffix.lower()
        if suffix in (".png", ".jpg", ".jpeg"):
            return w.Image(value=data, format=suffix.lstrip(".").replace("jpg", "jpeg"), width=128)
        if suffix in (".wav", ".flac", ".mp3"):
            return w.Audio(value=data, format=suffix.lstrip("."), autoplay=False)
        return w.Video(value=data, format=suffix.lstrip("."), width=128, autoplay=False, loop=True)
