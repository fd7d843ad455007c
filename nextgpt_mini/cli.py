"""Chapters 00-09: the `nextgpt-mini` command line.

Each subcommand is a small function `cmd_<name>(args)` followed by `_add_<name>_parser(sub)`, which
declares its arguments; `build_parser` adds them in the order of `PARSERS`. Errors a user can fix
(bad file, bad argument, missing weights) print one line naming the problem and exit with status
2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nextgpt_mini.profiles import PROFILES, load_profile

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, KeyError, RuntimeError, OSError, ImportError)


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


def _add_profile_parser(sub) -> None:
    p = sub.add_parser("profile", help="print a profile's configuration")
    _add_profile_args(p)
    p.set_defaults(func=cmd_profile)


def cmd_make_samples(args) -> int:
    from nextgpt_mini.tiny.samples import make_samples

    start = time.perf_counter()
    counts = make_samples(args.out, seed=args.seed)
    size = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file())
    print(
        f"wrote {counts['images']} images, {counts['audio']} audio clips, {counts['videos']} videos and "
        f"{counts['dialogues']} dialogues to {args.out} ({size / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s)"
    )
    return 0


def _add_make_samples_parser(sub) -> None:
    p = sub.add_parser("make-samples", help="write data_samples/ from the toy world")
    p.add_argument("--out", default="data_samples")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_make_samples)


def cmd_build_tiny(args) -> int:
    from nextgpt_mini.tiny.build import build

    return build(args.what, out=args.out, quick=args.quick)


def _add_build_tiny_parser(sub) -> None:
    p = sub.add_parser("build-tiny", help="rebuild a tiny-profile asset shipped in the package")
    p.add_argument("what", choices=["tokenizer", "encoder", "llm", "clap", "system"],
                   help="which asset (clap: the audio decoder's text encoder, after encoder; system: the trained tiny system, after the others)")
    p.add_argument("--out", default=None, help="write here instead of into the package")
    p.add_argument("--quick", action="store_true", help="a few steps only (to test the build code)")
    p.set_defaults(func=cmd_build_tiny)


def cmd_encode(args) -> int:
    """Embed files and texts with the profile's ImageBind; write them as one safetensors file."""
    from nextgpt_mini.encode import Text, encode_to_file
    from nextgpt_mini.utils import writable_folder

    inputs = [Text(x[len("text:"):]) if x.startswith("text:") else x for x in args.inputs]
    writable_folder(Path(args.out).parent, "--out's folder")
    s = encode_to_file(inputs, args.out, _profile(args), cache_dir=args.cache_dir, batch_size=args.batch_size,
                       device=args.device, progress=not args.no_progress)
    cache = f"; cache: {s['cache']['hits']} hits, {s['cache']['misses']} misses" if "cache" in s else ""
    n, d = s["n"], s["dim"]
    print(f"encoded {n} inputs -> embeddings [{n}, {d}] in {s['seconds']:.2f} s{cache}; wrote {s['out']}")
    return 0


def _add_encode_parser(sub) -> None:
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


def cmd_train(args) -> int:
    """Train one stage, or several in the given order on one model; print each stage's numbers."""
    from nextgpt_mini.models.nextgpt import NextGPT
    from nextgpt_mini.utils import writable_folder

    stages = _stage_list(args)
    writable_folder(args.out or "outputs")
    model = NextGPT.from_profile(_profile(args))
    if args.init:
        model.load_trained(args.init)
    for stage in stages:
        out = args.out if len(stages) == 1 and args.out else f"{args.out or 'outputs'}/stage{stage}"
        stage_args = argparse.Namespace(**{**vars(args), "out": out})
        {"1": _train_stage1, "2": _train_stage2, "3": _train_stage3}[stage](model, stage_args)
    return 0


