"""Chapters 02, 04 and 06: the three stages on one page — the table to read first.

Each stage is the same trainer with a different row: what trains (everything else is frozen and
the trainer refuses stray gradients), which loss terms `NextGPT.stage_loss` adds, which data the
batches hold, and what the held-out evaluation reports.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    trains: tuple[str, ...]  # the model's trainable groups (NextGPT.trainable_groups)
    loss: str  # the terms of NextGPT.stage_loss / losses.py
    data: str  # what one batch holds (training/stageN.py builds it)
    evaluation: str  # what the held-out evaluation reports


STAGE_TABLE: dict[str, Stage] = {
    "1": Stage("encoding-side alignment", trains=("input_projector",),
               loss="NLL of the caption answer (only the answer tokens)",
               data="(media embedding, caption) pairs, one modality per batch, round-robin (training/stage1.py)",
               evaluation="held-out caption loss; attributes named right by greedy captions, next to chance"),
    "2": Stage("decoding-side alignment", trains=("output_projectors", "signal_rows"),
               loss="NLL of '<caption> [SIG0..]' + alignment_scale x distance(projected signal states, decoder target)"
                    " (video: video_alignment_scale); optionally + denoising_loss x the frozen UNet's Min-SNR loss",
               data="captions only (no media), one modality per batch, round-robin (training/stage2.py)",
               evaluation="held-out answer NLL, alignment distance, own-target retrieval next to chance"),
    "3": Stage("modality-switching instruction tuning (MosIT)",
               trains=("lora", "input_projector", "output_projectors", "signal_rows"),
               loss="NLL of every assistant turn + the weighted alignment distance on turns that ask for media",
               data="dialogues, one task per batch (T->I, I->T, ...), the modality-blended sampler (training/stage3.py)",
               evaluation="held-out dialogue NLL and distances; right signal tokens in first replies; media->text attributes"),
}
# What the trainer reads (`select_trainable`): a plain dict, so a notebook can change what a stage trains.
STAGE_TRAINS: dict[str, tuple[str, ...]] = {key: stage.trains for key, stage in STAGE_TABLE.items()}
