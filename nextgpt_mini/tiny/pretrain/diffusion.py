"""Chapter 05: the one denoiser-training loop of the tiny decoders (image, video and audio UNets).

Each step: clean latents x0 of a random batch, a random timestep t, noise; the noised
x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise; the UNet, conditioned on the item's caption (or
on nothing for a `drop` share of the batch, the unconditional branch classifier-free guidance
needs), predicts the velocity v = sqrt(abar_t) noise - sqrt(1 - abar_t) x0. The schedule is the
sampler's (`tiny.decoders.trained_scheduler`): SD's betas rescaled to zero terminal SNR, so the
last training step is pure noise, as sampling starts (Lin et al., 2023); with SD's own schedule
a trace of the picture survives at t = 1000, the UNet learns to read its colour from it, and at
sampling time, from pure noise, it picks colours at random (measured: BUILD_RESULTS.md, History).
The x0-error is weighted by min(SNR + 1, gamma), a Min-SNR weighting (Hang et al., 2023) that
keeps weight on the pure-noise end, where the layout and colour are decided.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from nextgpt_mini.models.decoders import diffusers_classes
from nextgpt_mini.tiny.decoders import trained_scheduler
from nextgpt_mini.tiny.pretrain.loop import train_loop


def training_schedule():
    """The DDPM view of the sampler's schedule: `add_noise` and `get_velocity` at any t."""
    (DDPMScheduler,) = diffusers_classes("DDPMScheduler")
    return DDPMScheduler.from_config(trained_scheduler().config)


def velocity_weight(alpha_bar: torch.Tensor, gamma: float) -> torch.Tensor:
    """Weights of the v-loss that make it min(SNR + 1, gamma) x the x0-loss (v-error^2 = (SNR + 1) x0-error^2)."""
    snr_plus_one = 1 / (1 - alpha_bar).clamp(min=1e-8)
    return snr_plus_one.clamp(max=gamma) / snr_plus_one


def train_denoiser(unet, latents: torch.Tensor, conditions: torch.Tensor, condition_of: torch.Tensor,
                   predict: Callable, *, steps: int, batch: int, lr: float, drop: float, gamma: float, seed: int,
                   desc: str, progress: bool) -> list[dict]:
    """Train `unet` in place. `latents[i]` is item i's x0, `conditions[condition_of[i]]` its
    caption's conditioning, `conditions[-1]` the empty caption's; `predict(unet, x_t, t, cond)`
    calls the UNet as its pipeline does. Returns the per-step records."""
    schedule = training_schedule()
    g = torch.Generator().manual_seed(seed)
    empty = len(conditions) - 1

    def loss_fn():
        idx = torch.randint(len(latents), (batch,), generator=g)
        x0 = latents[idx]
        cond = condition_of[idx].clone()
        cond[torch.rand(batch, generator=g) < drop] = empty
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, schedule.config.num_train_timesteps, (batch,), generator=g)
        pred = predict(unet, schedule.add_noise(x0, noise, t), t, conditions[cond])
        error = ((pred - schedule.get_velocity(x0, noise, t)) ** 2).flatten(1).mean(1)
        return (velocity_weight(schedule.alphas_cumprod[t], gamma) * error).mean(), {}

    unet.train()
    history = train_loop(loss_fn, list(unet.named_parameters()), steps, lr, warmup=100, floor=0.1, grad_clip=1.0,
                         desc=desc, progress=progress)
    unet.eval().requires_grad_(False)
    return history
