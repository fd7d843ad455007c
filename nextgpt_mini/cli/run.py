"""Chapters 01-07: the commands that run the system: encode, train, generate, chat, caption, demo."""

from __future__ import annotations

import argparse
from pathlib import Path

from nextgpt_mini.cli.common import add_profile_args, load_system, profile_of
from nextgpt_mini.constants import MODALITIES, STAGES


def cmd_encode(args) -> int:
    """Embed files and texts with the profile's ImageBind; write them as one safetensors file."""
    from nextgpt_mini.encode import Text, encode_to_file
    from nextgpt_mini.utils import writable_folder

    inputs = [Text(x[len("text:"):]) if x.startswith("text:") else x for x in args.inputs]
    writable_folder(Path(args.out).parent, "--out's folder")
    s = encode_to_file(inputs, args.out, profile_of(args), cache_dir=args.cache_dir, batch_size=args.batch_size,
                       device=args.device, progress=not args.no_progress)
    cache = f"; cache: {s['cache']['hits']} hits, {s['cache']['misses']} misses" if "cache" in s else ""
    n, d = s["n"], s["dim"]
    print(f"encoded {n} inputs -> embeddings [{n}, {d}] in {s['seconds']:.2f} s{cache}; wrote {s['out']}")
    return 0


def add_encode_parser(sub) -> None:
    p = sub.add_parser("encode", help="embed files and texts with ImageBind into a safetensors file")
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_TEXT",
                   help="media files (image/audio/video, by extension) or texts; prefix text: to force text")
    add_profile_args(p)
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

    stages = stage_list(args)
    writable_folder(args.out or "outputs")
    model = NextGPT.from_profile(profile_of(args))
    if args.init:
        model.load_trained(args.init)
    for stage in stages:
        out = args.out if len(stages) == 1 and args.out else f"{args.out or 'outputs'}/stage{stage}"
        stage_args = argparse.Namespace(**{**vars(args), "out": out})
        train_stage(stage, model, stage_args)
    return 0


def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a stage (1: encoding side, 2: decoding side, 3: MosIT instruction tuning)")
    p.add_argument("--stage", choices=list(STAGES), default=None)
    p.add_argument("--stages", default=None, help="several stages in this order on one model, e.g. 1,2,3 (the "
                   "original authors trained 1,3,2); each writes to OUT/stage<N>")
    add_profile_args(p)
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


def stage_list(args) -> list[str]:
    if bool(args.stage) == bool(args.stages):
        raise ValueError("give either --stage N or --stages LIST (e.g. --stages 1,2,3 or 1,3,2)")
    if args.stage:
        return [args.stage]
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages or len(set(stages)) != len(stages):
        raise ValueError(f"--stages {args.stages!r}: expected distinct stages from 1, 2, 3 separated by commas")
    if args.resume and len(stages) > 1:
        raise ValueError("--resume continues one stage: use it with --stage N")
    return stages


def train_stage(stage: str, model, args) -> None:
    """Run one stage (the toy world unless --data / --dialogues name files) and print its numbers."""
    from nextgpt_mini.tiny import data as recipes
    from nextgpt_mini.training.report import stage_lines

    common = dict(out_dir=args.out, steps=args.steps, resume=args.resume, cache_dir=args.cache_dir, progress=not args.no_progress)
    if stage == "3":
        result = recipes.run_stage3(model, data_files=args.dialogues, **common)
    else:
        result = {"1": recipes.run_stage1, "2": recipes.run_stage2}[stage](model, data_dir=args.data, **common)
    print("\n".join(stage_lines(stage, result, args.out, model.profile.train.distance)))


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
    for m in MODALITIES:
        for path in paths[m]:
            print(f"{m}: {path}")
    if result.completed:
        print(f"(the answer's signal tokens for {', '.join(result.completed)} were incomplete and were completed)")
    return 0


def add_generate_parser(sub) -> None:
    p = sub.add_parser("generate", help="answer a prompt (optionally about media files); write text and generated media")
    p.add_argument("prompt")
    p.add_argument("--media", nargs="+", default=None, metavar="FILE", help="input images / videos / sounds")
    add_profile_args(p)
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
        for m in MODALITIES:
            for path in paths[m]:
                print(f"       [{m}: {path}]")
        history = result.history
    return 0


def add_chat_parser(sub) -> None:
    p = sub.add_parser("chat", help="talk to a trained system in the terminal (media in with @path, out as files)")
    add_profile_args(p)
    p.add_argument("--checkpoint", default=None, help="a save_pretrained folder, or a `train` output folder")
    p.add_argument("--out", default="outputs/chat")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_chat)


def cmd_caption(args) -> int:
    """Caption media files with a stage-1 checkpoint."""
    from nextgpt_mini.encode import encode
    from nextgpt_mini.processing import modality_of
    from nextgpt_mini.training.stage1 import greedy_captions

    model = load_system(args)
    embeddings = encode(list(args.files), encoder=model.encoder, cfg=model.profile.encoder, progress=False)
    for path, emb in zip(args.files, embeddings):
        print(f"{path}: {greedy_captions(model, modality_of(path), emb[None])[0]}")
    return 0


def add_caption_parser(sub) -> None:
    p = sub.add_parser("caption", help="caption media files with a trained checkpoint")
    p.add_argument("files", nargs="+")
    add_profile_args(p)
    p.add_argument("--checkpoint", default=None, help="a folder written by `nextgpt-mini train`")
    p.set_defaults(func=cmd_caption)


def cmd_demo(args) -> int:
    from nextgpt_mini.tiny.demo import run_demo

    return run_demo(out_dir=args.out, quick=args.quick)


def add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="the main job: train the tiny system, converse in every direction, write a report")
    p.add_argument("--out", default="outputs/demo")
    p.add_argument("--quick", action="store_true", help="a few steps per stage (checks the plumbing; numbers meaningless)")
    p.set_defaults(func=cmd_demo)


def cmd_serve(args) -> int:
    """The web demo; blocks until interrupted."""
    try:
        from nextgpt_mini.web.app import serve
    except ImportError as err:
        raise ImportError(f"serve needs gradio ({err}): pip install 'nextgpt-mini[web]'") from err
    checkpoint = args.checkpoint or ("package:tiny_system" if args.profile == "tiny" else None)
    print(f"nextgpt-mini serve: loading {checkpoint or 'the untrained ' + args.profile + ' system'}...", flush=True)
    serve(checkpoint, profile_of(args), host=args.host, port=args.port, share=args.share,
          max_upload_mb=args.max_upload_mb, out_dir=args.out, seed=args.seed, block=False)
    print(f"nextgpt-mini serve: open http://{args.host}:{args.port} (Ctrl+C stops)", flush=True)
    import threading

    threading.Event().wait()
    return 0


def add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="a web chat (gradio) with image, audio and video in and out")
    add_profile_args(p)
    p.add_argument("--checkpoint", default=None,
                   help="a save_pretrained / demo / train folder (default: package:tiny_system for the tiny profile)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs internet)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest file a visitor may attach (default 20)")
    p.add_argument("--out", default=None, help="folder for uploads and generated media (default: a temporary one, "
                   "removed on exit)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_serve)
