"""Pretraining the tiny ImageBind on the toy world, the way ImageBind was trained.

NExT-GPT keeps ImageBind frozen: every later stage only learns to *read* its embeddings. So the
tiny profile needs an encoder that already means something, or nothing downstream can learn.
This module trains one (`nextgpt-mini build-tiny encoder`, a few minutes on a CPU) and ships it as
`nextgpt_mini/assets/tiny_imagebind.safetensors`.

ImageBind's recipe (Girdhar et al., 2023): images are the *binding* modality. Every other modality
M is aligned to images only, with a symmetric InfoNCE loss on pairs (I_i, M_i) that occur together
in the world:

    L = CE(s * I @ M.T, diag) + CE(s * M @ I.T, diag),   I, M L2-normalised, s = 1 / temperature

and pairs never seen together (audio-text, say) line up anyway ("emergent alignment"), because
both sit next to the same images. ImageBind took its image and text towers from OpenCLIP, froze
them, and trained audio (and depth, thermal, IMU) against them; its audio-image pairs were a
frame and the soundtrack of the same AudioSet video. We have no CLIP for the toy world, so we
make one first, then bind audio to it:

stage "clip" (vision + text towers; a CLIP run)
    (image, its caption)            "a big red circle on the left"
    (video, its caption)            "a red circle moving left quickly": motion words that no still
                                    image can satisfy, so video embeddings must carry motion
    (video's still image, video)    puts videos in the image space (ImageBind got this for free
                                    from OmniMAE-style inflated image weights)
stage "bind" (audio tower only; vision frozen, as ImageBind froze its image tower)
    (video's still image, soundtrack) and (video, soundtrack): the toy world gave every video a
    soundtrack (`toyworld.soundtrack_of`), the object's own sound: shape -> kind of sound,
    colour -> pitch, size -> noise colour. That is how audio reaches images here, exactly as
    AudioSet's (frame, soundtrack) pairs did for ImageBind. Audio never meets text in training;
    audio -> text retrieval is measured as the emergent alignment.

Temperature. Meta's checkpoint holds a *learnable* logit scale for text (CLIP's, initialised at
1/0.07) and a *fixed* one of 20 for audio. We train with exactly those: the text pairs use the
text tower's own learnable `log_logit_scale` (so the shipped value is the learned one, clipped at
100 as in Meta's code), the audio pairs use the fixed 20, and the still-video pair (no scale in
Meta's vision postprocessor) also uses a fixed 20. The text scale learns its way from 14.3 to
about 19 here; keeping Meta's two kinds of scale means the shipped file holds the same kind of
numbers as `imagebind_huge`.

One change to plain InfoNCE: the toy world has only 72 distinct objects, so a batch of 64 videos
holds several renders of the same object. Plain InfoNCE would call the soundtrack of one big red
circle a *negative* for the still of another big red circle and push them apart, which is
impossible and wrong. The targets here are spread uniformly over the batch entries that share the
key of the pair (the same object for the still-video and audio pairs; the same caption for the
text pairs, where it changes nothing: identical captions give identical text embeddings, and then
the two losses are equal). With no duplicates it is exactly InfoNCE.

Attribute phrases. Whole captions alone let the vision tower learn each colour+shape combination
as its own cluster: shape was then readable only for combinations seen in training (a linear probe
named the shape of a held-out red triangle 0 % of the time, 65 % for seen pairs), so nothing
downstream could caption held-out pairs. CLIP's zero-shot classification, used as a loss, fixes
that: for each attribute a caption names (colour, shape, size, position; for videos colour,
shape, direction, speed) the text tower embeds one phrase per value ("triangle", "on the left",
"moving up"), and the item must be nearer its own value's phrase than the attribute's other
values (cross-entropy over that attribute's phrases). Each attribute then has its own direction
in the embedding, shared across colours. It is the same kind of (image, text) pair as a caption,
only shorter, as web captions often are. Measured on test images (the zero-shot classifier these
phrases make): shape 54 % with the phrases at 400 steps, 93 % at 800 steps with the phrase losses
weighted 2 (held-out pairs 92 %); a linear probe trained on seen pairs then reads the shape of
held-out ones 88 % (images) and 96 % (videos) of the time, where it read 0 % and 4 % before.

Direction of motion is the slowest thing to learn: a 2-frame clip shows it only as which edge of
the object leads, and the still-video pair (a still has no direction) pulls the other way. So the
video-caption loss is weighted 2 and the still-video loss 0.5 (`PretrainSettings.loss_weights`);
with equal weights (300 steps), text -> video top-1 was 36 % and direction at chance.

Inputs are made exactly as the file loaders make them, so that a user's PNG / WAV / MP4 gets the
numbers the encoder was trained on: images are rendered to PIL at 32-128 px and go through
`preprocess.image_to_tensor`; audio waveforms through `preprocess.audio_to_tensor`; video frames
through `video_frames_to_tensor` below, which is `preprocess.load_video` after its decode step
(tests/test_encoder_pretrain.py checks it is the same function on the decoded frames of an MP4).
Render sizes, video lengths (1-4 s) and frame rates (4 and 8 fps) vary like the files the package
writes (data_samples, the demo, the tiny decoders' outputs).

The training set is rendered once (1000 images and 1200 videos with their stills and soundtracks,
cached as tensors, about 0.25 GB), then trained on with AdamW, linear warm-up and a cosine schedule,
a fixed seed and deterministic algorithms; each step sees one random clip per video and per
soundtrack (ImageBind trains on single clips; clip embeddings are averaged only at inference).

CPU threads: rendering runs on one thread (hundreds of tiny ops per item). Training uses torch's
default unless `PretrainSettings.threads` (or OMP_NUM_THREADS) says otherwise. The weights are
the same run to run for a given machine and thread count; a different thread count changes the
float rounding and so the file's hash (not its quality).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nextgpt_mini.config import EncoderConfig
from nextgpt_mini.tiny import world as tw
from nextgpt_mini import processing as pp
from nextgpt_mini.models.imagebind import AUDIO_LOGIT_SCALE, MAX_LOGIT_SCALE, ImageBindEncoder, build_encoder
from nextgpt_mini.utils import torch_threads

__all__ = [
    "WEIGHTS_FILE",
    "PretrainSettings",
    "ToyBatchSet",
    "attribute_labels",
    "attribute_loss",
    "attribute_phrases",
    "audio_tensor",
    "build_tiny_encoder",
    "contrastive_loss",
    "evaluate_retrieval",
    "format_retrieval",
    "image_tensor",
    "load_pretrained_encoder",
    "pretrain_encoder",
    "render_toy_set",
    "save_encoder",
    "video_tensor",
]

WEIGHTS_FILE = "tiny_imagebind.safetensors"
VISION_VISION_LOGIT_SCALE = 20.0  # still <-> video: Meta's vision postprocessor has no scale; fixed like audio's


@dataclass
class PretrainSettings:
    """What `build-tiny encoder` trains with. `quick()` is the few-step version the tests run."""

    seed: int = 0
    # The whole world, held-out colour+shape pairs included: the encoder stands in for ImageBind,
    # whose web-scale pretraining saw every everyday combination. The pairs are held out from the
    # stages NExT-GPT trains (projectors, LoRA), which is where the composition test belongs.
    # (Trained on split="train" instead, zero-shot shape on held-out pairs was 52 %, 94 % on seen.)
    split: str = "any"
    n_images: int = 1000  # (image, caption) pairs
    n_videos: int = 1200  # (video, caption, still, soundtrack) quadruples
    image_sizes: tuple[int, ...] = (32, 48, 64, 96, 128)  # render size before the loader's resize/crop
    video_sizes: tuple[int, ...] = (32, 64, 96)
    video_seconds: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)  # the soundtrack lasts as long
    video_fps: tuple[int, ...] = (4, 8)
    clip_steps: int = 800  # stage 1: vision + text (400: zero-shot shape 54 %, 800 with attributes x2: 93 %)
    bind_steps: int = 150  # stage 2: audio against the frozen vision tower
    batch_size: int = 64  # videos (with their stills and soundtracks) per step
    image_batch_size: int = 32  # positioned images per step, on top of the stills
    lr: float = 2e-3
    bind_lr: float = 2e-3
    betas: tuple[float, float] = (0.9, 0.98)  # CLIP's
    weight_decay: float = 0.05
    warmup_ratio: float = 0.05
    grad_clip: float = 1.0
    # Direction of motion is the slowest thing to learn (see the module docstring): weight it up.
    # Attributes weighted 2: shape is the hardest attribute to see (see "Attribute phrases").
    loss_weights: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"video_text": 2.0, "still_video": 0.5, "image_attributes": 2.0, "video_attributes": 2.0})
    threads: int | None = None  # torch threads while training; None = leave torch's setting alone
    progress: bool = True

    @classmethod
    def quick(cls, **overrides) -> "PretrainSettings":
        base = dict(n_images=48, n_videos=48, image_sizes=(48, 64), video_sizes=(32, 64), video_seconds=(1.0, 2.0),
                    clip_steps=12, bind_steps=12, batch_size=24, image_batch_size=12, lr=3e-3, bind_lr=3e-3, warmup_ratio=0.0)
        base.update(overrides)
        return cls(**base)


# ============================================================================================
# Inputs exactly as the file loaders make them
# ============================================================================================
def image_tensor(item: tw.ToyItem, render_size: int, cfg: EncoderConfig) -> Tensor:
    """A toy image rendered at `render_size` px, through the image loader's transform -> [3, S, S]."""
    from PIL import Image

    return pp.image_to_tensor(Image.fromarray(tw.render_image(item, render_size)), cfg.image_size)


