"""Chapters 02, 06 and 09: how the tiny profile turns toy items into media, in one place.

Every consumer renders toy items with these settings: stage 1's pairs, stage 3's dialogue media,
the toy suite's generations, so what the encoder reads in evaluation is what it read in training.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from nextgpt_mini import processing as pp
from nextgpt_mini.config import EncoderConfig
from nextgpt_mini.tiny import world as tw

# 64 px images and videos, 2 s clips at 8 fps, 16 kHz sound.
RENDER = {"size": 64, "seconds": 2.0, "fps": 8, "sample_rate": 16000}


# Inputs exactly as the file loaders make them (ImageBind's transforms on rendered media)
def image_tensor(item: tw.ToyItem, render_size: int, cfg: EncoderConfig) -> Tensor:
    """A toy image rendered at `render_size` px, through the image loader's transform -> [3, S, S]."""
    return pp.image_to_tensor(Image.fromarray(tw.render_image(item, render_size)), cfg.image_size)


def video_tensor(item: tw.ToyItem, render_size: int, seconds: float, fps: int, cfg: EncoderConfig) -> Tensor:
    return pp.frames_to_tensor(tw.render_video(item, render_size, seconds, fps), fps, cfg)


def audio_tensor(item: tw.ToyItem, seconds: float, cfg: EncoderConfig) -> Tensor:
    sr = int(cfg.sample_rate)
    return pp.audio_to_tensor(torch.from_numpy(tw.render_audio(item, seconds, sr)), sr, cfg)


def encoder_input(item: tw.ToyItem, cfg) -> Tensor:
    """A toy item as the encoder's file loaders would hand it over (ImageBind's transforms)."""
    if item.modality == "image":
        return image_tensor(item, RENDER["size"], cfg)
    if item.modality == "video":
        return video_tensor(item, RENDER["size"], RENDER["seconds"], RENDER["fps"], cfg)
    return audio_tensor(item, RENDER["seconds"], cfg)


def for_decoder(item: tw.ToyItem, cfg) -> np.ndarray:
    """A toy item at its decoder's size: an image [H, W, 3], or a video [F, H, W, 3] at its fps."""
    if item.modality == "image":
        return tw.render_image(item, cfg.height)
    return tw.render_video(item, cfg.height, cfg.num_frames / cfg.fps, cfg.fps)[: cfg.num_frames]


def render(item: tw.ToyItem, seed: int):
    """The item drawn with `seed`'s noise and jitter: a PIL image, uint8 frames [F, H, W, 3], or a waveform."""
    item = dataclasses.replace(item, seed=seed)
    if item.modality == "image":
        return Image.fromarray(tw.render_image(item, RENDER["size"]))
    if item.modality == "video":
        return tw.render_video(item, RENDER["size"], RENDER["seconds"], RENDER["fps"])
    return tw.render_audio(item, RENDER["seconds"], RENDER["sample_rate"])
