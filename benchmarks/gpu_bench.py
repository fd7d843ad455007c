"""GPU benchmark at paper size with random weights (nothing is downloaded): one table with

* stage-3 training: tokens/s of a LoRA step through the LLM (forward + backward) plus the three
  output projectors, and model FLOPs utilisation (MFU) against the GPU's dense bf16 peak;
* peak memory of that step (`torch.cuda.max_memory_allocated`) next to `nextgpt_mini.scaling.memory`'s
  estimate for the same batch, and their ratio (how good the planner is);
* inference: LLM decoding tokens/s (KV cache), and each decoder's latency at the profile's
  settings: SD-1.5 512 x 512, Zeroscope 16 frames, AudioLDM 5 s (UNet steps with guidance, then
  the VAE, and the vocoder for audio), from conditioning tensors as the output projectors make them.

    python benchmarks/gpu_bench.py                      # paper profile, CUDA, bf16 (~3-4 minutes)
    python benchmarks/gpu_bench.py --profile tiny --device cpu --steps 2   # the code path, on a CPU

FLOPs of a training step: 2 N per token forward, 2 N backward for the activations' gradients
(frozen weights need no weight gradients), plus 6 N_lora for LoRA, N = LLM parameters; attention
adds 4 * layers * seq * hidden per token forward (x 2 backward). Record results, with the machine
and the date, in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time

import torch

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0, "T4": 65.0, "V100": 125.0}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _peak_tflops(device: str) -> float | None:
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def build_llm(profile, device: str, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    from nextgpt_mini.models.llm import FULL_SIZE_CONFIGS, apply_lora, tiny_llama_config

    cfg = profile.llm
    config = LlamaConfig(**FULL_SIZE_CONFIGS[cfg.name_or_path]) if cfg.name_or_path in FULL_SIZE_CONFIGS \
        else tiny_llama_config(cfg, cfg.vocab_size)
    with torch.device(device):
        llm = LlamaForCausalLM(config).to(dtype)  # random weights: throughput does not depend on them
    llm.requires_grad_(False)
    return apply_lora(llm, profile.lora)


def bench_training(profile, llm, device, dtype, batch: int, steps: int) -> dict:
    from nextgpt_mini.models.projectors import OutputProjector

    seq, hidden = profile.llm.max_length, profile.llm.hidden_size
    signals = {m: getattr(profile.signal_tokens, m) for m in ("image", "video", "audio")}
    projectors = {m: OutputProjector(hidden, getattr(profile, f"{m}_projector"), n).to(device, dtype) for m, n in signals.items()}
    trainable = [p for p in llm.parameters() if p.requires_grad] + [p for pr in projectors.values() for p in pr.parameters()]
    opt = torch.optim.AdamW(trainable, lr=1e-4)
    ids = torch.randint(0, profile.llm.vocab_size, (batch, seq), device=device)
    if hasattr(llm, "gradient_checkpointing_enable") and profile.train.gradient_checkpointing:
        llm.gradient_checkpointing_enable()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step():
        out = llm(input_ids=ids, labels=ids, output_hidden_states=True)
        h = out.hidden_states[-1]  # the last positions stand in for each modality's signal tokens
        loss = out.loss + sum(pr(h[:, -signals[m]:], h[:, -signals[m]:]).float().pow(2).mean() for m, pr in projectors.items())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = (time.perf_counter() - start) / steps
    n = sum(p.numel() for p in llm.parameters())
    n_lora = sum(p.numel() for p in llm.parameters() if p.requires_grad)
    L = profile.llm.num_layers
    flops_per_token = 4 * n + 6 * n_lora + 12 * L * seq * hidden
    tokens_per_s = batch * seq / seconds
    peak = _peak_tflops(device)
    return {"step_s": seconds, "tokens_per_s": tokens_per_s,
            "mfu": tokens_per_s * flops_per_token / (peak * 1e12) if peak else None,
            "peak_gb": torch.cuda.max_memory_allocated() / 1024**3 if device == "cuda" else None}


@torch.no_grad()
def bench_decoding(profile, llm, device, new_tokens: int) -> float:
    ids = torch.randint(0, profile.llm.vocab_size, (1, 128), device=device)
    llm.generate(ids, max_new_tokens=4, do_sample=False, min_new_tokens=4)
    _sync(device)
    start = time.perf_counter()
    llm.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    _sync(device)
    return new_tokens / (time.perf_counter() - start)


def build_decoder_parts(profile, modality: str, device: str, dtype: torch.dtype) -> dict:
    """The decoder's UNet, VAE (and vocoder) with random weights: from the package's configs at
    full size, or the tiny pipelines."""
    from nextgpt_mini.models.decoder_configs import FULL_SIZE_DECODERS
    from nextgpt_mini.tiny.pipelines import TINY_BUILDERS

    ref = getattr(profile, f"{modality}_decoder").name_or_path
    if ref == "tiny":
        pipe = TINY_BUILDERS[modality]()
        parts = {k: getattr(pipe, k) for k in ("unet", "vae", "vocoder") if getattr(pipe, k, None) is not None}
        return {k: v.to(device, dtype) for k, v in parts.items()}
    import diffusers
    import transformers

    parts = {}
    for name, (cls, cfg) in FULL_SIZE_DECODERS[ref].items():
        if name not in ("unet", "vae", "vocoder"):
            continue
        with torch.device(device):
            if cls == "SpeechT5HifiGan":
                parts[name] = transformers.SpeechT5HifiGan(transformers.SpeechT5HifiGanConfig(**cfg))
            else:
                parts[name] = getattr(diffusers, cls).from_config(cfg)
        parts[name] = parts[name].to(dtype).eval()
    return parts


@torch.no_grad()
def bench_decoder(profile, modality: str, device: str, dtype: torch.dtype, steps: int | None) -> float:
    from diffusers import DDIMScheduler

    d = getattr(profile, f"{modality}_decoder")
    parts = build_decoder_parts(profile, modality, device, dtype)
    unet, vae = parts["unet"], parts["vae"]
    steps = steps or d.steps
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if modality == "audio":
        # the vocoder's hop: 100 mel frames per second at 16 kHz; its mel bins set the width
        frames_mel = int(d.audio_seconds * 100) if d.audio_seconds else 100
        mel = parts["vocoder"].config.model_in_dim
        shape = (1, unet.config.in_channels, frames_mel // factor, mel // factor)
        cond = dict(encoder_hidden_states=None, class_labels=torch.randn(2, unet.config.projection_class_embeddings_input_dim or 32, device=device, dtype=dtype)) \
            if unet.config.class_embed_type else {}
    else:
        frames = (d.num_frames or 1,) if modality == "video" else ()
        shape = (1, unet.config.in_channels, *frames, d.height // factor, d.width // factor)
        width = unet.config.cross_attention_dim if isinstance(unet.config.cross_attention_dim, int) else unet.config.cross_attention_dim[0]
        cond = dict(encoder_hidden_states=torch.randn(2, 77, width, device=device, dtype=dtype))
    scheduler = DDIMScheduler()
    scheduler.set_timesteps(steps)
    latents = torch.randn(shape, device=device, dtype=dtype)
    _sync(device)
    start = time.perf_counter()
    for t in scheduler.timesteps:
        x = torch.cat([latents] * 2)
        noise = unet(x, t, **cond).sample
        uncond, text = noise.chunk(2)
        latents = scheduler.step(uncond + 7.5 * (text - uncond), t, latents).prev_sample
    if modality == "video":  # the VAE decodes every frame (as TextToVideoSDPipeline does)
        b, c, f, h, w = latents.shape
        image = vae.decode(latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)).sample
    else:
        image = vae.decode(latents).sample
    if "vocoder" in parts:
        parts["vocoder"](image.squeeze(1))
    _sync(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    from nextgpt_mini import load_profile
    from nextgpt_mini.scaling.memory import GB, plan

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="paper", choices=["tiny", "colab", "paper"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=None, help="per-device training batch (default: the profile's)")
    ap.add_argument("--steps", type=int, default=None, help="diffusion steps (default: the profile's) and training steps (5)")
    args = ap.parse_args(argv)
    profile = load_profile(args.profile)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    torch.manual_seed(0)
    start = time.perf_counter()
    llm = build_llm(profile, args.device, dtype)
    batch = args.batch or profile.train.batch_size
    train = bench_training(profile, llm, args.device, dtype, batch, steps=min(args.steps or 5, 5))
    estimate = plan(profile, stage="3", dtype="bf16", batch_size=batch).gpu_total / GB
    llm.eval()
    decode = bench_decoding(profile, llm, args.device, new_tokens=32 if args.profile == "tiny" else 64)
    del llm
    if args.device == "cuda":
        torch.cuda.empty_cache()
    latency = {m: bench_decoder(profile, m, args.device, dtype, args.steps) for m in ("image", "video", "audio")}
    device = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    rows = [("device", device), ("profile", f"{profile.name}, random weights, {str(dtype).split('.')[-1]}"),
            ("stage-3 step", f"{train['step_s']:.3f} s (batch {batch} x {profile.llm.max_length} tokens)"),
            ("stage-3 throughput", f"{train['tokens_per_s']:,.0f} tokens/s"),
            ("MFU", f"{100 * train['mfu']:.1f}%" if train["mfu"] else "n/a (unknown peak)"),
            ("peak memory, measured", f"{train['peak_gb']:.1f} GB" if train["peak_gb"] else "n/a (CPU)"),
            ("peak memory, planner", f"{estimate:.1f} GB" + (f" (measured / planned = {train['peak_gb'] / estimate:.2f})" if train["peak_gb"] else "")),
            ("LLM decoding", f"{decode:,.1f} tokens/s")]
    rows += [(f"{m} decoder", f"{s:.2f} s") for m, s in latency.items()]
    rows.append(("total time", f"{time.perf_counter() - start:.0f} s"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:{width}s}  {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
