"""Chapters 00-09: names every part of the package agrees on.

NExT-GPT generates three output modalities and trains in three stages (1: encoder side, 2: decoder
side, 3: instruction tuning); stage names are strings because they key `TrainConfig.steps` and the
saved config.json.
"""

MODALITIES = ("image", "video", "audio")
STAGES = ("1", "2", "3")
CHECKPOINT = "checkpoint"  # the trainer's checkpoint folder inside a `train` output folder
# in a saved system folder, next to trained.safetensors: replacements for the frozen LLM's own
# vocabulary rows (NExT-GPT's released checkpoint trained them; `models/import_nextgpt.py`)
FROZEN_ROWS = "frozen_rows.safetensors"
