"""The `nextgpt-mini` command line.

Each subcommand is a small function `cmd_<name>(args)`; `build_parser` wires them up. Errors a
user can fix (bad file, bad argument, missing weights) print one line naming the problem and exit
with status 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nextgpt_mini.config import PROFILES, load_profile

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, KeyError, RuntimeError, OSError)


def _add_profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="tiny", choices=PROFILES, help="model sizes (default: tiny, CPU)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a profile field, e.g. --set llm.max_length=64 (repeatable)",
    )


def _profile(args):
    return load_profile(args.profile, args.overrides)


# --------------------------------------------------------------------------------------------
def cmd_profile(args) -> int:
    """Print a profile's full configuration as JSON."""
    print(_profile(args).to_json())
    return 0


def cmd_make_samples(args) -> int:
    from nextgpt_mini.data.samples import make_samples

    start = time.perf_counter()
    counts = make_samples(args.out, seed=args.seed)
    size = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file())
    print(
        f"wrote {counts['images']} images, {counts['audio']} audio clips, {counts['videos']} videos and "
        f"{counts['dialogues']} dialogues to {args.out} ({size / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s)"
    )
    return 0


def cmd_build_tiny(args) -> int:
    from nextgpt_mini import tiny_assets

    return tiny_assets.build(args.what, out=args.out, quick=args.quick)


def cmd_encode(args) -> int:
    """Embed files and texts with the profile's ImageBind; write them as one safetensors file."""
    from nextgpt_mini.encoders.encode import Text, encode_to_file

    inputs = [Text(x[len("text:"):]) if x.startswith("text:") else x for x in args.inputs]
    s = encode_to_file(inputs, args.out, _profile(args), cache_dir=args.cache_dir, batch_size=args.batch_size,
                       device=args.device, progress=not args.no_progress)
    cache = f"; cache: {s['cache']['hits']} hits, {s['cache']['misses']} misses" if "cache" in s else ""
    n, d = s["n"], s["dim"]
    print(f"encoded {n} inputs -> embeddings [{n}, {d}] in {s['seconds']:.2f} s{cache}; wrote {s['out']}")
    return 0


def cmd_train(args) -> int:
    """Train one stage; print the steps and the held-out numbers at start and end."""
    from nextgpt_mini.model import NextGPT

    if args.stage == "3":
        raise ValueError("stage 3 is not implemented yet (chapter 06 adds MosIT instruction tuning)")
    args.out = args.out or f"outputs/stage{args.stage}"
    model = NextGPT.from_profile(_profile(args))
    if args.init:
        model.load_trained(args.init)
    if args.stage == "1":
        return _train_stage1(model, args)
    return _train_stage2(model, args)


def _train_stage1(model, args) -> int:
    from nextgpt_mini.stage1 import run_stage1

    result = run_stage1(model, out_dir=args.out, steps=args.steps, data_dir=args.data, resume=args.resume,
                        cache_dir=args.cache_dir, progress=not args.no_progress)
    first, last = result.first_eval, result.last_eval
    print(f"stage 1: {result.steps} steps in {result.seconds:.1f} s; checkpoint in {args.out}/checkpoint")
    print(f"held-out caption loss: {first.get('heldout_loss', float('nan')):.3f} -> {last['heldout_loss']:.3f}")
    if "attr_acc" in last:
        print(f"held-out attributes named right: {first.get('attr_acc', float('nan')):.1%} -> {last['attr_acc']:.1%} "
              f"(chance {last['attr_chance']:.1%}); whole caption right: {last['exact_acc']:.1%} (chance {last['exact_chance']:.2%})")
    return 0


