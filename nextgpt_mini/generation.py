"""Chapter 07: any-to-any generation: prompt (+ media) -> text, and images / videos / sounds where the LLM asks.

The loop, as `NextGPT.generate` runs it:

1. encode input media with ImageBind; the input projector makes one soft token per item;
2. the LLM answers (greedy, or sampled with temperature / top-p) until the template's stop string;
3. runs of signal tokens in the answer decide the output modalities. A run cut short (the model
   wrote [IMG0][IMG1] and stopped) is *completed* to the full run, where the original code
   asserted and crashed; at most `max_per_modality` runs per modality are kept;
4. one teacher-forced pass over prompt + (completed) answer recomputes the hidden states at the
   signal tokens exactly as training produced them (during sampling they were computed on a
   different, incomplete prefix); the output projectors map them to conditioning;
5. the frozen decoders generate from that conditioning.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nextgpt_mini.constants import MODALITIES
from nextgpt_mini.encode import encode
from nextgpt_mini.models.decoders import Decoders
from nextgpt_mini.models.signal_tokens import complete_runs
from nextgpt_mini.processing import modality_of
from nextgpt_mini.prompts import STOP, collate, dialogue_segments, embed_with_media, tokenize_segments
from nextgpt_mini.utils import atomic_write_text


@dataclass
class GenerationResult:
    text: str  # the answer without signal tokens
    images: list = field(default_factory=list)  # PIL images
    videos: list = field(default_factory=list)  # uint8 arrays [F, H, W, 3]
    audios: list = field(default_factory=list)  # float waveforms
    outputs: list[dict] = field(default_factory=list)  # per generated item: modality, index, text before it
    token_ids: list[int] = field(default_factory=list)  # the answer as generated (before completion)
    completed: list[str] = field(default_factory=list)  # modalities whose signal run had to be completed
    conditioning: dict = field(default_factory=dict)  # modality -> what the output projector gave the decoder
    forced: list[str] = field(default_factory=list)  # modalities appended by `require` (the LLM did not ask)
    history: list[dict] = field(default_factory=list)  # the conversation so far, for the next call
    seconds: dict = field(default_factory=dict)  # wall time: "llm" (reply + teacher-forced pass), each decoder

    def media(self, modality: str) -> list:
        return {"image": self.images, "video": self.videos, "audio": self.audios}[modality]


def _media_inputs(model, media) -> list[dict]:
    """Paths or (modality, embedding) pairs -> [{"modality", "embedding"}] (embeddings unit-norm)."""
    items = []
    paths = [m for m in media if isinstance(m, (str, os.PathLike))]
    embedded = encode([str(p) for p in paths], encoder=model.encoder, cfg=model.profile.encoder, progress=False) if paths else []
    found = iter(embedded)
    for m in media:
        if isinstance(m, (str, os.PathLike)):
            items.append({"modality": modality_of(m), "embedding": next(found)})
        elif isinstance(m, tuple) and len(m) == 2 and m[0] in MODALITIES:
            embedding = torch.as_tensor(m[1]).float().reshape(-1)
            if not torch.isfinite(embedding).all():
                raise ValueError(f"media item ({m[0]!r}, embedding): the embedding contains NaN or infinite values")
            if embedding.numel() != model.profile.encoder.out_embed_dim:
                raise ValueError(f"media item ({m[0]!r}, embedding): {embedding.numel()} values, expected one "
                                 f"{model.profile.encoder.out_embed_dim}-d encoder embedding")
            items.append({"modality": m[0], "embedding": embedding})
        else:
            raise ValueError(f"media item {m!r}: expected a file path or a (modality, embedding) pair")
    return items


def prompt_example(model, turns: list[dict]):
    """The conversation so far as the LLM reads it: (tokenized example, media embeddings in order)."""
    p = model.profile
    segments = dialogue_segments(turns, p.llm.template, model.signal.tokens, model.tokenizer)
    ex = tokenize_segments(segments, model.tokenizer, p.llm.max_length, signal_ids=model.signal.ids)
    media = [m["embedding"] for t in turns if t["role"] == "user" for m in t.get("media", [])]
    return ex, media


@torch.no_grad()
def greedy_tokens(llm, tokenizer, embeds: torch.Tensor, attention_mask: torch.Tensor | None = None, max_new_tokens: int = 64,
                  stop: bool = True, temperature: float = 0.0, top_p: float = 1.0) -> torch.Tensor:
    """The LLM's continuation of input embeddings [B, T, H]: the new tokens [B, new].

    The one decoding loop of the package: generation, the stages' evaluations, the toy suite and
    the tiny LLM's build all read replies through it. Greedy unless `temperature` > 0. With
    `stop`, a row ends at the template's stop string (several tokens in some tokenizers, hence a
    string, not an id); `</s>` ends it too."""
    sample = temperature > 0
    until = {"stop_strings": [STOP], "tokenizer": tokenizer} if stop else {}
    return llm.generate(
        inputs_embeds=embeds, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
        do_sample=sample, temperature=temperature if sample else None, top_p=top_p if sample else None,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **until,
    )


def reply_ids(model, batch: dict, soft: list, max_new_tokens: int, stop: bool = True, temperature: float = 0.0,
              top_p: float = 1.0) -> torch.Tensor:
    """`greedy_tokens` for a tokenized batch of a NextGPT whose media slots take `soft` tokens: [B, new]."""
    embeds = embed_with_media(model.llm.get_input_embeddings(), batch["input_ids"], soft)
    return greedy_tokens(model.llm, model.tokenizer, embeds, batch["attention_mask"], max_new_tokens, stop,
                         temperature, top_p)


def decoder_on(decoders, modality: str, device: torch.device):
    """The decoder for `modality`, on the model's device: on a GPU alone there (`Decoders.only`
    moves the other two to the CPU, so one 16-bit pipeline at a time shares a T4 with the LLM)."""
    if device.type == "cpu" or not hasattr(decoders, "only"):
        return decoders[modality]
    return decoders.only(modality, device)


def cut_at_stop(ids: list[int], tokenizer) -> list[int]:
    """The reply's tokens that lie wholly before the stop string ("\n###" may span several tokens)."""
    for k in range(len(ids)):
        text = tokenizer.decode(ids[: k + 1])
        if STOP in text:
            start = text.index(STOP)
            j = k
            while j > 0 and len(tokenizer.decode(ids[:j])) > start:
                j -= 1
            return ids[:j]
    return ids


