"""Chapter 05: the tiny Zeroscope, a text-to-video UNet inflated from the tiny Stable Diffusion's.

ModelScope's text-to-video model (which Zeroscope fine-tunes) was made from Stable Diffusion: its
VAE is SD's, applied frame by frame; its text encoder is the CLIP tower SD conditions on; its
UNet3D is SD's UNet with a temporal convolution after every spatial ResNet and a temporal
attention after every spatial attention, all trained on video. The tiny one is made the same way
from the trained tiny image decoder (`image_decoder.py`; build that first):

1. **VAE**: the image decoder's, copied unchanged and frozen; the **text encoder**, a CLIP tower
   of the same shape trained against ImageBind's video embeddings (`decoder_text.py`);
2. **inflate**: every spatial weight of UNet3DConditionModel copied from the 2D UNet (1 x 1
   projections that are convolutions in 2D are linear layers in 3D), and the temporal layers'
   output projections set to zero, as AnimateDiff starts its motion modules: at step 0 the UNet3D
   draws each frame as the image UNet would without its caption-in-the-time-embedding path,
   which a test checks;
3. **train** the whole UNet3D on 4-frame, 32 x 32 toy videos with the image UNet's objective
   (`diffusion.py`), so that the temporal layers learn the motion the caption names.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from nextgpt_mini.tiny import reader
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.decoders import (
    decoder_state,
    load_trained_image_pipeline,
    trained_video_pipeline,
    trained_video_unet,
)
from nextgpt_mini.tiny.pipelines import tiny_clip_text
from nextgpt_mini.tiny.pretrain.decoder_text import caption_states, conditioning_report, pretrain_clip_text, report_line
from nextgpt_mini.tiny.pretrain.diffusion import train_denoiser
from nextgpt_mini.tiny.pretrain.image_decoder import SIZE, percent
from nextgpt_mini.tiny.pretrain.loop import refuse_quick_build_into_package
from nextgpt_mini.tiny.registry import IMAGE_DECODER_WEIGHTS, VIDEO_DECODER_WEIGHTS
from nextgpt_mini.utils import ASSETS, atomic_path, save_safetensors, torch_threads

FRAMES, FPS = 4, 4  # profiles.py: the tiny video decoder's num_frames and fps (one second)


@dataclasses.dataclass
class VideoDecoderSettings:
    text_steps: int = 400
    text_lr: float = 3e-3
    text_renders: int = 960  # about 5 per training caption
    renders: int = 3000
    unet_steps: int = 1500
    unet_batch: int = 8  # videos: 32 frames a step
    unet_lr: float = 1e-3
    drop_caption: float = 0.1
    gamma: float = 5.0
    eval_items: int = 96
    eval_steps: int = 20
    eval_guidance: float = 5.0
    seed: int = 0

    @classmethod
    def quick(cls) -> "VideoDecoderSettings":
        return cls(text_steps=10, text_renders=96, renders=64, unet_steps=3, eval_items=4, eval_steps=2)


def inflate(unet2d, unet3d) -> list[str]:
    """Copy `unet2d`'s weights into `unet3d` in place and zero the temporal layers' outputs;
    returns the UNet3D weights that had no 2D counterpart (the temporal layers). The image UNet's
    caption-in-the-time-embedding path (`add_embedding`) has no place in UNet3DConditionModel
    and is left behind: the video UNet reads its caption through cross-attention only."""
    source = {k: v for k, v in unet2d.state_dict().items() if not k.startswith("add_embedding.")}
    target = unet3d.state_dict()
    for name, value in source.items():
        if name not in target:
            raise ValueError(f"inflate: the UNet3D has no weight {name!r}; the two UNets' shapes differ")
        target[name] = value.reshape(target[name].shape)  # 1 x 1 convolution -> linear
    temporal = [n for n in target if n not in source]
    for name in temporal:
        if ".proj_out." in name or name.startswith("transformer_in.proj_out."):
            target[name] = torch.zeros_like(target[name])  # temporal attention adds nothing at first
    unet3d.load_state_dict(target)
    return temporal


def clips(items: list[tw.ToyItem]) -> torch.Tensor:
    """[N, F, 3, 32, 32] in [-1, 1]."""
    frames = np.stack([tw.render_video(it, SIZE, FRAMES / FPS, FPS) for it in items])
    return torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float() / 127.5 - 1


@torch.no_grad()
def video_latents(vae, videos: torch.Tensor) -> torch.Tensor:
    """[N, 4, F, 16, 16]: each frame through the image VAE, scaled, as TextToVideoSDPipeline's latents."""
    n, f = videos.shape[:2]
    flat = videos.flatten(0, 1)
    z = torch.cat([vae.encode(flat[i : i + 512]).latent_dist.mode() for i in range(0, len(flat), 512)])
    z = z * vae.config.scaling_factor
    return z.reshape(n, f, *z.shape[1:]).permute(0, 2, 1, 3, 4).contiguous()


