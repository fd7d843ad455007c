"""Chapter 08: memory planner: will a profile fit a GPU, for inference or for a training stage, and if not,
what to switch. `nextgpt-mini memory --profile colab --stage 3 --gpu-gb 15`.

Everything is computed from shapes (parameter counts from the empty full-size builds of
`scaling.params`), never by loading weights. The model, stated so that a measurement can correct it:

* weights: parameters x bytes of their dtype. Only the LLM can be quantized (int8 / int4 through
  bitsandbytes), and only its decoder layers (the embedding and the LM head stay 16-bit); int4
  adds 1 byte of scales per 64 weights (NF4 with double quantisation).
* what trains (stage 1: input projector; 2: output projectors + signal rows; 3: those + LoRA):
  an fp32 master copy and AdamW's two moments, 12 bytes per parameter, and an fp32 gradient,
  4 bytes, except for the output projectors of the modalities a batch does not hold (a stage-2 or
  stage-3 batch holds one, so at most the largest projector has gradients; the trainer frees
  gradients after each step).
* LLM activations in training (every stage backpropagates through the LLM: the input projector
  sits below it and the signal rows feed it): per layer s*b*h*(34 + 5*a*s/h) bytes in 16-bit
  (Korthikanti et al., 2022), or, with gradient checkpointing, 2*s*b*h bytes per layer plus one
  layer's full activations; plus fp32 logits and their gradient, 8*s*b*V bytes.
* inference: the KV cache (2 * layers * s * h values in 16-bit; an upper bound for models with
  grouped-query attention such as TinyLlama, whose cache is 8x smaller) and one step's logits.
* frozen media models: in training, encoder embeddings and decoder targets are computed once and
  cached before training, so neither sits on the GPU while it trains; in inference the encoder
  stays on the GPU and the decoders take turns (`Decoders.only`), so the largest decoder counts.
* decoder working memory (rough; diffusers with PyTorch SDPA, no attention maps kept): the UNet's
  top-level feature maps, 2 (guidance) x frames x latent pixels x 320 channels x 2 bytes x 24
  tensors, and the VAE decoding one frame at a time (`decoders.load_pipeline` turns on the VAE's
  slicing), pixels x 128 channels x 2 bytes x 6.
* a CUDA context of about 0.5 GB.

CPU memory: the parts kept off the GPU (the other decoders in inference), in 16-bit.
"""

from __future__ import annotations

from dataclasses import dataclass

from nextgpt_mini.config import ProfileConfig
from nextgpt_mini.constants import MODALITIES, STAGES
from nextgpt_mini.profiles import load_profile
from nextgpt_mini.scaling.params import decoder_counts, full_size_table, output_projector_count
from nextgpt_mini.training.stages import STAGE_TRAINS

BYTES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0, "int4": 0.5 + 1 / 64}
GB = 1024**3
CUDA_CONTEXT = 0.5 * GB
TRAINABLE_BYTES = 16  # fp32 weight + fp32 gradient + AdamW m and v


@dataclass
class Item:
    component: str
    gpu: float  # bytes
    cpu: float = 0.0
    note: str = ""


@dataclass
class Plan:
    profile: str
    task: str  # "inference" or "stage N"
    dtype: str
    gpu_gb: float
    items: list[Item]

    @property
    def gpu_total(self) -> float:
        return sum(i.gpu for i in self.items)

    @property
    def cpu_total(self) -> float:
        return sum(i.cpu for i in self.items)

    @property
    def fits(self) -> bool:
        return self.gpu_total <= self.gpu_gb * GB

    def advice(self) -> list[str]:
        """What to switch when it does not fit (largest savings first)."""
        if self.fits:
            return []
        tips = []
        if self.dtype in ("fp32", "fp16", "bf16"):
            tips.append("load the LLM in 4 bits (--dtype int4; QLoRA, CUDA only)")
        if self.task != "inference":
            tips.append("turn on gradient checkpointing (train.gradient_checkpointing=true) and halve "
                        "train.batch_size while doubling train.grad_accum")
        else:
            tips.append("keep decoders on the CPU until they are needed (they take turns already) or use "
                        "the colab profile's smaller video/audio settings")
        return tips


def component_counts(profile: ProfileConfig) -> dict[str, int]:
    """Parameters per component at full size, from empty builds (no weights, no download);
    remembered per profile configuration, since a plan is often asked for several times."""
    key = profile.to_json()
    if key not in _COUNTS:
        counts = {r.module: r.total for r in full_size_table(profile, stage="3")}
        counts.update(decoder_counts(profile, loaded_only=True))  # the safety checker is never loaded
        _COUNTS[key] = counts
    return dict(_COUNTS[key])


_COUNTS: dict[str, dict[str, int]] = {}


def _llm_activations(profile: ProfileConfig, batch: int, checkpointing: bool) -> float:
    c = profile.llm
    s, h, a, L, V = c.max_length, c.hidden_size, c.num_heads, c.num_layers, c.vocab_size
    per_layer = s * batch * h * (34 + 5 * a * s / h)
    layers = L * 2 * s * batch * h + per_layer if checkpointing else L * per_layer
    return layers + 8 * s * batch * V


