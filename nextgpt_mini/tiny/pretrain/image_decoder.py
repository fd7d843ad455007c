"""Chapter 05: the tiny Stable Diffusion, trained on the toy world so that it really draws its conditioning.

NExT-GPT's image decoder is a frozen, pretrained Stable Diffusion. The tiny profile's stand-in is
trained here, in the order SD's own parts were made, each part frozen before the next is trained:

1. the **text encoder** (SD's CLIP text tower), CLIP-style against the frozen tiny ImageBind
   (`decoder_text.py`): this is what makes every attribute word move the per-token states the
   UNet reads;
2. the **VAE** (AutoencoderKL): 32 x 32 pictures <-> 16 x 16 x 4 latents, L1 + MSE reconstruction
   with a small KL term, as SD's autoencoder (without its perceptual and adversarial losses);
3. the **UNet** (UNet2DConditionModel on 16 x 16 latents, cross-attention at 8 x 8 and 4 x 4 only:
   full-resolution attention is what makes CPU training slow), with the objective of
   `diffusion.py` (velocity prediction on a zero-terminal-SNR schedule, Min-SNR weights), the
   caption dropped to "" 10% of the time so that classifier-free guidance has an unconditional branch.

The numbers each build measured (how far apart the captions' conditionings are, what the toy-world
reader reads in the VAE's reconstructions and in pictures drawn from held-out captions) go to
`assets/BUILD_RESULTS.md`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nextgpt_mini.tiny import reader
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.decoders import decoder_state, trained_image_components, trained_image_pipeline
from nextgpt_mini.tiny.pipelines import tiny_decoder_tokenizer
from nextgpt_mini.tiny.pretrain.decoder_text import caption_states, conditioning_report, pretrain_clip_text, report_line
from nextgpt_mini.tiny.pretrain.diffusion import train_denoiser
from nextgpt_mini.tiny.pretrain.loop import refuse_quick_build_into_package, train_loop
from nextgpt_mini.tiny.registry import IMAGE_DECODER_WEIGHTS
from nextgpt_mini.utils import atomic_path, save_safetensors, torch_threads

SIZE = 32  # the tiny image decoder's pictures (profiles.py: image_decoder height/width)


@dataclasses.dataclass
class ImageDecoderSettings:
    text_steps: int = 400
    text_lr: float = 3e-3
    text_renders: int = 1440  # about 5 per training caption
    temperature: float = 0.07
    renders: int = 6000  # training pictures for the VAE and the UNet
    vae_steps: int = 1500
    vae_batch: int = 32
    vae_lr: float = 3e-3
    unet_steps: int = 1500
    unet_batch: int = 64
    unet_lr: float = 2e-3
    drop_caption: float = 0.1
    gamma: float = 5.0  # Min-SNR weighting of the UNet's loss (diffusion.py)
    eval_items: int = 192
    eval_steps: int = 20
    eval_guidance: float = 5.0
    seed: int = 0

    @classmethod
    def quick(cls) -> "ImageDecoderSettings":
        return cls(text_steps=10, text_renders=144, renders=256, vae_steps=5, unet_steps=5, eval_items=8, eval_steps=2)


def pictures(items: list[tw.ToyItem]) -> torch.Tensor:
    """[N, 3, 32, 32] in [-1, 1], as the VAE reads pictures."""
    return torch.from_numpy(np.stack([tw.render_image(it, SIZE) for it in items])).permute(0, 3, 1, 2).float() / 127.5 - 1


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def train_vae(vae, images: torch.Tensor, settings, progress: bool, seed_offset: int = 1,
              desc: str = "image VAE") -> list[dict]:
    """Step 2: reconstruction (L1 + MSE) + 1e-6 KL on random batches of `images` [N, C, H, W] (also
    the audio decoder's spectrograms); `settings` gives vae_steps, vae_batch, vae_lr and seed."""
    g = torch.Generator().manual_seed(settings.seed + seed_offset)

    def loss_fn():
        x = images[torch.randint(len(images), (settings.vae_batch,), generator=g)]
        posterior = vae.encode(x).latent_dist
        rec = vae.decode(posterior.sample(generator=g)).sample
        mse = F.mse_loss(rec, x)
        return F.l1_loss(rec, x) + mse + 1e-6 * posterior.kl().mean(), {"mse": mse}

    vae.train()
    history = train_loop(loss_fn, list(vae.named_parameters()), settings.vae_steps, settings.vae_lr, warmup=50,
                         floor=0.05, desc=desc, progress=progress)
    vae.eval().requires_grad_(False)
    return history


@torch.no_grad()
def measure_drawing(pipe, items: list[tw.ToyItem], steps: int, guidance: float, seed: int = 0) -> dict:
    """What the reader reads in pictures drawn from `items`' own captions (the decoder's ceiling)."""
    start = time.perf_counter()
    images = pipe([it.caption for it in items], num_inference_steps=steps, guidance_scale=guidance, height=SIZE,
                  width=SIZE, output_type="np", generator=torch.Generator().manual_seed(seed)).images
    seconds = (time.perf_counter() - start) / max(len(items), 1)
    readings = [reader.read_image((a * 255).round().astype(np.uint8)) for a in images]
    held = [k for k, it in enumerate(items) if it.obj.held_out]
    return {"all": reader.accuracy(readings, items), "seconds_per_image": seconds,
            "held_out_pairs": reader.accuracy([readings[k] for k in held], [items[k] for k in held])}


def train_image_decoder(settings: ImageDecoderSettings | None = None, progress: bool = True):
    """All three steps; returns (the pipeline, the measured numbers)."""
    settings = settings or ImageDecoderSettings()
    tok = tiny_decoder_tokenizer()
    text, vae, unet = trained_image_components(len(tok), settings.seed)
    numbers: dict = {"before": conditioning_report(text, tok, "image")}
    clock = time.perf_counter()
    history = pretrain_clip_text(text, tok, "image", settings.text_steps, settings.text_lr, settings.text_renders,
                                 settings.temperature, settings.seed, progress)
    numbers["text_loss"] = (history[0]["loss"], history[-1]["loss"])
    numbers["after"] = conditioning_report(text, tok, "image")
    numbers["text_seconds"] = time.perf_counter() - clock

    items = tw.sample_items("image", settings.renders, seed=settings.seed, split="train")
    images = pictures(items)
    clock = time.perf_counter()
    numbers["vae_mse"] = [h["mse"] for h in train_vae(vae, images, settings, progress)[:: max(settings.vae_steps - 1, 1)]]
    numbers["vae_seconds"] = time.perf_counter() - clock
    with torch.no_grad():
        latents = torch.cat([vae.encode(images[i : i + 500]).latent_dist.mode() for i in range(0, len(images), 500)])
        scale = float(1 / latents.std())
        vae.register_to_config(scaling_factor=scale)  # SD's 0.18215, measured for this VAE
        test = tw.sample_items("image", settings.eval_items, seed=settings.seed + 1, split="test")
        rec = vae.decode(vae.encode(pictures(test)).latent_dist.mode()).sample
        numbers["vae_reconstruction"] = reader.accuracy([reader.read_image(a) for a in to_uint8(rec)], test)
        captions = sorted({it.caption for it in items})
        states = caption_states(text, tok, captions + [""])
    caption_of = torch.tensor([captions.index(it.caption) for it in items])
    clock = time.perf_counter()
    history = train_denoiser(unet, latents * scale, states, caption_of,
                             lambda u, x, t, c: u(x, t, encoder_hidden_states=c).sample,
                             steps=settings.unet_steps, batch=settings.unet_batch, lr=settings.unet_lr,
                             drop=settings.drop_caption, gamma=settings.gamma, seed=settings.seed + 2,
                             desc="image UNet", progress=progress)
    losses = [h["loss"] for h in history]
    numbers["unet_loss"] = (float(np.mean(losses[:50])), float(np.mean(losses[-100:])))
    numbers["unet_seconds"] = time.perf_counter() - clock
    pipe = trained_image_pipeline(text, vae, unet, tok)
    numbers["drawing"] = measure_drawing(pipe, test, settings.eval_steps, settings.eval_guidance)
    numbers["parameters"] = {name: sum(p.numel() for p in m.parameters()) for name, m in
                             (("text encoder", text), ("VAE", vae), ("UNet", unet))}
    return pipe, numbers


def percent(acc: dict[str, float]) -> str:
    return ", ".join(f"{k} {100 * v:.0f}%" for k, v in acc.items())


def result_lines(n: dict) -> list[str]:
    d = n["drawing"]
    return [
        "parameters: " + ", ".join(f"{k} {v:,}" for k, v in n["parameters"].items()),
        f"text encoder ({n['text_seconds']:.0f} s): loss {n['text_loss'][0]:.3f} -> {n['text_loss'][-1]:.3f}; "
        + report_line(n["before"], n["after"]),
        f"VAE ({n['vae_seconds']:.0f} s): reconstruction MSE {n['vae_mse'][0]:.4f} -> {n['vae_mse'][-1]:.4f}; the reader on "
        f"reconstructed held-out pictures: {percent(n['vae_reconstruction'])}",
        f"UNet ({n['unet_seconds']:.0f} s): loss {n['unet_loss'][0]:.3f} -> {n['unet_loss'][1]:.3f}",
        f"drawn from held-out captions ({d['seconds_per_image'] * 1000:.0f} ms a picture): {percent(d['all'])}; "
        f"held-out colour+shape pairs: {percent(d['held_out_pairs'])}",
    ]


def build_tiny_image_decoder(out: Path, quick: bool = False) -> tuple[list[Path], list[str]]:
    """`nextgpt-mini build-tiny image-decoder`: train, write `out/tiny_image_decoder.safetensors`."""
    out = Path(out)
    refuse_quick_build_into_package(out, quick)
    settings = ImageDecoderSettings.quick() if quick else ImageDecoderSettings()
    with torch_threads(2):  # both cores: 0.7x one thread's time for the VAE
        pipe, numbers = train_image_decoder(settings)
    path = out / IMAGE_DECODER_WEIGHTS
    meta = {"build": json.dumps({"settings": dataclasses.asdict(settings),
                                 "scaling_factor": pipe.vae.config.scaling_factor}, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_safetensors(decoder_state(pipe), tmp, meta)
    return [path], result_lines(numbers)
