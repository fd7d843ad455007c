"""Chapter 07: the web demo, `nextgpt-mini serve` (optional extra `web`: gradio).

`uploads` checks what a browser sends, `chat` holds the conversation logic (no gradio in it, so it
is tested directly), `app` builds and launches the gradio page. Gradio is imported only by `app`.
"""

from nextgpt_mini.web.chat import ChatState, WebChat
from nextgpt_mini.web.uploads import UploadRejected, check_upload

__all__ = ["ChatState", "UploadRejected", "WebChat", "check_upload"]