@torch.no_grad()
def generate(model, prompt: str, media: list | None = None, history: list[dict] | None = None, decoders=None,
             max_new_tokens: int | None = None, temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
             max_per_modality: int = 1, steps: int | None = None, guidance_scale: float | None = None,
             progress: bool = False, require: str | None = None, decode: bool = True) -> GenerationResult:
    """See the module docstring. `history` is a previous result's `.history` (multi-turn chat).

    `require`: a modality whose signal run is appended when the answer has none, so the output
    projector and decoder run even when the LLM did not ask for them. For evaluating the
    generation path apart from the decision to generate (which signal-token accuracy measures).
    `decode=False` stops at the conditioning (`result.conditioning`): no decoder runs."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt: expected a non-empty string")
    if require is not None and require not in model.signal.ids:
        raise ValueError(f"require: expected one of {sorted(model.signal.ids)}, got {require!r}")
    turns = [dict(t) for t in (history or [])]
    turns.append({"role": "user", "text": prompt.strip(), "media": _media_inputs(model, media or [])})
    ex, media_emb = prompt_example(model, turns)
    if len(ex.media_positions) != len(media_emb):
        raise ValueError(f"the conversation is longer than the LLM's {model.profile.llm.max_length} tokens: "
                         "start a new one (history=None) or shorten the prompt")
    device = model.device
    started = time.perf_counter()
    batch = model.on_device(collate([ex], model.tokenizer.pad_token_id))
    soft = model.soft_tokens([torch.stack(media_emb) if media_emb else None])
    torch.manual_seed(seed)
    ids = reply_ids(model, batch, soft, max_new_tokens or 64, temperature=temperature, top_p=top_p)[0].tolist()
    raw = cut_at_stop([i for i in ids if i != model.tokenizer.eos_token_id], model.tokenizer)
    forced = [require] if require is not None and not set(raw) & set(model.signal.ids[require]) else []
    answer, runs, completed = complete_runs(raw + [i for m in forced for i in model.signal.ids[m]],
                                            model.signal.ids, max_per_modality)

    # teacher-forced pass: the states at the signal tokens, where training put them
    full = torch.tensor([ex.input_ids + answer], device=device)
    soft_full = embed_with_media(model.llm.get_input_embeddings(), full, soft)
    spans = [[(m, len(ex.input_ids) + s, len(ex.input_ids) + e) for m, s, e in runs]]
    hidden = model.llm(inputs_embeds=soft_full, output_hidden_states=True).hidden_states[-1] if runs else None
    projected = model.project_signals(hidden, soft_full, spans) if runs else {}

    signal = set(model.signal.all_ids())
    text = model.tokenizer.decode([i for i in answer if i not in signal], skip_special_tokens=True).strip()
    result = GenerationResult(text=text, token_ids=raw, completed=completed, forced=forced,
                              conditioning={m: cond for m, (cond, _) in projected.items()},
                              seconds={"llm": time.perf_counter() - started})
    if runs and decode:
        decoders = decoders or Decoders(model.profile)
        for m, (cond, index) in projected.items():
            started = time.perf_counter()
            made = decoder_on(decoders, m, device).generate(cond.float(), seed=seed, steps=steps, guidance_scale=guidance_scale, progress=progress)
            result.seconds[m] = time.perf_counter() - started
            for (_, k), item in zip(index, made):
                start = runs[k][1]
                before = model.tokenizer.decode([i for i in answer[:start] if i not in signal],
                                                skip_special_tokens=True).strip()
                result.media(m).append(item)
                result.outputs.append({"modality": m, "index": len(result.media(m)) - 1, "text_before": before})
    reply = {"role": "assistant", "text": text}
    result.history = turns + [reply]
    return result


def save_result(result: GenerationResult, out_dir: str | os.PathLike, decoders, stem: str = "output") -> dict[str, Any]:
    """Write the answer (text file) and every generated item (PNG / MP4 / WAV); returns the paths."""
    out = Path(out_dir)
    atomic_write_text(out / f"{stem}.txt", result.text + "\n")
    paths: dict[str, Any] = {"text": out / f"{stem}.txt"}
    ext = {"image": "png", "video": "mp4", "audio": "wav"}
    for m in MODALITIES:
        paths[m] = [decoders[m].save(item, out / f"{stem}_{m}{k}.{ext[m]}") for k, item in enumerate(result.media(m))]
    return paths


def summarize(result: GenerationResult) -> str:
    parts = [result.text]
    for o in result.outputs:
        parts.append(f"[{o['modality']} {o['index']}]")
    if result.completed:
        parts.append(f"(completed signal runs: {', '.join(result.completed)})")
    return " ".join(parts)