def video_tensor(item: tw.ToyItem, render_size: int, seconds: float, fps: int, cfg: EncoderConfig) -> Tensor:
    return pp.frames_to_tensor(tw.render_video(item, render_size, seconds, fps), fps, cfg)


def audio_tensor(item: tw.ToyItem, seconds: float, cfg: EncoderConfig) -> Tensor:
    sr = int(cfg.sample_rate)
    return pp.audio_to_tensor(torch.from_numpy(tw.render_audio(item, seconds, sr)), sr, cfg)


def _single_thread():
    """Per-item preprocessing is hundreds of tiny tensor ops: on a busy 2-core machine two threads
    make them 10x slower, not faster (measured); one thread gives the same numbers."""
    return torch_threads(1)


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def _object_key(obj: tw.ToyObject) -> tuple[str, str, str]:
    return obj.colour, obj.shape, obj.size


def _video_caption_key(item: tw.ToyItem) -> tuple[str, str, str, str]:
    return item.obj.colour, item.obj.shape, item.direction, item.speed


def _ids(values: Sequence) -> Tensor:
    """Equal values -> equal integer ids (for the duplicate-aware targets)."""
    table: dict = {}
    return torch.tensor([table.setdefault(v, len(table)) for v in values], dtype=torch.long)


@dataclass
class ToyBatchSet:
    """The pre-rendered training set, as loader-identical tensors.

    images [Ni,3,S,S] + image_text [Ni,L] (ids), image_key [Ni] (same caption = same key);
    videos [Nv,clips,3,F,S,S] + video_text [Nv,L], video_key [Nv]; stills [Nv,3,S,S] (the video's
    object, centred) + still_text [Nv,L], still_key [Nv]; audio [Nv,clips,1,mel,frames] (the
    soundtrack), object_key [Nv]. Caption keys are shared between images and stills.
    """

    images: Tensor
    image_text: Tensor
    image_key: Tensor
    videos: Tensor
    video_text: Tensor
    video_key: Tensor
    stills: Tensor
    still_text: Tensor
    still_key: Tensor
    audio: Tensor
    object_key: Tensor
    image_attrs: Tensor  # [Ni, 4] index of each attribute's value in attribute_phrases("image")
    still_attrs: Tensor  # [Nv, 4] the same for the stills
    video_attrs: Tensor  # [Nv, 4] index of each attribute's value in attribute_phrases("video")