def _add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a stage (1: encoding side, 2: decoding side, 3: MosIT instruction tuning)")
    p.add_argument("--stage", choices=["1", "2", "3"], default=None)
    p.add_argument("--stages", default=None, help="several stages in this order on one model, e.g. 1,2,3 (the "
                   "original authors trained 1,3,2); each writes to OUT/stage<N>")
    _add_profile_args(p)
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the profile's)")
    p.add_argument("--data", default=None, help="stages 1-2: folder of NExT-GPT pair files (default: the toy world)")
    p.add_argument("--dialogues", nargs="+", default=None, metavar="JSON",
                   help="stage 3: instruction files (our MosIT, NExT-GPT T2M/MosIT, LLaVA or Alpaca; default: the toy world)")
    p.add_argument("--out", default=None, help="checkpoint, metrics.jsonl, loss.png (default: outputs/stage<N>)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--init", default=None, help="start from the weights of an earlier stage's checkpoint folder")
    p.add_argument("--cache-dir", default=".cache/embeddings", help="embedding cache (encoder; decoder targets)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)


def _stage_list(args) -> list[str]:
    if bool(args.stage) == bool(args.stages):
        raise ValueError("give either --stage N or --stages LIST (e.g. --stages 1,2,3 or 1,3,2)")
    if args.stage:
        return [args.stage]
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in ("1", "2", "3")]
    if bad or not stages or len(set(stages)) != len(stages):
        raise ValueError(f"--stages {args.stages!r}: expected distinct stages from 1, 2, 3 separated by commas")
    if args.resume and len(stages) > 1:
        raise ValueError("--resume continues one stage: use it with --stage N")
    return stages


def _train_stage1(model, args) -> int:
    from nextgpt_mini.training.stage1 import format_attributes, run_stage1

    result = run_stage1(model, out_dir=args.out, steps=args.steps, data_dir=args.data, resume=args.resume,
                        cache_dir=args.cache_dir, progress=not args.no_progress)
    first, last = result.first_eval, result.last_eval
    print(f"stage 1: {result.steps} steps in {result.seconds:.1f} s; checkpoint in {args.out}/checkpoint")
    print(f"held-out caption loss: {first.get('heldout_loss', float('nan')):.3f} -> {last['heldout_loss']:.3f}")
    if "attr_acc" in last:
        print(f"held-out captions: {format_attributes(last)}; per attribute before training {first.get('attr_acc', float('nan')):.1%}")
    return 0


def _train_stage2(model, args) -> int:
    from nextgpt_mini.training.stage2 import run_stage2

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


def _train_stage3(model, args) -> int:
    from nextgpt_mini.training.stage1 import format_attributes
    from nextgpt_mini.training.stage3 import run_stage3

    result = run_stage3(model, out_dir=args.out, steps=args.steps, data_files=args.dialogues, resume=args.resume,
                        cache_dir=args.cache_dir, progress=not args.no_progress)
    first, last = result.first_eval, result.last_eval
    print(f"stage 3: {result.steps} steps in {result.seconds:.1f} s; checkpoint in {args.out}/checkpoint")
    print(f"held-out dialogue NLL: {first.get('heldout_nll', float('nan')):.3f} -> {last['heldout_nll']:.3f}")
    print(f"held-out first replies with the right signal tokens (the complete run of the asked modality, none "
          f"when no media is asked): {first.get('signal_accuracy', float('nan')):.1%} -> {last['signal_accuracy']:.1%}")
    if "attr_acc" in last:
        print(f"held-out media->text answers: {format_attributes(last)}")
    return 0


def load_system(args):
    """The model a command runs: a `save_pretrained` folder, or the profile plus a trainer checkpoint."""
    from pathlib import Path

    from nextgpt_mini.models.nextgpt import NextGPT

    if args.checkpoint and (Path(args.checkpoint) / "config.json").is_file():
        return NextGPT.from_pretrained(args.checkpoint)
    model = NextGPT.from_profile(_profile(args))
    if args.checkpoint:
        model.load_trained(args.checkpoint)
    return model


def cmd_generate(args) -> int:
    """Answer one prompt; write the text and every generated image / video / sound to --out."""
    from nextgpt_mini.generation import save_result
    from nextgpt_mini.models.decoders import Decoders
    from nextgpt_mini.utils import writable_folder

    writable_folder(args.out)
    model = load_system(args)
    decoders = Decoders(model.profile)
    result = model.generate(args.prompt, args.media, decoders=decoders, max_new_tokens=args.max_new_tokens,
                            temperature=args.temperature, top_p=args.top_p, seed=args.seed, steps=args.steps,
                            guidance_scale=args.guidance_scale, progress=not args.no_progress)
    paths = save_result(result, args.out, decoders)
    print(result.text)
    for m in ("image", "video", "audio"):
        for path in paths[m]:
            print(f"{m}: {path}")
    if result.completed:
        print(f"(the answer's signal tokens for {', '.join(result.completed)} were incomplete and were completed)")
    return 0