@torch.no_grad()
def measure_animation(pipe, items: list[tw.ToyItem], steps: int, guidance: float, seed: int = 0) -> dict:
    """What the reader reads in videos drawn from `items`' own captions (the decoder's ceiling)."""
    start = time.perf_counter()
    videos = pipe([it.caption for it in items], num_inference_steps=steps, guidance_scale=guidance, height=SIZE,
                  width=SIZE, num_frames=FRAMES, output_type="np", generator=torch.Generator().manual_seed(seed)).frames
    seconds = (time.perf_counter() - start) / max(len(items), 1)
    readings = [reader.read_video((np.asarray(v) * 255).round().astype(np.uint8)) for v in videos]
    held = [k for k, it in enumerate(items) if it.obj.held_out]
    return {"all": reader.accuracy(readings, items), "seconds_per_video": seconds,
            "held_out_pairs": reader.accuracy([readings[k] for k in held], [items[k] for k in held])}


def train_video_decoder(image_pipe, settings: VideoDecoderSettings | None = None, progress: bool = True):
    """Inflate and train; returns (the TextToVideoSDPipeline, the measured numbers)."""
    settings = settings or VideoDecoderSettings()
    vae, tok = image_pipe.vae, image_pipe.tokenizer
    text = tiny_clip_text(len(tok), settings.seed + 3)
    numbers: dict = {"before": conditioning_report(text, tok, "video")}
    clock = time.perf_counter()
    history = pretrain_clip_text(text, tok, "video", settings.text_steps, settings.text_lr, settings.text_renders,
                                 seed=settings.seed, progress=progress)
    numbers["text_loss"] = (history[0]["loss"], history[-1]["loss"])
    numbers["after"], numbers["text_seconds"] = conditioning_report(text, tok, "video"), time.perf_counter() - clock
    unet = trained_video_unet()
    numbers["temporal_parameters"] = sum(unet.state_dict()[n].numel() for n in inflate(image_pipe.unet, unet))
    items = tw.sample_items("video", settings.renders, seed=settings.seed, split="train")
    latents = video_latents(vae, clips(items))
    captions = sorted({it.caption for it in items})
    with torch.no_grad():
        states = caption_states(text, tok, captions + [""])
    condition_of = torch.tensor([captions.index(it.caption) for it in items])
    clock = time.perf_counter()
    history = train_denoiser(unet, latents, states, condition_of,
                             lambda u, x, t, c: u(x, t, encoder_hidden_states=c).sample,
                             steps=settings.unet_steps, batch=settings.unet_batch, lr=settings.unet_lr,
                             drop=settings.drop_caption, gamma=settings.gamma, seed=settings.seed + 3,
                             desc="video UNet", progress=progress)
    losses = [h["loss"] for h in history]
    numbers["unet_loss"] = (float(np.mean(losses[:50])), float(np.mean(losses[-100:])))
    numbers["unet_seconds"] = time.perf_counter() - clock
    pipe = trained_video_pipeline(text, vae, unet, tok)
    test = tw.sample_items("video", settings.eval_items, seed=settings.seed + 1, split="test")
    numbers["animation"] = measure_animation(pipe, test, settings.eval_steps, settings.eval_guidance)
    numbers["parameters"] = sum(p.numel() for p in unet.parameters())
    return pipe, numbers


def result_lines(n: dict) -> list[str]:
    a = n["animation"]
    return [
        f"text encoder ({n['text_seconds']:.0f} s): loss {n['text_loss'][0]:.3f} -> {n['text_loss'][1]:.3f}; "
        + report_line(n["before"], n["after"]),
        f"UNet3D: {n['parameters']:,} parameters, {n['temporal_parameters']:,} of them temporal (inflated from the image UNet)",
        f"UNet3D ({n['unet_seconds']:.0f} s): loss {n['unet_loss'][0]:.3f} -> {n['unet_loss'][1]:.3f}",
        f"animated from held-out captions ({a['seconds_per_video'] * 1000:.0f} ms a {FRAMES}-frame video): "
        f"{percent(a['all'])}; held-out colour+shape pairs: {percent(a['held_out_pairs'])}",
    ]


def build_tiny_video_decoder(out: Path, quick: bool = False) -> tuple[list[Path], list[str]]:
    """`nextgpt-mini build-tiny video-decoder`: inflate the image decoder (from `out`, else the
    package), train, write `out/tiny_video_decoder.safetensors`."""
    out = Path(out)
    refuse_quick_build_into_package(out, quick)
    settings = VideoDecoderSettings.quick() if quick else VideoDecoderSettings()
    source = out / IMAGE_DECODER_WEIGHTS if (out / IMAGE_DECODER_WEIGHTS).is_file() else ASSETS / IMAGE_DECODER_WEIGHTS
    with torch_threads(2):
        pipe, numbers = train_video_decoder(load_trained_image_pipeline(source), settings)
    path = out / VIDEO_DECODER_WEIGHTS
    meta = {"build": json.dumps({"settings": dataclasses.asdict(settings),
                                 "scaling_factor": pipe.vae.config.scaling_factor}, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_safetensors(decoder_state(pipe), tmp, meta)
    return [path], [f"inflated from {source.name}"] + result_lines(numbers)
