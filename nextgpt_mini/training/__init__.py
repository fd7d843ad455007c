"""Chapters 02, 04 and 06: one trainer and the three stages (read `stages.py` first)."""