def render_toy_set(cfg: EncoderConfig, settings: PretrainSettings, split: str | None = None) -> ToyBatchSet:
    """Render `settings.n_images` images and `settings.n_videos` videos (with stills and
    soundtracks) of the toy world's `split` (default `settings.split`), at sizes/lengths drawn
    with `settings.seed`."""
    split = split or settings.split
    from tqdm.auto import tqdm

    rng = np.random.default_rng(settings.seed)
    tokenize = pp.load_text_tokenizer(cfg)
    image_items = tw.sample_items("image", settings.n_images, seed=settings.seed, split=split)
    video_items = tw.sample_items("video", settings.n_videos, seed=settings.seed, split=split)
    images, stills, videos, audio = [], [], [], []
    bar = tqdm(total=len(image_items) + len(video_items), desc="render toy world", unit="item",
               disable=not settings.progress)
    with _single_thread(), torch.no_grad():
        for item in image_items:
            images.append(image_tensor(item, int(rng.choice(settings.image_sizes)), cfg))
            bar.update()
        for item in video_items:
            size = int(rng.choice(settings.video_sizes))
            seconds = float(rng.choice(settings.video_seconds))
            fps = int(rng.choice(settings.video_fps))
            videos.append(video_tensor(item, size, seconds, fps, cfg))
            stills.append(image_tensor(tw.still_of(item), int(rng.choice(settings.image_sizes)), cfg))
            audio.append(audio_tensor(tw.soundtrack_of(item), seconds, cfg))
            bar.update()
    bar.close()
    still_items = [tw.still_of(it) for it in video_items]
    caption_key = _ids([it.caption for it in image_items + still_items])
    return ToyBatchSet(
        images=torch.stack(images),
        image_text=tokenize([it.caption for it in image_items]),
        image_key=caption_key[: len(image_items)],
        videos=torch.stack(videos),
        video_text=tokenize([it.caption for it in video_items]),
        video_key=_ids([_video_caption_key(it) for it in video_items]),
        stills=torch.stack(stills),
        still_text=tokenize([it.caption for it in still_items]),
        still_key=caption_key[len(image_items) :],
        audio=torch.stack(audio),
        object_key=_ids([_object_key(it.obj) for it in video_items]),
        image_attrs=attribute_labels(image_items),
        still_attrs=attribute_labels(still_items),
        video_attrs=attribute_labels(video_items),
    )


