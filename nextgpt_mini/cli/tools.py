"""Chapters 00, 08 and 09: the commands around the system: profile, make-samples, build-tiny, params,
memory, download, import-nextgpt, evaluate."""

from __future__ import annotations

import time
from pathlib import Path

from nextgpt_mini.cli.common import add_profile_args, profile_of


def cmd_profile(args) -> int:
    """Print a profile's full configuration as JSON."""
    print(profile_of(args).to_json())
    return 0


def add_profile_parser(sub) -> None:
    p = sub.add_parser("profile", help="print a profile's configuration")
    add_profile_args(p)
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


def add_make_samples_parser(sub) -> None:
    p = sub.add_parser("make-samples", help="write data_samples/ from the toy world")
    p.add_argument("--out", default="data_samples")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_make_samples)


def cmd_build_tiny(args) -> int:
    from nextgpt_mini.tiny.build import build

    return build(args.what, out=args.out, quick=args.quick)


def add_build_tiny_parser(sub) -> None:
    p = sub.add_parser("build-tiny", help="rebuild a tiny-profile asset shipped in the package")
    p.add_argument("what", choices=["tokenizer", "encoder", "llm", "clap", "system", "image-decoder", "video-decoder", "audio-decoder"],
                   help="which asset (clap: the audio decoder's text encoder, after encoder; system: the trained tiny system, "
                        "after the others; image-decoder: the trained tiny Stable Diffusion, after encoder; video-decoder: the tiny Zeroscope inflated from it; audio-decoder: the tiny AudioLDM, after clap)")
    p.add_argument("--out", default=None, help="write here instead of into the package")
    p.add_argument("--quick", action="store_true", help="a few steps only (to test the build code)")
    p.set_defaults(func=cmd_build_tiny)


def cmd_params(args) -> int:
    """The parameter table of a profile at full size, built empty (no download, no weights)."""
    from nextgpt_mini.scaling.params import PAPER_TABLE_1, format_table, full_size_table_with_decoders

    profile = profile_of(args)
    rows = full_size_table_with_decoders(profile, stage=args.stage)
    print(f"profile {profile.name}, what stage {args.stage} trains (built on the meta device: no weights)")
    print(format_table(rows, PAPER_TABLE_1 if profile.name == "paper" else None))
    everything = sum(r.total for r in rows)
    signal = sum(r.trainable for r in rows if r.module == "signal-token rows")
    trained = sum(r.trainable for r in rows)
    print(f"trained share as the paper counts it (LoRA + projectors): {100 * (trained - signal) / everything:.3f}%; "
          f"with the signal-token rows, which also train: {100 * trained / everything:.3f}%")
    return 0


def add_params_parser(sub) -> None:
    p = sub.add_parser("params", help="the parameter table of a profile at full size, without weights")
    add_profile_args(p)
    p.add_argument("--stage", default="3", choices=["1", "2", "3"], help="which stage's trainable parameters to count")
    p.set_defaults(func=cmd_params)


def cmd_memory(args) -> int:
    """Estimate GPU and CPU memory for inference or a training stage, and whether it fits."""
    from nextgpt_mini.models.nextgpt import read_saved_config
    from nextgpt_mini.scaling.memory import format_plan, plan

    if (args.stage is None) == (not args.inference):
        raise ValueError("give exactly one of --stage 1|2|3 and --inference")
    profile = read_saved_config(args.checkpoint)[1] if args.checkpoint else profile_of(args)
    print(format_plan(plan(profile, stage=args.stage, dtype=args.dtype, gpu_gb=args.gpu_gb,
                           batch_size=args.batch_size)))
    return 0


def add_memory_parser(sub) -> None:
    p = sub.add_parser("memory", help="estimate GPU/CPU memory for inference or a stage; does it fit?")
    add_profile_args(p)
    p.add_argument("--stage", default=None, choices=["1", "2", "3"])
    p.add_argument("--inference", action="store_true")
    p.add_argument("--checkpoint", default=None, help="plan a saved system folder (its config.json) instead of --profile, "
                                                       "e.g. one written by import-nextgpt")
    p.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16", "int8", "int4"],
                   help="the LLM's weights (default: int4/int8 where the profile sets llm.load_in_bits, else fp16)")
    p.add_argument("--gpu-gb", type=float, default=15.0, help="GPU memory in GB (default 15: a Colab T4)")
    p.add_argument("--batch-size", type=int, default=None, help="per-device batch (default: the profile's)")
    p.set_defaults(func=cmd_memory)