def _add_generate_parser(sub) -> None:
    p = sub.add_parser("generate", help="answer a prompt (optionally about media files); write text and generated media")
    p.add_argument("prompt")
    p.add_argument("--media", nargs="+", default=None, metavar="FILE", help="input images / videos / sounds")
    _add_profile_args(p)
    p.add_argument("--checkpoint", default=None, help="a save_pretrained folder, or a `train` output folder")
    p.add_argument("--out", default="outputs/generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the profile's)")
    p.add_argument("--guidance-scale", type=float, default=None, help="(default: the profile's)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_generate)


def cmd_chat(args) -> int:
    """An interactive conversation in the terminal; generated media are written to --out."""
    from nextgpt_mini.generation import save_result
    from nextgpt_mini.models.decoders import Decoders
    from nextgpt_mini.processing import MediaError
    from nextgpt_mini.utils import writable_folder

    writable_folder(args.out)
    model = load_system(args)
    decoders = Decoders(model.profile)
    print("nextgpt-mini chat: type a message; attach files with @path (e.g. @cat.png); 'new' starts over; 'quit' ends.")
    history, turn = None, 0
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            break
        if line in ("quit", "exit"):
            break
        if line == "new":
            history = None
            continue
        if not line:
            continue
        media = [w[1:] for w in line.split() if w.startswith("@") and len(w) > 1]
        text = " ".join(w for w in line.split() if not w.startswith("@")) or "Describe this."
        try:
            result = model.generate(text, media, history=history, decoders=decoders, seed=args.seed)
        except (ValueError, FileNotFoundError, MediaError) as err:
            print(f"error: {err}")
            continue
        paths = save_result(result, args.out, decoders, stem=f"turn{turn}")
        turn += 1
        print(f"model> {result.text}")
        for m in ("image", "video", "audio"):
            for path in paths[m]:
                print(f"       [{m}: {path}]")
        history = result.history
    return 0


def _add_chat_parser(sub) -> None:
    p = sub.add_parser("chat", help="talk to a trained system in the terminal (media in with @path, out as files)")
    _add_profile_args(p)
    p.add_argument("--checkpoint", default=None, help="a save_pretrained folder, or a `train` output folder")
    p.add_argument("--out", default="outputs/chat")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_chat)


def cmd_caption(args) -> int:
    """Caption media files with a stage-1 checkpoint."""
    from nextgpt_mini.encode import encode
    from nextgpt_mini.models.nextgpt import NextGPT
    from nextgpt_mini.processing import modality_of
    from nextgpt_mini.training.stage1 import greedy_captions

    model = NextGPT.from_profile(_profile(args))
    if args.checkpoint:
        model.load_trained(args.checkpoint)
    embeddings = encode(list(args.files), encoder=model.encoder, cfg=model.profile.encoder, progress=False)
    for path, emb in zip(args.files, embeddings):
        print(f"{path}: {greedy_captions(model, modality_of(path), emb[None])[0]}")
    return 0


def _add_caption_parser(sub) -> None:
    p = sub.add_parser("caption", help="caption media files with a trained checkpoint")
    p.add_argument("files", nargs="+")
    _add_profile_args(p)
    p.add_argument("--checkpoint", default=None, help="a folder written by `nextgpt-mini train`")
    p.set_defaults(func=cmd_caption)


def cmd_demo(args) -> int:
    from nextgpt_mini.tiny.demo import run_demo

    return run_demo(out_dir=args.out, quick=args.quick)


def _add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="the main job: train the tiny system, converse in every direction, write a report")
    p.add_argument("--out", default="outputs/demo")
    p.add_argument("--quick", action="store_true", help="a few steps per stage (checks the plumbing; numbers meaningless)")
    p.set_defaults(func=cmd_demo)


def cmd_params(args) -> int:
    """The parameter table of a profile at full size, built empty (no download, no weights)."""
    from nextgpt_mini.scaling.params import PAPER_TABLE_1, format_table, full_size_table_with_decoders

    profile = _profile(args)
    rows = full_size_table_with_decoders(profile, stage=args.stage)
    print(f"profile {profile.name}, what stage {args.stage} trains (built on the meta device: no weights)")
    print(format_table(rows, PAPER_TABLE_1 if profile.name == "paper" else None))
    everything = sum(r.total for r in rows)
    signal = sum(r.trainable for r in rows if r.module == "signal-token rows")
    trained = sum(r.trainable for r in rows)
    print(f"trained share as the paper counts it (LoRA + projectors): {100 * (trained - signal) / everything:.3f}%; "
          f"with the signal-token rows, which also train: {100 * trained / everything:.3f}%")
    return 0


