"""Chapter 01: pretraining the tiny ImageBind on the toy world, the way ImageBind was trained.

NExT-GPT keeps ImageBind frozen: every later stage only learns to *read* its embeddings, so the
tiny profile needs an encoder that already means something (`nextgpt-mini build-tiny encoder`, a
few minutes on a CPU; what it measured: `assets/BUILD_RESULTS.md`, section encoder).

ImageBind's recipe (Girdhar et al., 2023): images are the *binding* modality. Every other modality
M is aligned to images only, with a symmetric InfoNCE loss on pairs (I_i, M_i) that occur together
in the world:

    L = CE(s * I @ M.T, diag) + CE(s * M @ I.T, diag),   I, M L2-normalised, s = 1 / temperature

and pairs never seen together (audio-text, say) line up anyway ("emergent alignment"), because
both sit next to the same images. ImageBind took its image and text towers from OpenCLIP and froze
them; we have no CLIP for the toy world, so we make one first, then bind audio to it:

stage "clip" (vision + text towers): (image, its caption); (video, its caption), whose motion
    words no still image can satisfy; (video's still image, video), which puts videos in the image
    space (ImageBind got this from OmniMAE-style inflated image weights).
stage "bind" (audio tower only; vision frozen, as ImageBind froze its image tower): (still,
    soundtrack) and (video, soundtrack). Audio never meets text; audio -> text retrieval measures
    the emergent alignment.

Temperatures are Meta's kinds: the text pairs use the text tower's learnable scale (CLIP's, clipped
at 100), the audio pairs a fixed 20, and the still-video pair (no scale in Meta's vision
postprocessor) a fixed 20 too, so the shipped file holds the same kind of numbers as `imagebind_huge`.

The toy world has only 72 objects, so a batch holds several renders of one object: the targets are
spread over the batch entries that share the pair's key (`contrastive_loss`), so that two renders of
one object are never pushed apart; with no duplicates it is exactly InfoNCE. Whole captions alone
let the vision tower learn each colour+shape combination as its own cluster, so CLIP's zero-shot
classification is a loss too (`attribute_loss`: the item must be nearest its own value's phrase,
"triangle", "moving up", among the attribute's values), which gives each attribute its own
direction, shared across colours. Direction of motion (a 2-frame clip shows it only as which edge
leads) and shape are the slowest to learn, so their losses are weighted up (`loss_weights`).

Training: AdamW, linear warm-up and cosine decay (`loop.train_loop`), a fixed seed and
deterministic algorithms; each step sees one random clip per video and per soundtrack (ImageBind
trains on single clips and averages clip embeddings only at inference). The weights are the same
run to run for a given machine and thread count; another thread count changes the float rounding,
and so the file's hash (not its quality).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor

from nextgpt_mini import processing as pp
from nextgpt_mini.config import EncoderConfig
from nextgpt_mini.models.imagebind import AUDIO_LOGIT_SCALE, ImageBindEncoder, build_encoder
from nextgpt_mini.models.imagebind_layers import MAX_LOGIT_SCALE
from nextgpt_mini.profiles import load_profile
from nextgpt_mini.tiny.pretrain.encoder import (
    EncoderPretrainSettings,
    ToyBatchSet,
    attribute_phrases,
    evaluate_retrieval,
    format_retrieval,
    render_toy_set,
)
from nextgpt_mini.tiny.pretrain.loop import EpochBatches, deterministic, refuse_quick_build_into_package, train_loop
from nextgpt_mini.tiny.registry import BUILT_BY, ENCODER_WEIGHTS
from nextgpt_mini.utils import atomic_path, seed_everything, torch_threads

VISION_VISION_LOGIT_SCALE = 20.0  # still <-> video: Meta's vision postprocessor has no scale; fixed like audio's


# --------------------------------------------------------------------------------------------
# The losses
# --------------------------------------------------------------------------------------------
def contrastive_loss(a: Tensor, b: Tensor, logit_scale: Tensor | float,
                     key_a: Tensor | None = None, key_b: Tensor | None = None) -> Tensor:
    """Symmetric InfoNCE between paired rows of `a` and `b` ([B, D] each, normalised here).

    Without keys the target of row i is column i (CLIP/ImageBind). With keys, the target is spread
    uniformly over every column whose key equals row i's (exact duplicates are positives, not
    negatives); the diagonal is always among them since pair i shares one key.
    """
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = logit_scale * a @ b.T
    if key_a is None:
        target = torch.arange(a.shape[0], device=a.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    key_b = key_a if key_b is None else key_b
    positive = (key_a[:, None] == key_b[None, :]).to(logits.dtype)
    t_ab = positive / positive.sum(1, keepdim=True)
    t_ba = positive.T / positive.T.sum(1, keepdim=True)
    loss_ab = -(t_ab * logits.log_softmax(1)).sum(1).mean()
    loss_ba = -(t_ba * logits.T.log_softmax(1)).sum(1).mean()
    return 0.5 * (loss_ab + loss_ba)


def attribute_loss(emb: Tensor, labels: Tensor, phrase_groups: Sequence[Tensor], logit_scale: Tensor | float) -> Tensor:
    """CLIP zero-shot classification as a loss: per attribute, cross-entropy of the item against
    that attribute's value phrases. emb [B, D]; labels [B, A]; phrase_groups: A tensors [V_a, D]."""
    emb = F.normalize(emb, dim=-1)
    losses = [F.cross_entropy(logit_scale * emb @ F.normalize(p, dim=-1).T, labels[:, a])
              for a, p in enumerate(phrase_groups)]
    return torch.stack(losses).mean()