def attribute_phrases(modality: str) -> dict[str, list[str]]:
    """For each attribute a caption of `modality` names, one phrase per value (in
    toyworld.ATTRIBUTE_VALUES order), worded as the captions word it."""
    values = tw.ATTRIBUTE_VALUES
    if modality == "image":
        return {"colour": list(values["colour"]), "shape": list(values["shape"]), "size": list(values["size"]),
                "position": [tw.where_phrase(p) for p in values["position"]]}
    if modality == "video":
        return {"colour": list(values["colour"]), "shape": list(values["shape"]),
                "direction": [f"moving {d}" for d in values["direction"]], "speed": list(values["speed"])}
    raise ValueError(f"attribute phrases exist for image and video, not {modality!r}")


def attribute_labels(items: Sequence[tw.ToyItem]) -> Tensor:
    """[N, attributes]: the index of each item's value among attribute_phrases(modality)."""
    names = list(attribute_phrases(items[0].modality))
    return torch.tensor([[tw.ATTRIBUTE_VALUES[a].index(it.attributes[a]) for a in names] for it in items],
                        dtype=torch.long)


# ============================================================================================
# The loss
# ============================================================================================
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


def _text_logit_scale(model: ImageBindEncoder) -> Tensor:
    return model.modality_postprocessors["text"][1].log_logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)


# ============================================================================================
# Training
# ============================================================================================
def _param_groups(params: list[tuple[str, torch.nn.Parameter]], weight_decay: float) -> list[dict]:
    """CLIP's rule: no weight decay on biases, norms, embeddings, tokens and the logit scale."""
    decay, no_decay = [], []
    for name, p in params:
        if p.ndim < 2 or any(k in name for k in ("token", "pos_embed", "log_logit_scale", "bias_k", "bias_v")):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class _Batches:
    """Batches of indices into range(n): a fresh seeded permutation every epoch."""

    def __init__(self, n: int, batch: int, gen: torch.Generator) -> None:
        self.n, self.batch, self.gen = n, min(batch, n), gen
        self.order, self.cursor = torch.randperm(n, generator=gen), 0

    def next(self) -> Tensor:
        if self.cursor + self.batch > self.n:
            self.order, self.cursor = torch.randperm(self.n, generator=self.gen), 0
        idx = self.order[self.cursor : self.cursor + self.batch]
        self.cursor += self.batch
        return idx


