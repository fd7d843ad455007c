"""`nextgpt-mini serve` as people use it: started as a command on a free loopback port, driven by
a real headless browser (Debian's chromium through playwright) and by 20 concurrent API clients.

Needs chromium (`apt-get install chromium`; `.ci/run` installs it) or NEXTGPT_CHROMIUM pointing
at a Chromium binary. NEXTGPT_SCREENSHOT=path keeps the browser test's screenshot (the README's).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from nextgpt_mini.files import save_image, save_video
from nextgpt_mini.tiny import world as tw

SAMPLES = Path(__file__).resolve().parents[1] / "data_samples"
UPLOAD_LIMIT_MB = 1  # small, so an over-the-limit file is quick to make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A running `nextgpt-mini serve` (the shipped tiny system): (url, output folder, seconds to start)."""
    out, port = tmp_path_factory.mktemp("serve"), free_port()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nextgpt_mini.cli", "serve", "--port", str(port), "--out", str(out),
                             "--max-upload-mb", str(UPLOAD_LIMIT_MB)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    said = []
    while not any("open http" in line for line in said):
        try:
            said.append(lines.get(timeout=max(0.1, 60 - (time.perf_counter() - started))))
        except queue.Empty:
            proc.kill()
            pytest.fail(f"serve did not start within 60 s; it said: {''.join(said)}")
        assert proc.poll() is None, f"serve exited: {''.join(said)}"
    yield f"http://127.0.0.1:{port}", out, time.perf_counter() - started
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def ask(client, text: str, files=()):
    from gradio_client import handle_file

    chat, panel, *_ = client.predict({"text": text, "files": [handle_file(str(f)) for f in files]}, None, api_name="/chat")
    return chat, panel


def test_serve_starts_offline_fast_and_answers_a_picture_request_fast(server):
    from gradio_client import Client

    url, _, startup = server
    assert startup < 20, f"serve took {startup:.1f} s to start (the budget is 20 s on 2 cores)"
    client = Client(url, verbose=False)
    began = time.perf_counter()
    chat, panel = ask(client, "Show me a small blue square at the top.")
    took = time.perf_counter() - began
    assert took < 5, f"a text -> image answer took {took:.1f} s (the budget is 5 s)"
    assert [c["type"] for c in chat[-1]["content"]] == ["text", "file"] and chat[-1]["content"][1]["file"].endswith(".png")
    assert "[IMG0][IMG1][IMG2][IMG3]" in panel


