"""Chapter 05: exercise checks for notebooks/05_diffusion_decoders.ipynb.

The checks: where the schedule's SNR crosses 1, x0 from a v-prediction (a component), a guided sampling loop written by hand.
Each `ex05_k(answer)` prints "ok", "not done yet" or what is still wrong (see `course.check`);
the solutions notebook runs the same checks and must print "ok".
"""

from __future__ import annotations

import torch

from nextgpt_mini.course import check


def ex05_1(t, scheduler) -> None:
    """The first timestep at which the scheduler's signal-to-noise ratio abar / (1 - abar) is below 1."""

    def test(value):
        abar = scheduler.alphas_cumprod.double()
        snr = abar / (1 - abar)
        expected = int((snr < 1).nonzero()[0])
        assert int(value) != expected - 1, f"at t = {int(value)} the SNR is {float(snr[int(value)]):.3f}, still >= 1"
        assert int(value) == expected, f"at t = {int(value)} the SNR is {float(snr[int(value)]):.3f}; look for the first t below 1"

    check("05.1", t, test)


def ex05_2(to_x0) -> None:
    """to_x0(x_t, v, abar) -> the clean picture x0 from a v-prediction (the tiny decoders predict v)."""

    def test(fn):
        g = torch.Generator().manual_seed(5)
        x0, eps = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
        abar = torch.tensor([0.9, 0.5, 0.05]).view(3, 1, 1, 1)
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
        v = abar.sqrt() * eps - (1 - abar).sqrt() * x0
        got = fn(x_t, v, abar)
        if got is None:
            raise NotImplementedError
        got = torch.as_tensor(got)
        as_if_eps = (x_t - (1 - abar).sqrt() * v) / abar.sqrt()
        assert not torch.allclose(got, as_if_eps, atol=1e-4), "that treats v as the noise: v mixes noise and picture"
        torch.testing.assert_close(got, x0, atol=1e-4, rtol=1e-4)

    def answered(f) -> bool:
        try:
            return f(torch.zeros(1), torch.zeros(1), torch.full((1,), 0.5)) is not None
        except Exception:  # noqa: BLE001 - a bug is reported by the test itself
            return True

    check("05.2", to_x0 if callable(to_x0) and answered(to_x0) else None, test)


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
