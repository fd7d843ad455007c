"""`nextgpt-mini ARGS...` in this process, for tests/test_interruptions.py.

With NEXTGPT_TEST_HANG_IN=NAME, a checkpoint write into a folder whose path contains NAME stops
after the weights file, writes the path to NEXTGPT_TEST_MARKER and hangs there, so that the test's
SIGKILL lands in the middle of the write, as a Colab reset or the OOM killer may.
"""

import os
import sys
import time
from pathlib import Path

import nextgpt_mini.training.trainer as trainer
from nextgpt_mini.cli import main

hang = os.environ.get("NEXTGPT_TEST_HANG_IN")
if hang:
    real_save_torch = trainer.save_torch

    def hanging_save_torch(obj, path, sync=False):
        if hang in str(path):
            Path(os.environ["NEXTGPT_TEST_MARKER"]).write_text(str(path))
            time.sleep(300)
        return real_save_torch(obj, path, sync)

    trainer.save_torch = hanging_save_torch

sys.exit(main(sys.argv[1:]))
