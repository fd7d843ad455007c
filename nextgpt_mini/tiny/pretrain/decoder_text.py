"""Chapter 05: the CLIP text towers of the tiny Stable Diffusion and Zeroscope, pretrained on the toy world.

A diffusion decoder draws what its text encoder tells apart. SD's and Zeroscope's CLIP towers
arrive pretrained; a random tiny tower barely separates the position words, so pictures would
land anywhere (tiny-diffusion notes). Each tiny decoder's tower is trained CLIP-style: its pooled
caption state against the frozen tiny ImageBind's embeddings of rendered media of its modality
(symmetric InfoNCE, one render of every caption per batch, a linear head on the media side,
dropped after training), as the tiny CLAP is for sounds (`clap.py`). One tower trained on images
and videos together drew colours worse than the image-only one (BUILD_RESULTS.md, History).
The UNets cross-attend to a tower's per-token states, which `conditioning_report` measures: how
far apart the captions lie, and whether each attribute is linearly readable from them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nextgpt_mini.models.imagebind_weights import load_encoder
from nextgpt_mini.profiles import load_profile
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.data import toy_pairs
from nextgpt_mini.tiny.pipelines import TINY_TEXT_LENGTH
from nextgpt_mini.tiny.pretrain.loop import train_loop


def caption_ids(tokenizer, captions: list[str]):
    return tokenizer(captions, padding="max_length", max_length=TINY_TEXT_LENGTH, truncation=True, return_tensors="pt")


def caption_states(text, tokenizer, captions: list[str]) -> torch.Tensor:
    """[N, tokens, width]: the per-token states the UNet cross-attends to, computed as
    StableDiffusionPipeline computes them (no attention mask: CLIP's causal mask keeps the
    padding after the end token from changing the words' states)."""
    return text(caption_ids(tokenizer, captions).input_ids)[0]


def pretrain_clip_text(text, tokenizer, modality: str, steps: int, lr: float, renders: int, temperature: float = 0.07,
                       seed: int = 0, progress: bool = True) -> list[dict]:
    """Train `text` in place against ImageBind's embeddings of `renders` rendered `modality` media
    (about five per training caption). Returns the per-step records."""
    cfg = load_profile("tiny").encoder
    train = toy_pairs(modality, renders, "train", load_encoder(cfg).eval(), cfg, seed)
    captions = sorted(set(train.captions))
    ids = caption_ids(tokenizer, captions)
    owner = torch.tensor([captions.index(c) for c in train.captions])
    renders_of = [torch.nonzero(owner == k).flatten() for k in range(len(captions))]
    head = torch.nn.Linear(train.embeddings.shape[1], text.config.hidden_size)
    labels = torch.arange(len(captions))
    g = torch.Generator().manual_seed(seed)

    def loss_fn():
        pick = torch.stack([r[torch.randint(len(r), (1,), generator=g)] for r in renders_of]).flatten()
        pooled = F.normalize(text(input_ids=ids.input_ids, attention_mask=ids.attention_mask).pooler_output, dim=-1)
        logits = F.normalize(head(train.embeddings[pick]), dim=-1) @ pooled.T / temperature
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2, {}

    params = [*text.named_parameters(), *head.named_parameters()]
    text.train()
    history = train_loop(loss_fn, params, steps, lr, desc=f"{modality} CLIP text encoder", progress=progress)
    text.eval().requires_grad_(False)
    return history


def all_captions(modality: str) -> dict[str, tw.ToyItem]:
    """Every caption the world can say for `modality` (held-out pairs included), with an item."""
    return {it.caption: it for it in tw.sample_items(modality, 4000, seed=7, split="any")}


@torch.no_grad()
def conditioning_report(text, tokenizer, modality: str) -> dict[str, float]:
    """Over every caption of `modality`: the two closest conditionings (flattened per-token states)
    against the median distance, and a linear probe of each attribute from them (least squares onto
    one-hot columns, fitted on a seeded random half of the captions, read on the other half)."""
    bank = all_captions(modality)
    captions = sorted(bank)
    flat = caption_states(text, tokenizer, captions).flatten(1)
    d = torch.cdist(flat, flat)
    off = d[~torch.eye(len(captions), dtype=torch.bool)]
    out = {"captions": len(captions), "closest_pair": float(off.min()), "median_distance": float(off.median())}
    x = torch.cat([flat, torch.ones(len(flat), 1)], 1).double()
    # a random half, not every other caption: sorted captions alternate "quickly" / "slowly"
    order = torch.randperm(len(captions), generator=torch.Generator().manual_seed(0))
    fit, read = order[: len(order) // 2], order[len(order) // 2 :]
    for attribute in bank[captions[0]].attributes:
        values = sorted({bank[c].attributes[attribute] for c in captions})
        y = torch.tensor([values.index(bank[c].attributes[attribute]) for c in captions])
        w = torch.linalg.lstsq(x[fit], F.one_hot(y[fit], len(values)).double(), driver="gelsd").solution
        out[f"probe_{attribute}"] = float(((x[read] @ w).argmax(1) == y[read]).double().mean())
    return out


def report_line(before: dict, after: dict) -> str:
    probes = [k[len("probe_"):] for k in after if k.startswith("probe_")]
    return (f"closest two of {after['captions']} caption conditionings {before['closest_pair']:.2f} -> "
            f"{after['closest_pair']:.2f} apart (median {before['median_distance']:.2f} -> {after['median_distance']:.2f}); "
            "linear probe on held-out captions before -> after: "
            + ", ".join(f"{k} {100 * before[f'probe_{k}']:.0f}% -> {100 * after[f'probe_{k}']:.0f}%" for k in probes))
