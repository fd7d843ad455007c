"""A Hugging Face Space (gradio SDK) runs this file: the tiny system's web demo, offline.

Locally the same page is `nextgpt-mini serve`. A Space sets GRADIO_SERVER_NAME / PORT itself.
"""

import os

from nextgpt_mini.web.app import serve

if __name__ == "__main__":
    serve(checkpoint=os.environ.get("NEXTGPT_CHECKPOINT", "package:tiny_system"),
          host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
          port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
