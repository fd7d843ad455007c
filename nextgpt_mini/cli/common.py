"""Chapters 00-09: what every command shares: the profile arguments and the one checkpoint resolver."""

from __future__ import annotations

import argparse

from nextgpt_mini.profiles import PROFILES, load_profile


def add_profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="tiny", choices=PROFILES, help="model sizes (default: tiny, CPU)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a profile field, e.g. --set llm.max_length=64 (repeatable)",
    )


def profile_of(args):
    return load_profile(args.profile, args.overrides)


def load_system(args):
    """The model a command runs (`models.nextgpt.load_system`: the one checkpoint resolver)."""
    from nextgpt_mini.models.nextgpt import load_system as resolve

    return resolve(args.checkpoint, profile_of(args))