def cmd_import_nextgpt(args) -> int:
    """NExT-GPT's released checkpoint -> a folder NextGPT.from_pretrained loads."""
    from nextgpt_mini.models.import_nextgpt import import_nextgpt

    start = time.perf_counter()
    bits = None if args.load_in_bits == "none" else int(args.load_in_bits)
    s = import_nextgpt(args.checkpoint, args.out, llm=args.llm, frozen_rows=not args.no_frozen_rows, load_in_bits=bits)
    rows = "; the trained rows of the base vocabulary in frozen_rows.safetensors" if s["frozen_rows"] else ""
    print(f"read {s['tensors']} tensors ({s['parameters']:,} parameters) from {args.checkpoint}; wrote {args.out} "
          f"({s['bytes'] / 1e6:.0f} MB: {s['trained']} trained tensors, {s['trained_parameters']:,} parameters{rows}) "
          f"in {time.perf_counter() - start:.1f} s")
    print(f"the LLM it runs on: {args.llm} (Vicuna-7B v0; docs/import-nextgpt.md says how to make it). "
          f"Load with NextGPT.from_pretrained({str(args.out)!r}) or `nextgpt-mini chat --checkpoint {args.out}`; "
          f"memory: `nextgpt-mini memory --checkpoint {args.out} --inference`")
    return 0


def add_import_nextgpt_parser(sub) -> None:
    from nextgpt_mini.config import VICUNA_V0

    p = sub.add_parser("import-nextgpt", help="convert NExT-GPT's released checkpoint (7b_tiva_v0) into a folder this package loads")
    p.add_argument("checkpoint", help="pytorch_model.pt of ChocoWu/nextgpt_7b_tiva_v0")
    p.add_argument("--out", required=True, help="the folder to write (must not exist, or be empty)")
    p.add_argument("--llm", default=VICUNA_V0, help="Vicuna-7B v0: a local folder (LLaMA-1 + lmsys/vicuna-7b-delta-v0) "
                                                    f"or hub id, recorded in config.json (default: {VICUNA_V0})")
    p.add_argument("--no-frozen-rows", action="store_true",
                   help="leave out the checkpoint's trained rows of the base vocabulary (2 x 32000 x 4096; "
                        "the LLM's own rows are used instead)")
    p.add_argument("--load-in-bits", default="none", choices=["4", "8", "none"],
                   help="record llm.load_in_bits (4: the plan that fits a 15 GB T4; CUDA only)")
    p.set_defaults(func=cmd_import_nextgpt)


def cmd_download(args) -> int:
    """Fetch (or with --check, list) every weight the profile loads from the network."""
    from nextgpt_mini import hub as dl

    profile = profile_of(args)
    evaluation = not args.no_eval
    if args.dry_run:
        print(dry_run_plan(profile, evaluation))
        return 0
    if not args.check:
        fetched = dl.download(profile, args.dir, evaluation)
        print(f"fetched {len(fetched)} of {len(dl.sources(profile, evaluation))}; the rest were already there")
    rows = dl.check(profile, args.dir, evaluation)
    print(dl.format_check(profile, rows, args.dir))
    return 0 if all(present for _, present in rows) else 1


def dry_run_plan(profile, evaluation: bool) -> str:
    """The files and sizes `download` would fetch: from the hub when online, else estimated."""
    from nextgpt_mini import hub as dl

    if dl.offline():
        from nextgpt_mini.scaling.downloads import estimate

        return dl.format_plan(estimate(profile, evaluation), estimated=True)
    return dl.format_plan(dl.online_plan(dl.sources(profile, evaluation)))


def add_download_parser(sub) -> None:
    p = sub.add_parser("download", help="prefetch every weight a profile needs (for a room, a shared drive, a job)")
    add_profile_args(p)
    p.add_argument("--dir", default=None, help="download here (D/hub: a Hugging Face cache, D/imagebind) "
                   "instead of the default caches")
    p.add_argument("--check", action="store_true", help="only list what is present and what is missing")
    p.add_argument("--dry-run", action="store_true", help="list the files and sizes it would fetch; fetch nothing "
                   "(offline: sizes estimated from the parameter counts)")
    p.add_argument("--no-eval", action="store_true", help="leave out the evaluation models (CLIP, CLAP) of chapter 09")
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


def add_evaluate_parser(sub) -> None:
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
