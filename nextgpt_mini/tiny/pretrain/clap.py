"""Chapter 04: the tiny AudioLDM's text encoder, pretrained CLAP-style on the toy world's sounds.

AudioLDM conditions on one vector: CLAP's embedding of the caption, from a text encoder trained
contrastively against an audio encoder. Training gives that space two properties stage 2 relies on:
different sounds get clearly different vectors, and each attribute (pitch, pattern, noise) moves
the vector in a consistent direction; a random CLAP text encoder puts sound captions so close that
no output projector can tell them apart (the numbers: `assets/BUILD_RESULTS.md`, section clap). The
image and video decoders condition on CLIP's per-token states, which keep each word apart even at
random init, so they stay random.

The text tower learns against the frozen tiny ImageBind's embeddings of rendered sounds (the audio
tower is ImageBind plus a linear head, dropped after training), with CLAP's symmetric InfoNCE; each
batch holds one render of every caption, so no caption is its own negative.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from nextgpt_mini.models.imagebind_weights import load_encoder
from nextgpt_mini.profiles import load_profile
from nextgpt_mini.tiny.data import toy_pairs
from nextgpt_mini.tiny.pipelines import TINY_TEXT_LENGTH, tiny_clap_text_model, tiny_decoder_tokenizer
from nextgpt_mini.tiny.pretrain.loop import refuse_quick_build_into_package, train_loop
from nextgpt_mini.tiny.registry import BUILT_BY, CLAP_TEXT_WEIGHTS
from nextgpt_mini.tiny.toy_decoder import all_items
from nextgpt_mini.utils import atomic_path, torch_threads


@dataclasses.dataclass
class ClapPretrainSettings:
    steps: int = 500
    lr: float = 3e-3
    temperature: float = 0.07  # CLAP's initial temperature
    train_renders: int = 576  # 16 per caption on average
    test_renders: int = 144
    seed: int = 0

    @classmethod
    def quick(cls) -> "ClapPretrainSettings":
        return cls(steps=20, train_renders=72, test_renders=36)


def caption_targets(text_model, tokenizer, captions: list[str]) -> torch.Tensor:
    """Unit CLAP text vectors, as AudioLDM's pipeline computes them."""
    ids = tokenizer(captions, padding="max_length", max_length=TINY_TEXT_LENGTH, truncation=True, return_tensors="pt")
    return F.normalize(text_model(input_ids=ids.input_ids, attention_mask=ids.attention_mask).text_embeds, dim=-1)


@torch.no_grad()
def target_report(text_model, tokenizer, captions: list[str]) -> dict[str, float]:
    """How usable the targets are: the closest two captions, and how much of the variation an
    additive model of the attributes explains (R^2; 1 = each attribute a fixed direction)."""
    text_model.eval()
    t = caption_targets(text_model, tokenizer, captions)
    d = torch.cdist(t, t)[~torch.eye(len(captions), dtype=torch.bool)]
    bank = all_items("audio")
    items = [bank[c] for c in captions]
    columns = []
    for attribute in ("pitch", "sound", "noise"):
        values = sorted({it.attributes[attribute] for it in items})
        columns.append(torch.tensor([[float(it.attributes[attribute] == v) for v in values] for it in items]))
    x, y = torch.cat(columns, 1).double(), (t - t.mean(0)).double()
    fit = x @ torch.linalg.pinv(x) @ y  # the one-hot columns are collinear: pinv, not a full-rank solver
    return {"closest_pair": float(d.min()), "median_distance": float(d.median()),
            "additive_r2": float(1 - ((fit - y) ** 2).sum() / (y**2).sum())}


def pretrain_clap_text(settings: ClapPretrainSettings | None = None, progress: bool = True):
    """Train the tiny CLAP text encoder; return (text model, report of numbers before and after)."""
    settings = settings or ClapPretrainSettings()
    with torch_threads(1):  # bit-reproducible on a given CPU (see utils.torch_threads)
        cfg = load_profile("tiny").encoder
        encoder = load_encoder(cfg).eval()
        # rendered toy sounds and their unit embeddings, as stage 1 reads them
        train = toy_pairs("audio", settings.train_renders, "train", encoder, cfg, settings.seed)
        test = toy_pairs("audio", settings.test_renders, "test", encoder, cfg, settings.seed)
        captions = sorted(set(train.captions))
        tok = tiny_decoder_tokenizer()
        torch.manual_seed(settings.seed)
        text = tiny_clap_text_model(len(tok))
        head = torch.nn.Linear(train.embeddings.shape[1], text.config.projection_dim)
        report = {"before": target_report(text, tok, captions)}
        owner = torch.tensor([captions.index(c) for c in train.captions])
        renders_of = [torch.nonzero(owner == k).flatten() for k in range(len(captions))]
        g = torch.Generator().manual_seed(settings.seed)
        labels = torch.arange(len(captions))

        def loss_fn() -> tuple[torch.Tensor, dict]:
            pick = torch.stack([r[torch.randint(len(r), (1,), generator=g)] for r in renders_of]).flatten()
            logits = F.normalize(head(train.embeddings[pick]), dim=-1) @ caption_targets(text, tok, captions).T
            logits = logits / settings.temperature
            return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2, {}

        text.train()
        params = [*text.named_parameters(), *head.named_parameters()]
        history = train_loop(loss_fn, params, settings.steps, settings.lr, desc="CLAP text encoder", progress=progress)
        report["after"] = target_report(text, tok, captions)
        with torch.no_grad():
            sims = F.normalize(head(test.embeddings), dim=-1) @ caption_targets(text, tok, captions).T
        right = torch.tensor([captions.index(c) if c in captions else -1 for c in test.captions])
        report["heldout_audio_to_text"] = float((sims.argmax(1) == right).float().mean())
        report["loss"] = (history[0]["loss"], history[-1]["loss"])
    return text, report


def build_tiny_clap_text(out: Path, quick: bool = False) -> tuple[list[Path], list[str]]:
    """`nextgpt-mini build-tiny clap`: pretrain, write `out/tiny_clap_text.safetensors`; returns
    (files, the measured numbers as lines)."""
    out = Path(out)
    refuse_quick_build_into_package(out, quick)
    settings = ClapPretrainSettings.quick() if quick else ClapPretrainSettings()
    start = time.perf_counter()
    text, report = pretrain_clap_text(settings)
    lines = []
    for when in ("before", "after"):
        r = report[when]
        lines.append(f"{when:6s} training: closest two sound captions {r['closest_pair']:.3f} apart (median "
                     f"{r['median_distance']:.3f}); attributes explain {100 * r['additive_r2']:.0f}% of the variation")
    lines.append(f"loss {report['loss'][0]:.3f} -> {report['loss'][1]:.3f}; held-out sounds -> their caption: "
                 f"{100 * report['heldout_audio_to_text']:.1f}% (chance {100 / 36:.1f}%); {time.perf_counter() - start:.0f} s")
    path = out / CLAP_TEXT_WEIGHTS
    with atomic_path(path) as tmp:
        # one metadata entry: safetensors writes several in a random order, so the bytes (and the
        # manifest's hash) would change from build to build
        meta = json.dumps({"built_by": BUILT_BY[CLAP_TEXT_WEIGHTS], **dataclasses.asdict(settings)}, sort_keys=True)
        save_file({k: v.contiguous() for k, v in text.state_dict().items()}, str(tmp), metadata={"build": meta})
    return [path], lines