def _run_stage(name: str, params: list[tuple[str, torch.nn.Parameter]], loss_fn: Callable[[], tuple[Tensor, dict]],
               steps: int, lr: float, settings: PretrainSettings) -> list[dict]:
    from tqdm.auto import tqdm

    if steps <= 0:
        return []
    opt = torch.optim.AdamW(_param_groups(params, settings.weight_decay), lr=lr, betas=settings.betas)
    from nextgpt_mini.training.trainer import warmup_cosine

    sched = warmup_cosine(opt, warmup=int(round(steps * settings.warmup_ratio)), total=steps)
    history = []
    bar = tqdm(range(steps), desc=f"pretrain {name}", disable=not settings.progress)
    for step in bar:
        loss, parts = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], settings.grad_clip)
        opt.step()
        sched.step()
        record = {"stage": name, "step": step, "loss": loss.item(), **{k: v.item() for k, v in parts.items()}}
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}")
    return history


def _weighted(parts: dict[str, Tensor], settings: PretrainSettings) -> Tensor:
    return sum(settings.loss_weights.get(k, 1.0) * v for k, v in parts.items())


def _one_clip(x: Tensor, gen: torch.Generator) -> Tensor:
    """One random clip per item, [B, clips, ...] -> [B, ...]: ImageBind trains on single clips
    (2 frames, or 2 s of audio) and averages clip embeddings only at inference."""
    pick = torch.randint(x.shape[1], (x.shape[0],), generator=gen)
    return x[torch.arange(x.shape[0]), pick]


def pretrain_encoder(cfg: EncoderConfig, settings: PretrainSettings | None = None,
                     data: ToyBatchSet | None = None) -> tuple[ImageBindEncoder, list[dict]]:
    """Train a fresh ImageBindEncoder(cfg) on the toy world; returns (model in eval mode, frozen,
    history of per-step losses). Deterministic for a seed on a given machine."""
    from nextgpt_mini.utils import seed_everything

    settings = settings or PretrainSettings()
    data = data if data is not None else render_toy_set(cfg, settings)
    with _deterministic(), torch_threads(settings.threads):
        seed_everything(settings.seed)
        gen = torch.Generator().manual_seed(settings.seed)
        model = build_encoder(cfg)
        model.train()

        # Stage "clip": vision + text towers (and the text tower's learnable temperature).
        for n, p in model.named_parameters():
            p.requires_grad_(".audio" not in n)
        clip_params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        image_batches = _Batches(len(data.images), settings.image_batch_size, gen)
        video_batches = _Batches(len(data.videos), settings.batch_size, gen)
        tokenize = pp.load_text_tokenizer(cfg)
        phrases = {m: [tokenize(group) for group in attribute_phrases(m).values()] for m in ("image", "video")}

        def encode_phrases(m: str) -> list[Tensor]:
            groups = phrases[m]
            emb = model.encode_text(torch.cat(groups))
            return list(emb.split([len(g) for g in groups]))

        def clip_loss() -> tuple[Tensor, dict]:
            i, v = image_batches.next(), video_batches.next()
            # Positioned images and the videos' centred stills are both (image, caption) pairs.
            img = model.encode_image(torch.cat([data.images[i], data.stills[v]]))
            img_txt = model.encode_text(torch.cat([data.image_text[i], data.still_text[v]]))
            img_key = torch.cat([data.image_key[i], data.still_key[v]])
            vid = model.encode_video(_one_clip(data.videos[v], gen))
            vid_txt = model.encode_text(data.video_text[v])
            still = img[len(i) :]
            scale = _text_logit_scale(model)
            parts = {
                "image_text": contrastive_loss(img, img_txt, scale, img_key),
                "video_text": contrastive_loss(vid, vid_txt, scale, data.video_key[v]),
                "still_video": contrastive_loss(still, vid, VISION_VISION_LOGIT_SCALE, data.object_key[v]),
                "image_attributes": attribute_loss(img, torch.cat([data.image_attrs[i], data.still_attrs[v]]),
                                                   encode_phrases("image"), scale),
                "video_attributes": attribute_loss(vid, data.video_attrs[v], encode_phrases("video"), scale),
            }
            return _weighted(parts, settings), {**parts, "text_scale": scale.detach()}

        history = _run_stage("clip", clip_params, clip_loss, settings.clip_steps, settings.lr, settings)

        # Stage "bind": vision frozen (ImageBind froze its image tower); only the audio tower learns.
        model.eval().requires_grad_(False)
        with torch.no_grad():
            still_emb = torch.cat([model.encode_image(x) for x in data.stills.split(256)])
            video_emb = torch.cat([model.encode_video(x) for x in data.videos.split(256)])
        audio_params = [(n, p) for n, p in model.named_parameters() if ".audio" in n and "log_logit_scale" not in n]
        for _, p in audio_params:
            p.requires_grad_(True)
        model.modality_preprocessors["audio"].train()
        model.modality_trunks["audio"].train()
        model.modality_heads["audio"].train()
        audio_batches = _Batches(len(data.audio), settings.batch_size, gen)

        def bind_loss() -> tuple[Tensor, dict]:
            v = audio_batches.next()
            aud = model.encode_audio(_one_clip(data.audio[v], gen))
            key = data.object_key[v]
            parts = {
                "audio_still": contrastive_loss(still_emb[v], aud, AUDIO_LOGIT_SCALE, key),
                "audio_video": contrastive_loss(video_emb[v], aud, AUDIO_LOGIT_SCALE, key),
            }
            return _weighted(parts, settings), parts

        history += _run_stage("bind", audio_params, bind_loss, settings.bind_steps, settings.bind_lr, settings)
    model.eval().requires_grad_(False)
    return model, history