def _train_stage2(model, args) -> int:
    from nextgpt_mini.stage2 import run_stage2

    result = run_stage2(model, out_dir=args.out, steps=args.steps, data_dir=args.data, resume=args.resume,
                        cache_dir=args.cache_dir, progress=not args.no_progress)
    first, last = result.first_eval, result.last_eval
    print(f"stage 2: {result.steps} steps in {result.seconds:.1f} s; checkpoint in {args.out}/checkpoint")
    print(f"held-out alignment distance ({model.profile.train.distance}): {first.get('distance', float('nan')):.3f} -> "
          f"{last['distance']:.3f} ({1 - last['distance'] / first['distance']:.0%} lower)")
    print(f"held-out captions whose projection is nearest their own target: {last['retrieval']:.1%} "
          f"(chance {last['retrieval_chance']:.1%}); per modality: "
          + ", ".join(f"{m} {last[f'{m}_retrieval']:.0%}" for m in ("image", "video", "audio") if f"{m}_retrieval" in last))
    return 0


def cmd_caption(args) -> int:
    """Caption media files with a stage-1 checkpoint."""
    from nextgpt_mini.encoders.encode import encode
    from nextgpt_mini.encoders.preprocess import modality_of
    from nextgpt_mini.model import NextGPT
    from nextgpt_mini.stage1 import greedy_captions

    model = NextGPT.from_profile(_profile(args))
    if args.checkpoint:
        model.load_trained(args.checkpoint)
    embeddings = encode(list(args.files), encoder=model.encoder, cfg=model.profile.encoder, progress=False)
    for path, emb in zip(args.files, embeddings):
        print(f"{path}: {greedy_captions(model, modality_of(path), emb[None])[0]}")
    return 0


def cmd_demo(args) -> int:
    from nextgpt_mini.demo import run_demo

    return run_demo(out_dir=args.out)


# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nextgpt-mini", description="NExT-GPT, built chapter by chapter.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("profile", help="print a profile's configuration")
    _add_profile_args(p)
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("make-samples", help="write data_samples/ from the toy world")
    p.add_argument("--out", default="data_samples")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_make_samples)

    p = sub.add_parser("build-tiny", help="rebuild a tiny-profile asset shipped in the package")
    p.add_argument("what", choices=["tokenizer", "encoder", "llm"], help="which asset")
    p.add_argument("--out", default=None, help="write here instead of into the package")
    p.add_argument("--quick", action="store_true", help="a few steps only (to test the build code)")
    p.set_defaults(func=cmd_build_tiny)

    p = sub.add_parser("encode", help="embed files and texts with ImageBind into a safetensors file")
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_TEXT",
                   help="media files (image/audio/video, by extension) or texts; prefix text: to force text")
    _add_profile_args(p)
    p.add_argument("--out", default="embeddings.safetensors", help="output file (default: embeddings.safetensors)")
    p.add_argument("--cache-dir", default=None, help="embedding cache folder: reuse embeddings of unchanged inputs")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("train", help="train a stage (1: encoding-side alignment, 2: decoding-side alignment)")
    p.add_argument("--stage", required=True, choices=["1", "2", "3"])
    _add_profile_args(p)
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the profile's)")
    p.add_argument("--data", default=None, help="folder of NExT-GPT pair files (default: the toy world)")
    p.add_argument("--out", default=None, help="checkpoint, metrics.jsonl, loss.png (default: outputs/stage<N>)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--init", default=None, help="start from the weights of an earlier stage's checkpoint folder")
    p.add_argument("--cache-dir", default=".cache/embeddings", help="embedding cache (encoder; decoder targets)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("caption", help="caption media files with a trained checkpoint")
    p.add_argument("files", nargs="+")
    _add_profile_args(p)
    p.add_argument("--checkpoint", default=None, help="a folder written by `nextgpt-mini train`")
    p.set_defaults(func=cmd_caption)

    p = sub.add_parser("demo", help="the main job: run what the package can do end to end (tiny profile)")
    p.add_argument("--out", default="outputs/demo")
    p.set_defaults(func=cmd_demo)
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


if __name__ == "__main__":
    sys.exit(main())