def text_logit_scale(model: ImageBindEncoder) -> Tensor:
    """The text tower's learnable scale, clipped as Meta's postprocessor clips it."""
    return model.modality_postprocessors["text"][1].log_logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)


# --------------------------------------------------------------------------------------------
# The two stages
# --------------------------------------------------------------------------------------------
def clip_no_decay(name: str, p: torch.nn.Parameter) -> bool:
    """CLIP's rule: no weight decay on biases, norms, embeddings, tokens and the logit scale."""
    return p.ndim < 2 or any(k in name for k in ("token", "pos_embed", "log_logit_scale", "bias_k", "bias_v"))


def weighted(parts: dict[str, Tensor], settings: EncoderPretrainSettings) -> Tensor:
    return sum(settings.loss_weights.get(k, 1.0) * v for k, v in parts.items())


def one_clip(x: Tensor, gen: torch.Generator) -> Tensor:
    """One random clip per item, [B, clips, ...] -> [B, ...]: ImageBind trains on single clips
    (2 frames, or 2 s of audio) and averages clip embeddings only at inference."""
    pick = torch.randint(x.shape[1], (x.shape[0],), generator=gen)
    return x[torch.arange(x.shape[0]), pick]


def run_stage(name: str, params: list[tuple[str, torch.nn.Parameter]], loss_fn, steps: int, lr: float,
              settings: EncoderPretrainSettings) -> list[dict]:
    history = train_loop(loss_fn, params, steps, lr, betas=settings.betas, weight_decay=settings.weight_decay,
                         no_decay=clip_no_decay, warmup=int(round(steps * settings.warmup_ratio)), floor=0.0,
                         grad_clip=settings.grad_clip, desc=f"pretrain {name}", progress=settings.progress)
    return [{"stage": name, **record} for record in history]


def train_clip_stage(model: ImageBindEncoder, data: ToyBatchSet, cfg: EncoderConfig,
                     settings: EncoderPretrainSettings, gen: torch.Generator) -> list[dict]:
    """Stage "clip": vision + text towers (and the text tower's learnable temperature)."""
    for n, p in model.named_parameters():
        p.requires_grad_(".audio" not in n)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    image_batches = EpochBatches(len(data.images), settings.image_batch_size, gen)
    video_batches = EpochBatches(len(data.videos), settings.batch_size, gen)
    tokenize = pp.load_text_tokenizer(cfg)
    phrases = {m: [tokenize(group) for group in attribute_phrases(m).values()] for m in ("image", "video")}

    def encode_phrases(m: str) -> list[Tensor]:
        groups = phrases[m]
        emb = model.encode_text(torch.cat(groups))
        return list(emb.split([len(g) for g in groups]))

    def loss_fn() -> tuple[Tensor, dict]:
        i, v = image_batches.next(), video_batches.next()
        # Positioned images and the videos' centred stills are both (image, caption) pairs.
        img = model.encode_image(torch.cat([data.images[i], data.stills[v]]))
        img_txt = model.encode_text(torch.cat([data.image_text[i], data.still_text[v]]))
        img_key = torch.cat([data.image_key[i], data.still_key[v]])
        vid = model.encode_video(one_clip(data.videos[v], gen))
        vid_txt = model.encode_text(data.video_text[v])
        still = img[len(i) :]
        scale = text_logit_scale(model)
        parts = {
            "image_text": contrastive_loss(img, img_txt, scale, img_key),
            "video_text": contrastive_loss(vid, vid_txt, scale, data.video_key[v]),
            "still_video": contrastive_loss(still, vid, VISION_VISION_LOGIT_SCALE, data.object_key[v]),
            "image_attributes": attribute_loss(img, torch.cat([data.image_attrs[i], data.still_attrs[v]]),
                                               encode_phrases("image"), scale),
            "video_attributes": attribute_loss(vid, data.video_attrs[v], encode_phrases("video"), scale),
        }
        return weighted(parts, settings), {**parts, "text_scale": scale.detach()}

    return run_stage("clip", params, loss_fn, settings.clip_steps, settings.lr, settings)


