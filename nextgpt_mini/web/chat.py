"""Chapter 07: the web demo's conversation, apart from gradio (so tests can drive it without a browser).

One `WebChat` holds the one model every browser session shares; each session carries its own
`ChatState` (what its page shows and what the model reads next turn). A turn:

1. each attached file is checked (`uploads.check_upload`): inside the upload folders, under the
   size limit, an image / sound / video by its bytes; a refusal becomes the reply, nothing runs;
2. under a lock (one request at a time uses the model), `NextGPT.generate` answers and the
   decoders make what the signal tokens asked for; the media are written under the session's
   own folder in the output folder;
3. the reply (text, then images, videos and sounds) is appended to the state, and the panel
   says what happened: the signal tokens the LLM wrote, runs it had to complete, each decoder's
   steps and time.

A failure a user can cause (a file the loaders cannot decode, a conversation longer than the
LLM's context) is a chat message; anything else is logged with its traceback on the server and
the chat gets one line, so a session never sees a traceback and the server keeps serving.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from nextgpt_mini.constants import MODALITIES
from nextgpt_mini.generation import save_result
from nextgpt_mini.models.decoders import Decoders
from nextgpt_mini.processing import MediaError
from nextgpt_mini.web.uploads import UploadRejected, check_upload

log = logging.getLogger("nextgpt_mini.web")

EMPTY_FILE_PROMPT = "Describe this."  # what the terminal chat asks when only files are sent, too


@dataclass
class ChatState:
    messages: list[dict] = field(default_factory=list)  # the page's chat, gradio's "messages" format
    history: list[dict] | None = None  # the conversation as the model reads it (GenerationResult.history)
    turn: int = 0
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:16])


class WebChat:
    """The shared model, the upload rules and the output folder of one `nextgpt-mini serve`."""

    def __init__(self, model, decoders=None, upload_roots: list | tuple = (), out_dir: str | Path | None = None,
                 max_upload_mb: float = 20.0, seed: int = 0, keep_seconds: float = 3600.0):
        self.model, self.seed = model, seed
        self.decoders = decoders or Decoders(model.profile)
        self.owns_out = out_dir is None
        self.out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="nextgpt-serve-"))
        self.out.mkdir(parents=True, exist_ok=True)
        self.upload_roots = [Path(r) for r in upload_roots]
        self.max_bytes = int(max_upload_mb * 1e6)
        self.keep_seconds = keep_seconds
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ one turn
    def respond(self, message: dict | str | None, state: ChatState | None = None, report=None) -> tuple[ChatState, str]:
        """One message ({"text": str, "files": [paths]} as gradio's MultimodalTextbox sends it, or
        a string) -> (the session's new state, the panel's Markdown). `report(fraction, text)`
        is told how far the turn has got (the page's progress bar)."""
        state = replace(state, messages=list(state.messages)) if state else ChatState()  # the old state stays as it was
        text, files = self._unpack(message)
        if not text and not files:
            return state, "Type a message, or attach an image, a sound or a video."
        self._sweep()
        user: list = [text] if text else []
        try:
            modalities = [check_upload(f, self.upload_roots, self.max_bytes) for f in files]
        except UploadRejected as err:
            state.messages += [self._message("user", user + [Path(f).name for f in files]),
                               self._message("assistant", [f"I could not take that file. {err}"])]
            return state, f"**Upload refused**: {err}"
        user += [{"path": str(f)} for f in files]
        state.messages.append(self._message("user", user))
        try:
            reply, panel = self._answer(text or EMPTY_FILE_PROMPT, files, modalities, state, report)
        except (MediaError, UploadRejected) as err:
            state.messages[-1] = self._message("user", ([text] if text else []) + [Path(f).name for f in files])
            reply, panel = [f"I could not read that file. {self._named(err, files)}"], "**File not readable**"
        except ValueError as err:  # e.g. a conversation longer than the LLM's context
            reply, panel = [f"{self._named(err, files)}"], "**Not answered**"
        except Exception:  # noqa: BLE001 - the server must keep serving; the traceback goes to its log
            log.exception("session %s: the turn failed", state.session)
            reply, panel = ["Something went wrong on the server while answering (it is in the server's log). "
                            "Try again, or start a new chat."], "**Server error** (see the server log)"
        state.messages.append(self._message("assistant", reply))
        return state, panel

    def _answer(self, text: str, files: list[str], modalities: list[str], state: ChatState, report) -> tuple[list, str]:
        if report:
            report(0.1, "the LLM is answering" + (f" about {len(files)} file(s)" if files else ""))
        folder = self.out / state.session
        with self.lock:
            started = time.perf_counter()
            result = self.model.generate(text, files or None, history=state.history, decoders=self.decoders, seed=self.seed)
            paths = save_result(result, folder, self.decoders, stem=f"turn{state.turn}")
            seconds = time.perf_counter() - started
        if report:
            report(1.0, "done")
        state.history, state.turn = result.history, state.turn + 1
        made = [str(p) for m in MODALITIES for p in paths[m]]
        reply = ([result.text] if result.text else []) + [{"path": p} for p in made]
        return reply or ["(no answer)"], self._panel(result, modalities, seconds)

    # ------------------------------------------------------------------ what the panel says
    def _panel(self, result, inputs: list[str], seconds: float) -> str:
        tokenizer, signal = self.model.tokenizer, self.model.signal
        fired = [i for i in result.token_ids if i in set(signal.all_ids())]
        tokens = "".join(tokenizer.convert_ids_to_tokens(fired)) or "none (a text answer)"
        lines = [f"**Last turn**: {seconds:.2f} s in all; the LLM (reply + teacher-forced pass) "
                 f"{result.seconds.get('llm', 0.0):.2f} s, {len(result.token_ids)} tokens",
                 f"- inputs: {', '.join(inputs) if inputs else 'text only'}",
                 f"- signal tokens the LLM wrote: `{tokens}`"]
        if result.completed:
            lines.append(f"- runs completed (the LLM stopped part-way): {', '.join(result.completed)}")
        for m in MODALITIES:
            if m in result.seconds:
                cfg = self.decoders[m].cfg
                lines.append(f"- {m} decoder: {cfg.steps} steps, guidance {cfg.guidance_scale:g}, "
                             f"{result.seconds[m]:.2f} s")
        return "\n".join(lines)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _unpack(message) -> tuple[str, list[str]]:
        if message is None:
            return "", []
        if isinstance(message, str):
            return message.strip(), []
        files = [f["path"] if isinstance(f, dict) else str(f) for f in (message.get("files") or [])]
        return (message.get("text") or "").strip(), files

    @staticmethod
    def _message(role: str, content: list) -> dict:
        return {"role": role, "content": content}

    @staticmethod
    def _named(err: Exception, files: list[str]) -> str:
        """The error's text with server paths replaced by the files' own names."""
        text = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
        for f in sorted(files, key=len, reverse=True):
            for form in (str(Path(f).resolve()), str(f)):
                text = text.replace(form, Path(f).name)
        return text

    def _sweep(self) -> None:
        """Delete sessions' output folders not written for `keep_seconds` (generated files do not pile up)."""
        cutoff = time.time() - self.keep_seconds
        for folder in self.out.iterdir():
            if folder.is_dir() and folder.name != "examples" and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        if self.owns_out:
            shutil.rmtree(self.out, ignore_errors=True)
