"""The tiny AudioLDM's text encoder, pretrained CLAP-style on the toy world's sounds.

AudioLDM conditions on one vector: CLAP's embedding of the caption, from a text encoder trained
contrastively against an audio encoder. Training gives that space two properties stage 2 relies on:
different sounds get clearly different vectors, and each attribute (pitch, pattern, noise) moves
the vector in a consistent direction. A randomly initialised CLAP text encoder has neither
(measured on the 36 sound captions with the random encoder this package used before: "a low ..."
and "a middle ..." steady tones 0.03 apart, attributes explaining 61% of the variation), and no
output projector learned to hit its targets: stage 2 found the right sound for 35% of captions,
and after stage 3 T->A requests got the asked sound 0-7% of the time, about chance (2.8%).
Pretrained (`nextgpt-mini build-tiny clap`, 25 s): the closest two captions 0.80 apart, 93%
explained, held-out sounds matched to their caption 100% of the time. The image and video
decoders condition on CLIP's per-token states, which keep each word apart even at random init, so
they stay random.

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

WEIGHTS_FILE = "tiny_clap_text.safetensors"


@dataclasses.dataclass
class ClapSettings:
    steps: int = 500
    lr: float = 3e-3
    temperature: float = 0.07  # CLAP's initial temperature
    train_renders: int = 576  # 16 per caption on average
    test_renders: int = 144
    seed: int = 0

    @classmethod
    def quick(cls) -> "ClapSettings":
        return cls(steps=20, train_renders=72, test_renders=36)


def caption_targets(text_model, tokenizer, captions: list[str]) -> torch.Tensor:
    """Unit CLAP text vectors, as AudioLDM's pipeline computes them."""
    from nextgpt_mini.tiny.pipelines import TINY_TEXT_LENGTH

    ids = tokenizer(captions, padding="max_length", max_length=TINY_TEXT_LENGTH, truncation=True, return_tensors="pt")
    return F.normalize(text_model(input_ids=ids.input_ids, attention_mask=ids.attention_mask).text_embeds, dim=-1)


@torch.no_grad()
def target_report(text_model, tokenizer, captions: list[str]) -> dict[str, float]:
    """How usable the targets are: the closest two captions, and how much of the variation an
    additive model of the attributes explains (R^2; 1 = each attribute a fixed direction)."""
    from nextgpt_mini.tiny.toy_decoder import all_items

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


def pretrain_clap_text(settings: ClapSettings | None = None, progress: bool = True):
    """Train the tiny CLAP text encoder; return (text model, report of numbers before and after)."""
    from tqdm.auto import tqdm

    from nextgpt_mini.models.imagebind_weights import load_encoder
    from nextgpt_mini.profiles import load_profile
    from nextgpt_mini.tiny.pipelines import tiny_clap_text_model, tiny_decoder_tokenizer
    from nextgpt_mini.training.stage1 import toy_pairs
    from nextgpt_mini.utils import torch_threads

    settings = settings or ClapSettings()
    with torch_threads(1):  # bit-reproducible on a given CPU, and faster than two threads here
        cfg = load_profile("tiny").encoder
        encoder = load_encoder(cfg).eval()
        # rendered toy sounds and their unit embeddings, as stage 1 reads them
        train = toy_pairs("audio", settings.train_renders, "train", encoder, cfg, settings.seed)
        test = toy_pairs("audio", settings.test_renders, "test", encoder, cfg, settings.seed)
        train_captions, train_audio = train.captions, train.embeddings
        test_captions, test_audio = test.captions, test.embeddings
        captions = sorted(set(train_captions))
        tok = tiny_decoder_tokenizer()
        torch.manual_seed(settings.seed)
        text = tiny_clap_text_model(len(tok))
        head = torch.nn.Linear(train_audio.shape[1], text.config.projection_dim)
        report = {"before": target_report(text, tok, captions)}
        owner = torch.tensor([captions.index(c) for c in train_captions])
        renders_of = [torch.nonzero(owner == k).flatten() for k in range(len(captions))]
        opt = torch.optim.AdamW([*text.parameters(), *head.parameters()], lr=settings.lr, weight_decay=0.0)
        g = torch.Generator().manual_seed(settings.seed)
        labels, losses = torch.arange(len(captions)), []
        text.train()
        for _ in tqdm(range(settings.steps), desc="CLAP text encoder", disable=not progress):
            pick = torch.stack([r[torch.randint(len(r), (1,), generator=g)] for r in renders_of]).flatten()
            logits = F.normalize(head(train_audio[pick]), dim=-1) @ caption_targets(text, tok, captions).T
            logits = logits / settings.temperature
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        text.eval()
        report["after"] = target_report(text, tok, captions)
        with torch.no_grad():
            sims = F.normalize(head(test_audio), dim=-1) @ caption_targets(text, tok, captions).T
        right = torch.tensor([captions.index(c) if c in captions else -1 for c in test_captions])
        report["heldout_audio_to_text"] = float((sims.argmax(1) == right).float().mean())
        report["loss"] = (losses[0], losses[-1])
    return text, report


def build_tiny_clap_text(out: Path, quick: bool = False) -> list[Path]:
    """`nextgpt-mini build-tiny clap`: pretrain, print the numbers, write `out/tiny_clap_text.safetensors`."""
    from safetensors.torch import save_file

    from nextgpt_mini.utils import ASSETS, atomic_path

    out = Path(out)
    if quick and out.resolve() == ASSETS.resolve():
        raise ValueError("a quick build makes throwaway weights; give it --out DIR instead of the package folder")
    settings = ClapSettings.quick() if quick else ClapSettings()
    start = time.perf_counter()
    text, report = pretrain_clap_text(settings)
    for when in ("before", "after"):
        r = report[when]
        print(f"{when:6s} training: closest two sound captions {r['closest_pair']:.3f} apart (median "
              f"{r['median_distance']:.3f}); attributes explain {100 * r['additive_r2']:.0f}% of the variation")
    print(f"loss {report['loss'][0]:.3f} -> {report['loss'][1]:.3f}; held-out sounds -> their caption: "
          f"{100 * report['heldout_audio_to_text']:.1f}% (chance {100 / 36:.1f}%); {time.perf_counter() - start:.0f} s")
    path = out / WEIGHTS_FILE
    with atomic_path(path) as tmp:
        # one metadata entry: safetensors writes several in a random order, so the bytes (and the
        # manifest's hash) would change from build to build
        meta = json.dumps({"built_by": "nextgpt_mini.tiny.pretrain.clap", **dataclasses.asdict(settings)}, sort_keys=True)
        save_file({k: v.contiguous() for k, v in text.state_dict().items()}, str(tmp), metadata={"build": meta})
    return [path]