def _add_params_parser(sub) -> None:
    p = sub.add_parser("params", help="the parameter table of a profile at full size, without weights")
    _add_profile_args(p)
    p.add_argument("--stage", default="3", choices=["1", "2", "3"], help="which stage's trainable parameters to count")
    p.set_defaults(func=cmd_params)


def cmd_memory(args) -> int:
    """Estimate GPU and CPU memory for inference or a training stage, and whether it fits."""
    from nextgpt_mini.scaling.memory import format_plan, plan

    if (args.stage is None) == (not args.inference):
        raise ValueError("give exactly one of --stage 1|2|3 and --inference")
    print(format_plan(plan(_profile(args), stage=args.stage, dtype=args.dtype, gpu_gb=args.gpu_gb,
                           batch_size=args.batch_size)))
    return 0


def _add_memory_parser(sub) -> None:
    p = sub.add_parser("memory", help="estimate GPU/CPU memory for inference or a stage; does it fit?")
    _add_profile_args(p)
    p.add_argument("--stage", default=None, choices=["1", "2", "3"])
    p.add_argument("--inference", action="store_true")
    p.add_argument("--dtype", default="fp16", choices=["fp32", "fp16", "bf16", "int8", "int4"], help="the LLM's weights")
    p.add_argument("--gpu-gb", type=float, default=15.0, help="GPU memory in GB (default 15: a Colab T4)")
    p.add_argument("--batch-size", type=int, default=None, help="per-device batch (default: the profile's)")
    p.set_defaults(func=cmd_memory)


def cmd_download(args) -> int:
    """Fetch (or with --check, list) every weight the profile loads from the network."""
    from nextgpt_mini import hub as dl

    profile = _profile(args)
    if not args.check:
        fetched = dl.download(profile, args.dir)
        print(f"fetched {len(fetched)} of {len(dl.sources(profile))}; the rest were already there")
    rows = dl.check(profile, args.dir)
    print(dl.format_check(profile, rows, args.dir))
    return 0 if all(present for _, present in rows) else 1


def _add_download_parser(sub) -> None:
    p = sub.add_parser("download", help="prefetch every weight a profile needs (for a room, a shared drive, a job)")
    _add_profile_args(p)
    p.add_argument("--dir", default=None, help="download here (D/hub: a Hugging Face cache, D/imagebind) "
                   "instead of the default caches")
    p.add_argument("--check", action="store_true", help="only list what is present and what is missing")
    p.set_defaults(func=cmd_download)


def cmd_evaluate(args) -> int:
    """Run an evaluation suite; print the table; write results.json and results.md to --out."""
    from nextgpt_mini.evaluation.suites import evaluate_suite, markdown, write_report
    from nextgpt_mini.utils import writable_folder

    out = writable_folder(args.out or f"outputs/eval/{args.suite}")
    report = evaluate_suite(args.suite, args.checkpoint, baseline=args.baseline, limit=args.limit, data_dir=args.data,
                            protocol_file=args.protocol, progress=not args.no_progress)
    paths = write_report(report, out)
    print(markdown(report))
    print(f"written: {paths[0]} and {paths[1]}")
    return 0


def _add_evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="run an evaluation suite (toy, or a paper benchmark on a local copy of its data)")
    p.add_argument("--suite", required=True, choices=["toy", "coco-t2i", "audiocaps-t2a", "msrvtt-t2v", "coco-caption"])
    p.add_argument("--checkpoint", default="package:tiny_system",
                   help="a save_pretrained, `demo` or `train` output folder, 'untrained', or package:tiny_system (default)")
    p.add_argument("--baseline", default=None, choices=["untrained", "none"], help="also evaluate this (default: the protocol's)")
    p.add_argument("--limit", type=int, default=None, help="at most N samples per task (default: the protocol's count)")
    p.add_argument("--data", default=None, help="real suites: DIR holding <suite>/pairs.json and the media")
    p.add_argument("--protocol", default=None, help="a protocols JSON file instead of the package's")
    p.add_argument("--out", default=None, help="folder for results.json and results.md (default outputs/eval/<suite>)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_evaluate)


# --------------------------------------------------------------------------------------------
# The sub-parser of each command, in the order `nextgpt-mini --help` lists them
PARSERS = (
    _add_profile_parser, _add_make_samples_parser, _add_build_tiny_parser, _add_encode_parser, _add_train_parser,
    _add_generate_parser, _add_chat_parser, _add_caption_parser, _add_params_parser, _add_memory_parser,
    _add_download_parser, _add_evaluate_parser, _add_demo_parser,
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


if __name__ == "__main__":
    sys.exit(main())