def train_bind_stage(model: ImageBindEncoder, data: ToyBatchSet, settings: EncoderPretrainSettings,
                     gen: torch.Generator) -> list[dict]:
    """Stage "bind": vision frozen (ImageBind froze its image tower); only the audio tower learns."""
    model.eval().requires_grad_(False)
    with torch.no_grad():
        still_emb = torch.cat([model.encode_image(x) for x in data.stills.split(256)])
        video_emb = torch.cat([model.encode_video(x) for x in data.videos.split(256)])
    params = [(n, p) for n, p in model.named_parameters() if ".audio" in n and "log_logit_scale" not in n]
    for _, p in params:
        p.requires_grad_(True)
    model.modality_preprocessors["audio"].train()
    model.modality_trunks["audio"].train()
    model.modality_heads["audio"].train()
    audio_batches = EpochBatches(len(data.audio), settings.batch_size, gen)

    def loss_fn() -> tuple[Tensor, dict]:
        v = audio_batches.next()
        aud = model.encode_audio(one_clip(data.audio[v], gen))
        key = data.object_key[v]
        parts = {
            "audio_still": contrastive_loss(still_emb[v], aud, AUDIO_LOGIT_SCALE, key),
            "audio_video": contrastive_loss(video_emb[v], aud, AUDIO_LOGIT_SCALE, key),
        }
        return weighted(parts, settings), parts

    return run_stage("bind", params, loss_fn, settings.bind_steps, settings.bind_lr, settings)


def pretrain_encoder(cfg: EncoderConfig, settings: EncoderPretrainSettings | None = None,
                     data: ToyBatchSet | None = None) -> tuple[ImageBindEncoder, list[dict]]:
    """Train a fresh ImageBindEncoder(cfg) on the toy world; returns (model in eval mode, frozen,
    history of per-step losses). Deterministic for a seed on a given machine."""
    settings = settings or EncoderPretrainSettings()
    data = data if data is not None else render_toy_set(cfg, settings)
    with deterministic(), torch_threads(settings.threads):
        seed_everything(settings.seed)
        gen = torch.Generator().manual_seed(settings.seed)
        model = build_encoder(cfg)
        model.train()
        history = train_clip_stage(model, data, cfg, settings, gen)
        history += train_bind_stage(model, data, settings, gen)
    model.eval().requires_grad_(False)
    return model, history


# --------------------------------------------------------------------------------------------
# Saving, the `build-tiny encoder` builder
# --------------------------------------------------------------------------------------------
def save_encoder(model: ImageBindEncoder, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write the state dict as safetensors, atomically (a crash never leaves half a file)."""
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", **(metadata or {})})
    return path


def loss_lines(history: list[dict]) -> list[str]:
    """Each stage's loss at its start and end (means over a tenth of its steps)."""
    lines = []
    for stage in ("clip", "bind"):
        losses = [h["loss"] for h in history if h["stage"] == stage]
        if losses:
            k = max(1, len(losses) // 10)
            lines.append(f"stage {stage}: {len(losses)} steps, loss {np.mean(losses[:k]):.3f} -> {np.mean(losses[-k:]):.3f}")
    return lines


def build_tiny_encoder(out: Path, quick: bool = False) -> tuple[list[Path], list[str]]:
    """`nextgpt-mini build-tiny encoder`: pretrain the tiny profile's encoder, measure its held-out
    retrieval, write `out/tiny_imagebind.safetensors`; returns (files, the measured numbers as
    lines). quick=True: a few steps, to test the code."""
    out = Path(out)
    refuse_quick_build_into_package(out, quick)
    cfg = load_profile("tiny").encoder
    settings = EncoderPretrainSettings.quick() if quick else EncoderPretrainSettings()
    start = time.perf_counter()
    data = render_toy_set(cfg, settings)
    rendered = time.perf_counter()
    model, history = pretrain_encoder(cfg, settings, data)
    trained = time.perf_counter()
    results = evaluate_retrieval(model, cfg, gallery_size=12 if quick else 24, galleries=1 if quick else 5)
    text_scale = float(model.modality_postprocessors["text"][1].log_logit_scale.exp())
    lines = [*loss_lines(history), format_retrieval(results), f"text logit scale (learned): {text_scale:.4f}",
             f"time: render {rendered - start:.0f} s, train {trained - rendered:.0f} s, "
             f"evaluate {time.perf_counter() - trained:.0f} s"]
    meta = {"built_by": BUILT_BY[ENCODER_WEIGHTS], "seed": str(settings.seed),
            "settings": str(dataclasses.asdict(settings)), "text_logit_scale": f"{text_scale:.4f}"}
    return [save_encoder(model, out / ENCODER_WEIGHTS, meta)], lines
