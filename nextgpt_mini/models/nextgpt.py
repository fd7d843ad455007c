"""Chapters 01-07: `NextGPT`, one object holding the trained bridges and the frozen models they connect.

Chapters 01-03: the encoder, the input projector and the LLM with signal tokens, and the stage-1
loss. Chapter 04: the output projectors and the alignment loss of stages 2 and 3 (the decoders
themselves live in `models/decoders.py`: they are frozen and never part of this module's state).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from nextgpt_mini.checkpoints import newest_checkpoint
from nextgpt_mini.config import ProfileConfig
from nextgpt_mini.constants import CHECKPOINT, FROZEN_ROWS, MODALITIES, STAGES
from nextgpt_mini.losses import distance, per_example_nll
from nextgpt_mini.models.imagebind_weights import load_encoder
from nextgpt_mini.models.llm import apply_lora, load_llm
from nextgpt_mini.models.projectors import InputProjector, OutputProjector
from nextgpt_mini.models.signal_tokens import SignalTokens, add_signal_tokens, new_row_parameters
from nextgpt_mini.profiles import load_profile
from nextgpt_mini.prompts import embed_with_media
from nextgpt_mini.utils import asset_path, atomic_folder, save_safetensors


class NextGPT(nn.Module):
    def __init__(self, profile: ProfileConfig, llm, tokenizer, signal: SignalTokens, encoder=None):
        super().__init__()
        self.profile = profile
        self.llm = llm
        self.tokenizer = tokenizer
        self.signal = signal
        self.input_projector = InputProjector(profile.encoder.out_embed_dim, profile.llm.hidden_size)
        self.output_projectors = nn.ModuleDict({
            m: OutputProjector(profile.llm.hidden_size, profile.projector(m), getattr(profile.signal_tokens, m))
            for m in MODALITIES
        })
        # The encoder is frozen and only ever used under no_grad; keeping it outside the module
        # tree keeps it out of state dicts, optimizers and DDP. The same for the decoders, which
        # only the optional denoising loss needs during training.
        self._encoder = encoder
        self.decoders = None  # a Decoders object (not a module): never saved, never trained

    @classmethod
    def from_profile(cls, profile: ProfileConfig | str = "tiny", with_encoder: bool = False, seed: int | None = None,
                     dtype: torch.dtype | None = None) -> "NextGPT":
        """Load the frozen parts of a profile and build fresh projectors (seeded). Frozen parts in
        `dtype` (default `utils.frozen_dtype()`); projectors and signal rows in fp32."""
        profile = load_profile(profile) if isinstance(profile, str) else profile
        llm, tokenizer = load_llm(profile.llm, dtype=dtype)
        signal = add_signal_tokens(llm, tokenizer, profile.signal_tokens, legacy=profile.llm.template == "legacy")
        torch.manual_seed(profile.seed if seed is None else seed)
        encoder = None
        if with_encoder:
            encoder = load_encoder(profile.encoder, dtype=dtype)
        model = cls(profile, llm, tokenizer, signal, encoder)
        model.requires_grad_(False)
        return model.eval()

    @property
    def encoder(self):
        if self._encoder is None:
            self._encoder = load_encoder(self.profile.encoder)
        return self._encoder

    def load_trained(self, checkpoint) -> list[str]:
        """Load trained weights from a trainer checkpoint folder (or its trainable.safetensors).

        Every tensor in the file must match a parameter of this model in name and shape: a
        checkpoint from another profile fails here with the first mismatch named.
        """
        path = trained_weights_file(checkpoint)
        weights = read_safetensors(path)
        if any("lora_" in name for name in weights):
            self.enable_lora()  # a stage-3 checkpoint: the adapters must exist to receive it
        return copy_checked(path, weights, dict(self.named_parameters()), "a parameter",
                            " (another profile or stage?)", " (another profile?)")

    # ---------------------------------------------------------------- the whole system
    def generate(self, prompt: str, media: list | None = None, **kwargs):
        """Text, and images / videos / sounds where the LLM asks for them (see `generation.generate`)."""
        from nextgpt_mini.generation import generate

        return generate(self, prompt, media, **kwargs)

    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what the stages train: projectors, signal-token rows and (if on) LoRA."""
        names = {id(p): n for n, p in self.named_parameters()}
        return {names[id(p)]: p.detach().cpu().contiguous()
                for group in self.trainable_groups().values() for p in group}

    def save_pretrained(self, folder) -> Path:
        """`folder/config.json` (the profile, naming the frozen base models) + `trained.safetensors`.

        Megabytes, not gigabytes: the encoder, LLM and decoders are loaded from their own sources.
        Written to a temporary folder and swapped in, so an existing save is never half-replaced.
        """
        config = {"format": "nextgpt-mini", "version": 1, "lora": any("lora_" in n for n, _ in self.llm.named_parameters()),
                  "profile": self.profile.to_dict()}
        with atomic_folder(folder) as tmp:
            (tmp / "config.json").write_text(json.dumps(config, indent=2))
            save_safetensors(self.trained_state_dict(), tmp / "trained.safetensors", sync=True)
        folder = Path(folder)
        return folder

    @classmethod
    def from_pretrained(cls, folder) -> "NextGPT":
        """A system saved by `save_pretrained`: its profile's frozen parts plus the trained weights.
        `folder` may be "package:tiny_system", the trained tiny system shipped with the package."""
        folder = asset_path(folder) if str(folder).startswith("package:") else Path(folder)
        config, profile = read_saved_config(folder)
        model = cls.from_profile(profile)
        if config.get("lora"):
            model.enable_lora()
        model.load_trained(folder / "trained.safetensors")
        if (folder / FROZEN_ROWS).is_file():
            model.load_frozen_rows(folder / FROZEN_ROWS)
        return model

    def load_frozen_rows(self, path) -> list[str]:
        """Replace the frozen LLM's own vocabulary rows (the `old_rows` buffers of the embedding and
        the LM head) with a file's: NExT-GPT's released checkpoint trained them, unlike our stages
        (`models/import_nextgpt.py`). Names and shapes must match, as in `load_trained`."""
        own = {n: b for n, b in self.named_buffers() if n.endswith(".old_rows")}
        return copy_checked(path, read_safetensors(path), own, "a frozen vocabulary matrix")

    def enable_lora(self) -> bool:
        """Wrap the LLM with the profile's LoRA adapters (peft), once; True if it did so now.

        Stages 1 and 2 run without them; stage 3 switches them on (the adapters start as a no-op:
        peft initialises B = 0, so the LLM's outputs are unchanged until they train).
        """
        if any("lora_" in n for n, _ in self.llm.named_parameters()):
            return False
        self.llm = apply_lora(self.llm, self.profile.lora)
        return True

    def enable_gradient_checkpointing(self) -> None:
        """Keep only each LLM layer's input for the backward pass and recompute the rest there
        (`train.gradient_checkpointing`, which the colab profile sets and the memory planner
        counts): every stage backpropagates through the frozen LLM. Non-reentrant, so gradients
        reach the soft tokens and signal rows below a frozen layer."""
        self.llm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})

    # ---------------------------------------------------------------- training interface
    def trainable_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {
            "input_projector": list(self.input_projector.parameters()),
            "signal_rows": new_row_parameters(self.llm),
            "output_projectors": list(self.output_projectors.parameters()),
        }
        lora = [p for n, p in self.llm.named_parameters() if "lora_" in n]
        if lora:
            groups["lora"] = lora
        return groups

    def soft_tokens(self, media: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """Project each example's media embeddings [n_i, D] to soft tokens [n_i, hidden]."""
        like = next(self.input_projector.parameters())  # dtype and device of whatever the projector holds
        return [None if m is None or len(m) == 0 else self.input_projector(m.to(like)) for m in media]

    @property
    def device(self) -> torch.device:
        return next(self.input_projector.parameters()).device  # whatever module the projector holds

    def on_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def embed(self, batch: dict[str, Any]) -> torch.Tensor:
        """Input embeddings of a batch: token embeddings with soft tokens in the media slots."""
        media = batch.get("media") or [None] * len(batch["input_ids"])
        return embed_with_media(self.llm.get_input_embeddings(), batch["input_ids"].to(self.device), self.soft_tokens(media))

    def llm_forward(self, batch: dict[str, Any], embeds: torch.Tensor | None = None, **kwargs):
        batch = self.on_device(batch)
        embeds = self.embed(batch) if embeds is None else embeds
        kwargs.setdefault("use_cache", False)  # a training or scoring pass: no decoding follows it
        return self.llm(inputs_embeds=embeds, attention_mask=batch["attention_mask"], **kwargs)

    def project_signals(self, hidden: torch.Tensor, embeds: torch.Tensor, spans: list[list[tuple[str, int, int]]]):
        """Run each modality's output projector on the states at its signal-token spans.

        hidden, embeds: [B, T, H] (last-layer hidden states; input embeddings). spans[b]: the
        (modality, start, end) runs of example b. Returns {modality: (conditioning [K, ...],
        [(b, k), ...])}, k indexing spans[b]. Runs cut short (truncation) are skipped.
        """
        rows = defaultdict(list)
        for b, example_spans in enumerate(spans):
            for k, (m, start, end) in enumerate(example_spans):
                if end - start == len(self.signal.ids[m]):
                    rows[m].append((b, k, start, end))
        out = {}
        for m, found in rows.items():
            dtype = next(self.output_projectors[m].parameters()).dtype  # fp32, the LLM's states may be 16-bit
            h = torch.stack([hidden[b, s:e] for b, _, s, e in found]).to(dtype)
            x = torch.stack([embeds[b, s:e] for b, _, s, e in found]).to(dtype)
            out[m] = (self.output_projectors[m](h, x), [(b, k) for b, k, _, _ in found])
        return out

    def alignment(self, projected, targets: list[list[torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Distance between projected conditioning and each span's decoder target, per modality."""
        out = {}
        for m, (pred, index) in projected.items():
            target = torch.stack([targets[b][k] for b, k in index]).to(pred.device, pred.dtype)
            out[m] = distance(pred, target, self.profile.train.distance).mean()
        return out

    def forward(self, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
        """`stage_loss`, as the module's forward: DistributedDataParallel synchronises gradients
        only for a backward that follows a call through its own forward."""
        return self.stage_loss(batch, stage)

    def stage_loss(self, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
        """NLL of the answer; in stages 2 and 3 plus the weighted alignment distance at signal spans.

        Stage 1: captioning from soft tokens. Stage 2: "<caption> [IMG0]..[IMG3]" answers, the
        signal states projected towards the decoder's text-encoder output for the caption.
        Stage 3: dialogues, both at once.
        """
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}: expected 1, 2 or 3")
        batch = self.on_device(batch)
        align = stage in ("2", "3") and any(batch.get("signal_spans") or [])
        embeds = self.embed(batch)
        out = self.llm_forward(batch, embeds=embeds, labels=batch["labels"], output_hidden_states=align)
        result = {"loss": out.loss, "nll": out.loss.detach()}
        if align:
            projected = self.project_signals(out.hidden_states[-1], embeds, batch["signal_spans"])
            cfg = self.profile.train
            for m, d in self.alignment(projected, batch["signal_targets"]).items():
                weight = cfg.video_alignment_scale if m == "video" else cfg.alignment_scale
                result["loss"] = result["loss"] + weight * d
                result[f"{m}_distance"] = d.detach()
            if cfg.denoising_loss and batch.get("signal_latents") is not None:
                for m, d in self.denoising(projected, batch["signal_latents"], cfg.snr_gamma).items():
                    result["loss"] = result["loss"] + cfg.denoising_loss * d
                    result[f"{m}_denoising"] = d.detach()
        return result

    def denoising(self, projected, latents: list[torch.Tensor | None], snr_gamma: float) -> dict[str, torch.Tensor]:
        """The frozen decoders' denoising loss on the projected conditioning, where media latents exist."""
        if self.decoders is None:
            raise ValueError("the denoising loss needs the decoders: model.decoders = Decoders(profile)")
        out = {}
        for m, (pred, index) in projected.items():
            rows = [(i, latents[b]) for i, (b, _) in enumerate(index) if latents[b] is not None]
            if rows:
                lat = torch.stack([x for _, x in rows])
                out[m] = self.decoders[m].denoising_loss(pred[[i for i, _ in rows]], lat, snr_gamma).mean()
        return out

    def per_example_nll(self, batch: dict[str, Any]) -> torch.Tensor:
        """Mean NLL of each example's answer tokens: [B]. Padding-independent by construction."""
        batch = self.on_device(batch)
        return per_example_nll(self.llm_forward(batch).logits, batch["labels"])


def read_saved_config(folder) -> tuple[dict, ProfileConfig]:
    """A saved system folder's config.json (`NextGPT.save_pretrained`, `nextgpt-mini import-nextgpt`)
    and the profile it records; one-line errors for a missing or damaged file."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json (expected a folder written by NextGPT.save_pretrained "
                                "or nextgpt-mini import-nextgpt)")
    try:
        config = json.loads(path.read_text())
        return config, ProfileConfig.from_dict(config["profile"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a nextgpt-mini config ({type(err).__name__}: {err})") from None


def read_safetensors(path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None


def copy_checked(path, tensors: dict[str, torch.Tensor], own: dict[str, torch.Tensor], kind: str,
                 missing_hint: str = "", shape_hint: str = "") -> list[str]:
    """Copy a file's tensors into this model's (`own`: name -> tensor), after checking every name
    and shape, so that a file of another profile changes nothing and names its first mismatch."""
    for name, tensor in tensors.items():
        if name not in own:
            raise ValueError(f"{path}: {name!r} is not {kind} of this model{missing_hint}")
        if own[name].shape != tensor.shape:
            raise ValueError(f"{path}: {name} has shape {tuple(tensor.shape)}, this model expects "
                             f"{tuple(own[name].shape)}{shape_hint}")
    with torch.no_grad():
        for name, tensor in tensors.items():
            own[name].copy_(tensor)
    return sorted(tensors)


def trained_weights_file(checkpoint) -> Path:
    """Where the trained weights of `checkpoint` are: a `save_pretrained` folder's
    trained.safetensors, a `train` output folder's checkpoint/trainable.safetensors (or, for a run
    killed before its end, its newest periodic checkpoint's), a trainer checkpoint folder's
    trainable.safetensors, or the file itself."""
    path = Path(checkpoint)
    if path.is_dir() and (path / "trained.safetensors").is_file():
        path = path / "trained.safetensors"
    elif path.is_dir() and (path / CHECKPOINT).is_dir():
        path = path / CHECKPOINT / "trainable.safetensors"
    elif path.is_dir():
        path = (newest_checkpoint(path) or path) / "trainable.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{checkpoint}: no trained weights (expected {path})")
    return path


def load_system(checkpoint=None, profile: ProfileConfig | str | None = None, same_profile: bool = False) -> NextGPT:
    """The one checkpoint resolver, for every command that runs a system.

    `checkpoint`: None or "untrained" (the profile's system as built), "package:tiny_system", a
    folder written by `save_pretrained`, a `nextgpt-mini demo` output folder (its checkpoint/), or
    a `nextgpt-mini train` output folder / trainer checkpoint / weights file (weights only: loaded
    into `profile`, default tiny). `same_profile`: refuse a saved system of another profile."""
    p = profile if isinstance(profile, ProfileConfig) else None

    def base() -> ProfileConfig:
        return p or load_profile(profile or "tiny")

    if checkpoint is None or checkpoint == "untrained":
        return NextGPT.from_profile(base())
    if str(checkpoint).startswith("package:"):
        model = NextGPT.from_pretrained(checkpoint)
    else:
        folder = Path(checkpoint)
        if (folder / CHECKPOINT / "config.json").is_file():
            folder = folder / CHECKPOINT  # a `nextgpt-mini demo` output folder
        if not folder.exists():
            raise FileNotFoundError(f"{checkpoint}: no such checkpoint folder (expected one written by save_pretrained, "
                                    "`nextgpt-mini demo` or `nextgpt-mini train`, or 'untrained', or 'package:tiny_system')")
        if (folder / "config.json").is_file():
            model = NextGPT.from_pretrained(folder)
        else:
            model = NextGPT.from_profile(base())
            model.load_trained(folder)
    if same_profile and profile is not None and model.profile.name != base().name:
        raise ValueError(f"{checkpoint}: a {model.profile.name!r} system, but a {base().name!r} one is wanted here")
    return model