def _decoder_working(profile: ProfileConfig, modality: str) -> float:
    d = profile.decoder(modality)
    if modality == "audio":
        # AudioLDM: a mel spectrogram latent, 8 channels x (seconds * 100 / 4) x 16; small
        frames, h, w = 1, max(int(d.audio_seconds * 100), 1), 64
    else:
        frames, h, w = max(d.num_frames, 1), d.height, d.width
    unet = 2 * frames * (h // 8) * (w // 8) * 320 * 2 * 24
    vae = h * w * 128 * 2 * 6  # one frame: the VAE decodes in slices
    return float(unet + vae)


def plan(profile: ProfileConfig | str, stage: str | None = None, dtype: str | None = None, gpu_gb: float = 15.0,
         checkpointing: bool | None = None, batch_size: int | None = None) -> Plan:
    """The memory plan of `profile` for `stage` ("1", "2", "3") or inference (stage None). `dtype`
    of the LLM's weights: default what the profile loads (int4 / int8 with llm.load_in_bits, else fp16)."""
    profile = load_profile(profile) if isinstance(profile, str) else profile
    if dtype is None:
        dtype = {4: "int4", 8: "int8"}.get(profile.llm.load_in_bits, "fp16")
    if dtype not in BYTES:
        raise ValueError(f"--dtype {dtype!r}: expected one of {', '.join(BYTES)}")
    if stage is not None and stage not in STAGES:
        raise ValueError(f"--stage {stage!r}: expected 1, 2 or 3")
    if not gpu_gb > 0:
        raise ValueError(f"--gpu-gb {gpu_gb}: expected a positive size in GB")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"--batch-size {batch_size}: expected at least 1")
    counts = component_counts(profile)
    half = BYTES["fp16"]
    items = [Item("CUDA context", CUDA_CONTEXT)]
    if dtype in ("int8", "int4"):
        # bitsandbytes quantizes the decoder layers' Linears only: the embedding and the LM head stay 16-bit
        rows = 2 * profile.llm.vocab_size * profile.llm.hidden_size
        items.append(Item(f"LLM weights ({dtype})", (counts["LLM"] - rows) * BYTES[dtype] + rows * half,
                          note="quantized (bitsandbytes); embedding and LM head fp16"))
    else:
        items.append(Item(f"LLM weights ({dtype})", counts["LLM"] * BYTES[dtype]))
    if stage is None:
        items.append(Item("ImageBind (fp16)", counts["ImageBind"] * half))
        small = counts["input projector"] + counts["output projectors"] + counts["signal-token rows"] + counts["LoRA"]
        # what the stages train stays fp32 in the code (`utils.frozen_dtype`), at inference too
        items.append(Item("projectors, LoRA, signal rows (fp32)", small * BYTES["fp32"]))
        c = profile.llm
        items.append(Item("KV cache and logits", 2 * c.num_layers * c.max_length * c.hidden_size * half
                          + c.max_length * c.vocab_size * 4))
        sizes = {m: counts[f"{m} decoder"] * half for m in MODALITIES}
        biggest = max(sizes, key=lambda m: sizes[m] + _decoder_working(profile, m))
        items.append(Item(f"largest decoder on the GPU ({biggest})", sizes[biggest],
                          cpu=sum(v for m, v in sizes.items() if m != biggest), note="the others wait on the CPU"))
        items.append(Item(f"{biggest} decoder working memory", _decoder_working(profile, biggest), note="rough"))
        task = "inference"
    else:
        trains = STAGE_TRAINS[stage]
        group_rows = {"input_projector": "input projector", "output_projectors": "output projectors",
                      "signal_rows": "signal-token rows", "lora": "LoRA"}
        trained = sum(counts[group_rows[g]] for g in trains)
        items.append(Item("trained parameters (fp32 + AdamW)", trained * (TRAINABLE_BYTES - 4), note=", ".join(trains)))
        idle = 0  # output projectors a one-modality batch leaves without gradients
        if "output_projectors" in trains:
            idle = counts["output projectors"] - max(output_projector_count(profile, m) for m in MODALITIES)
        items.append(Item("their gradients (fp32)", (trained - idle) * 4,
                          note="one modality's output projector per batch" if idle else ""))
        untrained = sum(counts[r] for g, r in group_rows.items() if g not in trains and r != "LoRA")
        items.append(Item("other projectors (fp32)", untrained * BYTES["fp32"]))
        cfg = profile.train.for_stage(stage)
        ckpt = cfg.gradient_checkpointing if checkpointing is None else checkpointing
        batch = batch_size or cfg.batch_size
        items.append(Item(f"LLM activations (batch {batch}, {profile.llm.max_length} tokens"
                          f"{', checkpointing' if ckpt else ''})", _llm_activations(profile, batch, ckpt)))
        task = f"stage {stage}"
    return Plan(profile.name, task, dtype, gpu_gb, items)


def format_plan(p: Plan) -> str:
    lines = [f"memory plan: profile {p.profile}, {p.task}, LLM in {p.dtype}, GPU of {p.gpu_gb:g} GB",
             f"  {'component':52s} {'GPU GB':>8s} {'CPU GB':>8s}"]
    for i in p.items:
        note = f"  ({i.note})" if i.note else ""
        lines.append(f"  {i.component:52s} {i.gpu / GB:8.2f} {i.cpu / GB:8.2f}{note}")
    lines.append(f"  {'total':52s} {p.gpu_total / GB:8.2f} {p.cpu_total / GB:8.2f}")
    verdict = "fits" if p.fits else "does NOT fit"
    lines.append(f"{verdict}: {p.gpu_total / GB:.1f} GB of {p.gpu_gb:g} GB")
    lines += [f"  try: {tip}" for tip in p.advice()]
    return "\n".join(lines)