# ============================================================================================
# Held-out retrieval
# ============================================================================================
def _distinct(items: list[tw.ToyItem], n: int, keys: Sequence[Callable[[tw.ToyItem], object]]) -> list[tw.ToyItem]:
    """The first `n` items whose every key is new, so that each query has one right answer."""
    seen: list[set] = [set() for _ in keys]
    out = []
    for it in items:
        values = [k(it) for k in keys]
        if any(v in s for v, s in zip(values, seen)):
            continue
        for v, s in zip(values, seen):
            s.add(v)
        out.append(it)
        if len(out) == n:
            return out
    raise ValueError(f"only {len(out)} distinct items among {len(items)}; ask for a smaller gallery")


def _top1(query: Tensor, gallery: Tensor) -> Tensor:
    """Per query, 1.0 if its own gallery item (same row) is the nearest by cosine."""
    sim = F.normalize(query, dim=-1) @ F.normalize(gallery, dim=-1).T
    return (sim.argmax(1) == torch.arange(len(query))).float()


def evaluate_retrieval(model: ImageBindEncoder, cfg: EncoderConfig, gallery_size: int = 24, galleries: int = 5,
                       seed: int = 1234, render_size: int = 64, seconds: float = 2.0, fps: int = 8) -> dict:
    """Top-1 retrieval on the test split (half of its items are held-out colour+shape pairs).

    Each gallery holds `gallery_size` test videos with distinct objects (colour, shape, size) and
    distinct captions; from each video come its still image, soundtrack and the two captions.
    Queries are matched against the gallery of another modality; the right answer is the item made
    from the same video. Returns {"text -> image": {"top1", "held_out_top1", "chance", "queries"}, ...}.
    """
    tokenize = pp.load_text_tokenizer(cfg)
    hits: dict[str, list[Tensor]] = {}
    held: list[Tensor] = []
    with _single_thread(), torch.no_grad():
        for g in range(galleries):
            pool = tw.sample_items("video", 20 * gallery_size, seed=seed + g, split="test")
            videos = _distinct(pool, gallery_size, [lambda it: _object_key(it.obj), _video_caption_key])
            stills = [tw.still_of(v) for v in videos]
            img = model.encode_image(torch.stack([image_tensor(s, render_size, cfg) for s in stills]))
            vid = model.encode_video(torch.stack([video_tensor(v, render_size, seconds, fps, cfg) for v in videos]))
            aud = model.encode_audio(torch.stack([audio_tensor(tw.soundtrack_of(v), seconds, cfg) for v in videos]))
            img_txt = model.encode_text(tokenize([s.caption for s in stills]))
            vid_txt = model.encode_text(tokenize([v.caption for v in videos]))
            pairs = {
                "text -> image": (img_txt, img),
                "audio -> image": (aud, img),
                "video -> image": (vid, img),
                "text -> video": (vid_txt, vid),
                "audio -> text": (aud, img_txt),  # emergent: audio never met text in training
            }
            for name, (q, k) in pairs.items():
                hits.setdefault(name, []).append(_top1(q, k))
            held.append(torch.tensor([v.obj.held_out for v in videos]))
    held_mask = torch.cat(held)
    out = {}
    for name, h in hits.items():
        h = torch.cat(h)
        out[name] = {
            "top1": float(h.mean()),
            "held_out_top1": float(h[held_mask].mean()),
            "chance": 1.0 / gallery_size,
            "queries": int(h.numel()),
        }
    return out


