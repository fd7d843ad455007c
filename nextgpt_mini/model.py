"""`NextGPT`: one object holding the trained bridges and the frozen models they connect.

So far (chapters 01-03): the encoder, the input projector and the LLM with signal tokens, and the
stage-1 loss. The output projectors, decoders and generation are added by chapters 04-07.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nextgpt_mini.config import ProfileConfig, load_profile
from nextgpt_mini.llm import SignalTokens, add_signal_tokens, load_llm, new_row_parameters
from nextgpt_mini.projectors import InputProjector
from nextgpt_mini.prompts import embed_with_media


class NextGPT(nn.Module):
    def __init__(self, profile: ProfileConfig, llm, tokenizer, signal: SignalTokens, encoder=None):
        super().__init__()
        self.profile = profile
        self.llm = llm
        self.tokenizer = tokenizer
        self.signal = signal
        self.input_projector = InputProjector(profile.encoder.out_embed_dim, profile.llm.hidden_size)
        # The encoder is frozen and only ever used under no_grad; keeping it outside the module
        # tree keeps it out of state dicts, optimizers and DDP.
        self._encoder = encoder

    @classmethod
    def from_profile(cls, profile: ProfileConfig | str = "tiny", with_encoder: bool = False, seed: int | None = None) -> "NextGPT":
        """Load the frozen parts of a profile and build fresh projectors (seeded)."""
        profile = load_profile(profile) if isinstance(profile, str) else profile
        llm, tokenizer = load_llm(profile.llm)
        signal = add_signal_tokens(llm, tokenizer, profile.signal_tokens)
        torch.manual_seed(profile.seed if seed is None else seed)
        encoder = None
        if with_encoder:
            from nextgpt_mini.encoders.imagebind import load_encoder

            encoder = load_encoder(profile.encoder)
        model = cls(profile, llm, tokenizer, signal, encoder)
        model.requires_grad_(False)
        return model.eval()

    @property
    def encoder(self):
        if self._encoder is None:
            from nextgpt_mini.encoders.imagebind import load_encoder

            self._encoder = load_encoder(self.profile.encoder)
        return self._encoder

    def load_trained(self, checkpoint) -> list[str]:
        """Load trained weights from a trainer checkpoint folder (or its trainable.safetensors).

        Every tensor in the file must match a parameter of this model in name and shape: a
        checkpoint from another profile fails here with the first mismatch named.
        """
        from pathlib import Path

        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(checkpoint)
        if path.is_dir():
            path = path / "checkpoint" / "trainable.safetensors" if (path / "checkpoint").is_dir() else path / "trainable.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"{checkpoint}: no trained weights (expected {path})")
        try:
            weights = load_file(path)
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
        own = dict(self.named_parameters())
        for name, tensor in weights.items():
            if name not in own:
                raise ValueError(f"{path}: {name!r} is not a parameter of this model (another profile or stage?)")
            if own[name].shape != tensor.shape:
                raise ValueError(f"{path}: {name} has shape {tuple(tensor.shape)}, this model expects {tuple(own[name].shape)} (another profile?)")
        with torch.no_grad():
            for name, tensor in weights.items():
                own[name].copy_(tensor)
        return sorted(weights)

    # ---------------------------------------------------------------- training interface
    def trainable_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {
            "input_projector": list(self.input_projector.parameters()),
            "signal_rows": new_row_parameters(self.llm),
        }
        lora = [p for n, p in self.llm.named_parameters() if "lora_" in n]
        if lora:
            groups["lora"] = lora
        return groups

    def soft_tokens(self, media: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """Project each example's media embeddings [n_i, D] to soft tokens [n_i, hidden]."""
        like = next(self.input_projector.parameters())  # dtype and device of whatever the projector holds
        return [None if m is None or len(m) == 0 else self.input_projector(m.to(like)) for m in media]

    def llm_forward(self, batch: dict[str, Any], **kwargs):
        embeds = embed_with_media(self.llm.get_input_embeddings(), batch["input_ids"], self.soft_tokens(batch.get("media") or [None] * len(batch["input_ids"])))
        return self.llm(inputs_embeds=embeds, attention_mask=batch["attention_mask"], **kwargs)

    def stage_loss(self, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
        """Stage 1: next-token NLL of the answer (caption) given the soft token."""
        if stage != "1":
            raise NotImplementedError(f"stage {stage} arrives with chapters 04 (stage 2) and 06 (stage 3)")
        out = self.llm_forward(batch, labels=batch["labels"])
        return {"loss": out.loss, "nll": out.loss.detach()}

    def per_example_nll(self, batch: dict[str, Any]) -> torch.Tensor:
        """Mean NLL of each example's answer tokens: [B]. Padding-independent by construction."""
        logits = self.llm_forward(batch).logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
        mask = (labels != -100).float()
        return (nll * mask).sum(1) / mask.sum(1).clamp(min=1)
