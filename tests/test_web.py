"""The web demo's checks and conversation logic (`nextgpt_mini.web`), without a server or browser:
what uploads are refused and why, what a turn puts in the chat and the panel, and that sessions
do not share anything but the model. tests/test_web_server.py drives the real page."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pytest
from PIL import Image

from nextgpt_mini.files import save_audio, save_image, save_video
from nextgpt_mini.web.chat import ChatState, WebChat
from nextgpt_mini.web.uploads import UploadRejected, check_upload, sniff


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uploads")
    picture = np.zeros((64, 64, 3), np.uint8)
    picture[10:30, 5:25] = (220, 30, 30)
    paths = {
        "png": save_image(picture, folder / "red.png"),
        "wav": save_audio(np.sin(np.linspace(0, 900, 16000)).astype(np.float32) * 0.3, folder / "tone.wav", 16000),
        "mp4": save_video(np.repeat(picture[None], 8, 0), folder / "still.mp4", fps=8),
    }
    Image.fromarray(picture).save(folder / "red.jpg")
    paths["jpg"] = folder / "red.jpg"
    return folder, paths


def test_sniff_reads_each_kind_by_its_bytes_not_its_name(media):
    _, paths = media
    kinds = {k: sniff(p.read_bytes()[:16]) for k, p in paths.items()}
    assert kinds == {"png": ("image", "PNG"), "wav": ("audio", "WAV"), "mp4": ("video", "MP4/MOV"), "jpg": ("image", "JPEG")}
    assert sniff(b"hello, this is text") is None
    assert sniff(b"") is None


def test_check_upload_takes_real_media_from_the_upload_folder(media):
    folder, paths = media
    assert [check_upload(paths[k], [folder], 10**7) for k in ("png", "wav", "mp4", "jpg")] == ["image", "audio", "video", "image"]


def test_check_upload_refusals_name_the_file_and_say_why(media, tmp_path):
    folder, paths = media
    outside = tmp_path / "secret.png"
    outside.write_bytes(paths["png"].read_bytes())
    with pytest.raises(UploadRejected, match=r"secret\.png: refused, it was not uploaded through this page"):
        check_upload(outside, [folder], 10**7)
    # a link inside the folder to a file outside it, and '..' written into the path, are outside
    link = folder / "link.png"
    link.symlink_to(outside)
    with pytest.raises(UploadRejected, match="not uploaded through this page"):
        check_upload(link, [folder], 10**7)
    with pytest.raises(UploadRejected, match="not uploaded through this page"):
        check_upload(f"{folder}/../{tmp_path.name}/secret.png", [folder], 10**7)
    with pytest.raises(UploadRejected, match=r"red\.png: 0\.0 MB is over this demo's limit of 0 MB"):
        check_upload(paths["png"], [folder], 10)
    (folder / "empty.wav").write_bytes(b"")
    with pytest.raises(UploadRejected, match=r"empty\.wav: the file is empty"):
        check_upload(folder / "empty.wav", [folder], 10**7)
    (folder / "notes.txt").write_text("not media")
    with pytest.raises(UploadRejected, match=r"notes\.txt: not a file this demo reads; attach images"):
        check_upload(folder / "notes.txt", [folder], 10**7)
    (folder / "sound.png").write_bytes(paths["wav"].read_bytes())
    with pytest.raises(UploadRejected, match=r"sound\.png: its name says an image but it holds WAV data"):
        check_upload(folder / "sound.png", [folder], 10**7)
    with pytest.raises(UploadRejected, match=r"gone\.png: no such uploaded file"):
        check_upload(folder / "gone.png", [folder], 10**7)


@pytest.fixture(scope="module")
def chat(tmp_path_factory, media):
    from nextgpt_mini.models.nextgpt import NextGPT

    folder, _ = media
    service = WebChat(NextGPT.from_pretrained("package:tiny_system"), upload_roots=[folder],
                      out_dir=tmp_path_factory.mktemp("served"))
    yield service
    service.close()


def test_a_picture_request_puts_text_and_the_image_file_in_the_chat_and_the_tokens_in_the_panel(chat):
    state, panel = chat.respond({"text": "Show me a big red circle on the left.", "files": []})
    user, reply = state.messages
    assert user == {"role": "user", "content": ["Show me a big red circle on the left."]}
    text, made = reply["content"]
    assert "circle" in text and made["path"].endswith(".png")
    assert os.path.dirname(made["path"]) == str(chat.out / state.session)  # the session's own folder
    assert Image.open(made["path"]).size[0] > 0
    assert "`[IMG0][IMG1][IMG2][IMG3]`" in panel and "image decoder: " in panel and " steps" in panel
    assert state.turn == 1 and state.history[-1]["role"] == "assistant"


def test_an_uploaded_picture_is_read_and_shown_back(chat, media):
    _, paths = media
    state, panel = chat.respond({"text": "What is in this picture?", "files": [str(paths["png"])]})
    assert state.messages[0]["content"] == ["What is in this picture?", {"path": str(paths["png"])}]
    assert "red" in state.messages[1]["content"][0]
    assert "inputs: image" in panel and "none (a text answer)" in panel


def test_bad_files_become_chat_messages_and_the_model_is_not_run(chat, media, monkeypatch):
    folder, paths = media
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 20)
    state, panel = chat.respond({"text": "What is this?", "files": [str(folder / "broken.png")]})
    reply = state.messages[-1]["content"][0]
    assert reply.startswith("I could not read that file. broken.png: ") and str(folder) not in reply
    assert panel == "**File not readable**" and state.history is None  # nothing entered the conversation
    assert state.messages[0]["content"] == ["What is this?", "broken.png"]  # its name, not a broken preview

    def must_not_run(*args, **kwargs):
        raise AssertionError("the model ran on a refused upload")

    monkeypatch.setattr(chat.model, "generate", must_not_run)
    (folder / "notes.txt").write_text("words")
    state, panel = chat.respond({"text": "Read this", "files": [str(folder / "notes.txt")]})
    assert state.messages[-1]["content"] == ["I could not take that file. notes.txt: not a file this demo reads; attach "
                                             "images (PNG, JPEG, GIF, BMP, WebP, TIFF), sounds (WAV, FLAC, OGG, MP3, "
                                             "M4A) or videos (MP4, MOV, AVI, MKV, WebM)"]
    assert panel.startswith("**Upload refused**")
    state, _ = chat.respond({"text": "x", "files": ["/etc/hostname"]})
    assert "hostname: refused, it was not uploaded through this page" in state.messages[-1]["content"][0]


def test_a_server_failure_is_one_line_in_the_chat_and_a_traceback_in_the_log(chat, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (pretend)")

    monkeypatch.setattr(chat.model, "generate", broken)
    with caplog.at_level(logging.ERROR, logger="nextgpt_mini.web"):
        state, panel = chat.respond({"text": "Show me a red circle.", "files": []})
    assert "Something went wrong on the server" in state.messages[-1]["content"][0]
    assert "CUDA" not in state.messages[-1]["content"][0] and "Server error" in panel
    assert "CUDA out of memory (pretend)" in caplog.text and "Traceback" in caplog.text


def test_sessions_keep_their_own_history(chat, media):
    _, paths = media
    a, _ = chat.respond({"text": "What is in this picture?", "files": [str(paths["png"])]})
    b, _ = chat.respond({"text": "Play a low steady tone over white noise.", "files": []})
    a2, _ = chat.respond("Describe it again.", a)
    assert len(a2.messages) == 4 and len(b.messages) == 2 and len(a.messages) == 2  # a's old state is untouched
    assert a2.session == a.session != b.session
    assert [t["text"] for t in a2.history if t["role"] == "user"] == ["What is in this picture?", "Describe it again."]
    assert [t["text"] for t in b.history if t["role"] == "user"] == ["Play a low steady tone over white noise."]
    empty, panel = chat.respond({"text": "  ", "files": []}, a2)
    assert empty.messages == a2.messages and "Type a message" in panel


def test_old_session_folders_are_swept(chat):
    old = chat.out / "0ld5e55i0n"
    old.mkdir()
    (old / "turn0_image0.png").write_bytes(b"x")
    stale = time.time() - chat.keep_seconds - 10
    os.utime(old, (stale, stale))
    chat.respond({"text": "What do you hear?", "files": []}, ChatState())
    assert not old.exists()