def format_retrieval(results: dict) -> str:
    first = next(iter(results.values()))
    lines = [f"held-out retrieval, test split, top-1 among {round(1 / first['chance'])} "
             f"({first['queries']} queries, half of them held-out colour+shape pairs)",
             f"  {'query -> gallery':<16} {'top-1':>7} {'held-out':>9} {'chance':>7} {'x chance':>9}"]
    for name, r in results.items():
        lines.append(f"  {name:<16} {r['top1']:>7.1%} {r['held_out_top1']:>9.1%} {r['chance']:>7.1%} "
                     f"{r['top1'] / r['chance']:>8.1f}x")
    return "\n".join(lines)


# ============================================================================================
# Saving, loading, the `build-tiny encoder` builder
# ============================================================================================
def save_encoder(model: ImageBindEncoder, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write the state dict as safetensors, atomically (a crash never leaves half a file)."""
    from safetensors.torch import save_file

    from nextgpt_mini.utils import atomic_path

    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", **(metadata or {})})
    return path


def load_pretrained_encoder(cfg: EncoderConfig, device: torch.device | str | None = None) -> ImageBindEncoder:
    """The encoder with cfg.weights loaded, in eval mode and frozen (see imagebind_weights.load_encoder)."""
    from nextgpt_mini.models.imagebind_weights import load_encoder

    return load_encoder(cfg, device=device)


def build_tiny_encoder(out: Path, quick: bool = False) -> list[Path]:
    """`nextgpt-mini build-tiny encoder`: pretrain the tiny profile's encoder, print its held-out
    retrieval, write `out/tiny_imagebind.safetensors`. quick=True: a few steps, to test the code."""
    from nextgpt_mini.profiles import load_profile
    from nextgpt_mini.utils import ASSETS

    out = Path(out)
    if quick and out.resolve() == ASSETS.resolve():
        raise ValueError("a quick build makes throwaway weights; give it --out DIR instead of the package folder")
    cfg = load_profile("tiny").encoder
    settings = PretrainSettings.quick() if quick else PretrainSettings()
    start = time.perf_counter()
    data = render_toy_set(cfg, settings)
    rendered = time.perf_counter()
    model, history = pretrain_encoder(cfg, settings, data)
    trained = time.perf_counter()
    for stage in ("clip", "bind"):
        losses = [h["loss"] for h in history if h["stage"] == stage]
        if losses:
            k = max(1, len(losses) // 10)
            print(f"stage {stage}: {len(losses)} steps, loss {np.mean(losses[:k]):.3f} -> {np.mean(losses[-k:]):.3f}")
    results = evaluate_retrieval(model, cfg, gallery_size=12 if quick else 24, galleries=1 if quick else 5)
    print(format_retrieval(results))
    print(f"time: render {rendered - start:.0f} s, train {trained - rendered:.0f} s, "
          f"evaluate {time.perf_counter() - trained:.0f} s")
    text_scale = float(model.modality_postprocessors["text"][1].log_logit_scale.exp())
    meta = {"built_by": "nextgpt_mini.tiny.pretrain.encoder", "seed": str(settings.seed),
            "settings": str(dataclasses.asdict(settings)), "text_logit_scale": f"{text_scale:.4f}"}
    return [save_encoder(model, out / WEIGHTS_FILE, meta)]
