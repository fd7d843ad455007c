"""How long the tiny decoders take to generate one item at the profile's default steps, on this CPU.

Issue 16's bar for a laptop: at most 1 s a picture, 3 s a video or a 5-s sound (2 CPU cores).
Each modality: one warm-up call (first-call costs: imports, allocations), then the median of
`--repeat` calls, each generating one item from a caption's own conditioning.

    python benchmarks/decoder_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from nextgpt_mini.models.decoders import Decoder
from nextgpt_mini.profiles import load_profile

CAPTIONS = {"image": "a big red circle on the left", "video": "a green square moving up quickly",
            "audio": "a high beeping rhythm over pink noise"}
LIMITS = {"image": 1.0, "video": 3.0, "audio": 3.0}  # seconds; audio for a 5-s sound


def time_generation(modality: str, repeat: int, audio_seconds: float) -> tuple[float, int]:
    cfg = load_profile("tiny").decoder(modality)
    if modality == "audio":
        cfg = dataclasses.replace(cfg, audio_seconds=audio_seconds)
    decoder = Decoder(modality, cfg)
    cond = decoder.targets([CAPTIONS[modality]])
    decoder.generate(cond, progress=False)  # warm-up
    times = []
    for seed in range(repeat):
        start = time.perf_counter()
        decoder.generate(cond, seed=seed, progress=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times), cfg.steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--audio-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    failed = False
    for modality in ("image", "video", "audio"):
        seconds, steps = time_generation(modality, args.repeat, args.audio_seconds)
        what = {"image": "a picture", "video": "a video", "audio": f"a {args.audio_seconds:g}-s sound"}[modality]
        ok = seconds <= LIMITS[modality]
        failed |= not ok
        print(f"{modality}: {seconds:.2f} s {what} at {steps} steps ({args.threads} threads; bar {LIMITS[modality]:g} s: "
              f"{'met' if ok else 'MISSED'})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
