"""Chapter 05: exercise checks for notebooks/05_diffusion_decoders.ipynb.

The checks: a tiny video's shape, the WAV's duration, a guided sampling loop written by hand.
Each `ex05_k(answer)` prints "ok", "not done yet" or what is still wrong (see `course.check`);
the solutions notebook runs the same checks and must print "ok".
"""

from __future__ import annotations

import torch

from nextgpt_mini.course import check
from nextgpt_mini.profiles import load_profile


def ex05_1(shape) -> None:
    """Shape of one tiny video: (frames, height, width, 3)."""

    def test(value):
        cfg = load_profile("tiny").video_decoder
        assert tuple(value) == (cfg.num_frames, cfg.height, cfg.width, 3), f"{tuple(value)} is not the shape of a clip"

    check("05.1", shape, test)


def ex05_2(seconds) -> None:
    """Duration of the tiny audio decoder's WAV, read back from disk."""

    def test(value):
        expected = load_profile("tiny").audio_decoder.audio_seconds
        assert abs(float(value) - expected) < 1e-3, f"{value} s; the profile asks for {expected} s"

    check("05.2", seconds, test)


STEPS_05_3, GUIDANCE_05_3 = 4, 5.0


def ex05_3(latents, decoders) -> None:
    """Latents after a 4-step guided DDIM loop written by hand, compared with the pipeline's own."""

    def test(value):
        image = decoders["image"]
        cfg = image.cfg
        image.pipe.set_progress_bar_config(disable=True)
        out = image.pipe(prompt_embeds=image.targets(["a big red circle on the left"]),
                         negative_prompt_embeds=image.negative()[None], num_inference_steps=STEPS_05_3,
                         guidance_scale=GUIDANCE_05_3,
                         height=cfg.height, width=cfg.width, generator=torch.Generator().manual_seed(0),
                         output_type="latent")
        expected = out.images
        value = torch.as_tensor(value)
        assert value.shape == expected.shape, f"shape {tuple(value.shape)}, the pipeline's latents are {tuple(expected.shape)}"
        torch.testing.assert_close(value.float(), expected.float(), atol=1e-4, rtol=1e-4)

    check("05.3", latents, test)