def test_bad_uploads_get_chat_messages_and_the_server_keeps_serving(server, tmp_path):
    from gradio_client import Client

    url, out, _ = server
    client = Client(url, verbose=False)
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(300))
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "huge.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVE" + bytes(UPLOAD_LIMIT_MB * 10**6 + 10))
    expected = {"corrupt.png": "I could not read that file. corrupt.png: ",
                "notes.txt": "I could not take that file. notes.txt: not a file this demo reads",
                "huge.wav": f"I could not take that file. huge.wav: 1.0 MB is over this demo's limit of {UPLOAD_LIMIT_MB} MB"}
    for name, start in expected.items():
        chat, _ = ask(client, "What is this?", [tmp_path / name])
        assert chat[-1]["content"][0]["text"].startswith(start), (name, chat[-1])

    # a name that climbs out of the upload folder: gradio stores the bytes under the folder by the
    # last part of the name, and the chat answers about them
    picture = (SAMPLES / "images" / "image_00.png").read_bytes()
    escape = f"../../../../{out.name}-escaped.png"
    stored = httpx.post(f"{url}/gradio_api/upload", files={"files": (escape, picture, "image/png")}).json()[0]
    assert Path(stored).resolve().is_relative_to((out / "uploads").resolve())
    assert not (out.parent / f"{out.name}-escaped.png").exists()
    chat, _ = client.predict({"text": "What is in this picture?", "files": [{"path": stored, "meta": {"_type": "gradio.FileData"}}]},
                             None, api_name="/chat")[:2]
    assert "square" in chat[-1]["content"][0]["text"]

    # a server path sent by a client that never uploaded it is refused before the model runs
    event = httpx.post(f"{url}/gradio_api/call/chat",
                       json={"data": [{"text": "x", "files": [{"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}]},
                                      None]}).json()["event_id"]
    assert "event: error" in httpx.get(f"{url}/gradio_api/call/chat/{event}", timeout=30).text
    chat, _ = ask(client, "What do you hear?", [SAMPLES / "audio" / "audio_00.wav"])  # still serving
    assert chat[-1]["role"] == "assistant" and chat[-1]["content"][0]["text"]


def chromium() -> str:
    path = os.environ.get("NEXTGPT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("the browser test needs Chromium: `apt-get install chromium` (Debian), or set NEXTGPT_CHROMIUM "
                    "to a Chromium binary")
    return path


def test_a_person_in_a_browser_asks_for_a_picture_shows_one_and_sends_a_broken_file(server, tmp_path):
    from playwright.sync_api import sync_playwright

    url, _, _ = server
    caption = json.loads((SAMPLES / "images.json").read_text())[0]  # image_00.png: a big red square on the left
    colour, shape = caption["caption"].split()[2:4]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(url, wait_until="load")
        box = page.locator("#box textarea")
        box.wait_for(timeout=30000)

        def send(text: str, attach: Path | None = None) -> str:
            count = page.locator("#chat [data-testid=bot]").count()
            if attach:
                page.set_input_files("#box input[type=file]", str(attach))
                page.locator("#box img, #box [data-testid=file-preview], #box .thumbnail-item").first.wait_for(timeout=15000)
            box.fill(text)
            box.press("Enter")
            page.wait_for_function(f"document.querySelectorAll('#chat [data-testid=bot]').length > {count}", timeout=30000)
            return page.locator("#chat [data-testid=bot]").last.inner_text()

        send("Show me a big red circle on the left.")
        image = page.locator("#chat [data-testid=bot] img").last
        image.wait_for(timeout=30000)
        assert page.evaluate("(img) => img.complete && img.naturalWidth > 0", image.element_handle())
        answer = send("What is in this picture?", SAMPLES / "images" / caption["image_name"])
        assert colour in answer and shape in answer, answer
        page.wait_for_timeout(500)  # the uploaded picture's preview settles; then the chat from its start
        page.evaluate("() => { const log = document.querySelector('#chat [role=log]'); if (log) log.scrollTop = 0; }")
        page.screenshot(path=os.environ.get("NEXTGPT_SCREENSHOT") or str(tmp_path / "page.png"), full_page=True)
        answer = send("And this one?", tmp_path / "broken.png")
        assert "I could not read that file. broken.png" in answer, answer
        assert "signal tokens the LLM wrote" in page.locator("#panel").inner_text() or "File not readable" in \
            page.locator("#panel").inner_text()
        browser.close()


def test_twenty_clients_at_once_each_get_their_own_answers(server, tmp_path):
    """20 concurrent clients x 3 turns (their own picture, their own video, a picture request):
    every turn answered, each client's chat holds exactly its own turns, and every answer is the
    one the same conversation gets alone (computed here, one at a time, without the server)."""
    from gradio_client import Client

    from nextgpt_mini.models.nextgpt import NextGPT

    url, _, _ = server
    images = tw.sample_items("image", 20, seed=11, split="test")
    videos = tw.sample_items("video", 20, seed=12, split="test")
    conversations = []
    for k in range(20):
        picture = save_image(tw.render_image(images[k], 128), tmp_path / f"picture{k}.png")
        clip = save_video(tw.render_video(videos[k], 96, 2.0, 8), tmp_path / f"clip{k}.mp4", fps=8)
        conversations.append([("What is in this picture?", [picture]), ("What happens in this video?", [clip]),
                              (f"Show me a {images[(k + 5) % 20].caption[2:]}.", [])])

    model = NextGPT.from_pretrained("package:tiny_system")
    expected, made = [], []  # per client: the answers' texts; what the last answer generated
    for turns in conversations:
        history, said = None, []
        for text, files in turns:
            result = model.generate(text, [str(f) for f in files], history=history, decode=False)
            history = result.history
            said.append(result.text)
        expected.append(said)
        made.append(sorted(result.conditioning))

    latencies, failures, chats = [], [], {}

    def visitor(k: int) -> None:
        try:
            client = Client(url, verbose=False)
            for text, files in conversations[k]:
                began = time.perf_counter()
                chat, _ = ask(client, text, files)
                latencies.append(time.perf_counter() - began)
            chats[k] = chat
        except Exception as err:  # noqa: BLE001 - collected and reported below
            failures.append(f"client {k}: {err!r}")

    began = time.perf_counter()
    threads = [threading.Thread(target=visitor, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    wall = time.perf_counter() - began
    assert not failures and not any(t.is_alive() for t in threads), failures
    assert len(latencies) == 60
    for k, chat in chats.items():
        users = [m["content"][0]["text"] for m in chat if m["role"] == "user"]
        answers = [m["content"][0]["text"] for m in chat if m["role"] == "assistant"]
        assert users == [text for text, _ in conversations[k]], f"client {k} sees turns that are not its own"
        assert answers == expected[k], f"client {k}: {answers} != {expected[k]}"
        kinds = {".png": "image", ".mp4": "video", ".wav": "audio"}
        files = [kinds[Path(c["file"]).suffix] for c in chat[-1]["content"] if c["type"] == "file"]
        assert sorted(files) == made[k], f"client {k}: generated {files}, alone it generates {made[k]}"
    assert sum(m == ["image"] for m in made) >= 15  # most picture requests do get a picture
    q = statistics.quantiles(latencies, n=100)
    print(f"\nload: 20 clients x 3 turns in {wall:.1f} s, {sum(m == ['image'] for m in made)} of 20 picture requests drew one; latency p50 {q[49]:.2f} s, p90 {q[89]:.2f} s, "
          f"p99 {q[98]:.2f} s, max {max(latencies):.2f} s")
    assert httpx.get(url, timeout=10).status_code == 200  # the server is still up
