"""Chapters 00-09: `python -m nextgpt_mini.cli` (what `accelerate launch` and `torchrun` run)."""

import sys

from nextgpt_mini.cli import main

sys.exit(main())
