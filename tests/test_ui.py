"""The notebook chat window: messages, media in and out, rendered as widgets."""

import ipywidgets as w

from nextgpt_mini.course import data_samples_dir
from nextgpt_mini.models.nextgpt import NextGPT
from nextgpt_mini.ui import ChatUI
from nextgpt_mini.utils import torch_threads


def test_chat_window_renders_turns_media_and_errors():
    ui = ChatUI(NextGPT.from_profile("tiny"))
    assert len(ui.choose.options) > 10  # data_samples offered as attachments
    image = data_samples_dir() / "images" / "image_00.png"
    with torch_threads(1):
        ui.ask("Describe this image.", [str(image)])
        assert len(ui.log.children) == 2
        user, model = ui.log.children
        assert isinstance(user.children[1], w.Image)  # the attached image, inline
        assert "model:" in model.children[0].value
        # the button path: text box + dropdown, then cleared; a bad upload is reported, not raised
        ui.text.value = "What do you hear?"
        ui.choose.value = str(data_samples_dir() / "audio" / "audio_00.wav")
        ui._send()
        assert len(ui.log.children) == 4 and ui.text.value == "" and ui.choose.value == ""
        assert isinstance(ui.log.children[2].children[1], w.Audio)
        ui.text.value = "And this?"
        ui.upload.value = ({"name": "notes.txt", "content": memoryview(b"hello"), "type": "text/plain", "size": 5,
                            "last_modified": __import__("datetime").datetime(2026, 1, 1)},)
        ui._send()
    assert "notes.txt" in ui.status.value and len(ui.log.children) == 4
    assert ui.history and ui.history[-1]["role"] == "assistant"
    ui.reset()
    assert ui.history is None and ui.log.children == ()
