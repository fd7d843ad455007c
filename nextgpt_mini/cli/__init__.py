"""Chapters 00-09: the `nextgpt-mini` command line.

Each subcommand is a small function `cmd_<name>(args)` followed by `add_<name>_parser(sub)`, which
declares its arguments; `build_parser` adds them in the order of `PARSERS`. Errors a user can fix
(bad file, bad argument, missing weights) print one line naming the problem and exit with status
2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys

from nextgpt_mini.cli import run, tools

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, KeyError, RuntimeError, OSError, ImportError)

# The sub-parser of each command, in the order `nextgpt-mini --help` lists them
PARSERS = (
    tools.add_profile_parser, tools.add_make_samples_parser, tools.add_build_tiny_parser, run.add_encode_parser,
    run.add_train_parser, run.add_generate_parser, run.add_chat_parser, run.add_caption_parser, tools.add_params_parser,
    tools.add_memory_parser, tools.add_download_parser, tools.add_import_nextgpt_parser, tools.add_evaluate_parser, run.add_demo_parser, run.add_serve_parser,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nextgpt-mini", description="NExT-GPT, built chapter by chapter.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in PARSERS:
        add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if args.debug:
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        print(f"nextgpt-mini {args.command}: error: {message}", file=sys.stderr)
        return 2
