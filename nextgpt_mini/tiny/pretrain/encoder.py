"""Chapter 01: the toy world as the tiny ImageBind sees it while it is pretrained, and its held-out test.

NExT-GPT keeps ImageBind frozen, so the tiny profile needs an encoder that already means
something; `encoder_train` trains it, on the tensors made here. They are made exactly as the file
loaders make them, so that a user's PNG / WAV / MP4 gets the numbers the encoder was trained on:
images are rendered to PIL and go through `processing.image_to_tensor`, audio waveforms through
`processing.audio_to_tensor`, video frames through `processing.frames_to_tensor`, which is
`processing.load_video` after its decode step (the three helpers: `tiny/render.py`) (tests/test_encoder_pretrain.py checks it is the
same function on the decoded frames of an MP4). Render sizes, video lengths (1-4 s) and frame rates
(4 and 8 fps) vary like the files the package writes (data_samples, the demo, the tiny decoders'
outputs). The training set is rendered once and cached as tensors; every video comes with its
still image and its soundtrack (`world.soundtrack_of`), which is how audio reaches images here, as
AudioSet's (frame, soundtrack) pairs did for ImageBind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from nextgpt_mini import processing as pp
from nextgpt_mini.config import EncoderConfig
from nextgpt_mini.models.imagebind import ImageBindEncoder
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.render import audio_tensor, image_tensor, video_tensor
from nextgpt_mini.utils import torch_threads


@dataclass
class EncoderPretrainSettings:
    """What `build-tiny encoder` trains with. `quick()` is the few-step version the tests run."""

    seed: int = 0
    # The whole world, held-out colour+shape pairs included: the encoder stands in for ImageBind,
    # whose web-scale pretraining saw every everyday combination. The pairs are held out from the
    # stages NExT-GPT trains (projectors, LoRA), which is where the composition test belongs.
    split: str = "any"
    n_images: int = 1000  # (image, caption) pairs
    n_videos: int = 1200  # (video, caption, still, soundtrack) quadruples
    image_sizes: tuple[int, ...] = (32, 48, 64, 96, 128)  # render size before the loader's resize/crop
    video_sizes: tuple[int, ...] = (32, 64, 96)
    video_seconds: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)  # the soundtrack lasts as long
    video_fps: tuple[int, ...] = (4, 8)
    clip_steps: int = 800  # stage 1: vision + text (shape needs the long run: assets/BUILD_RESULTS.md, History)
    bind_steps: int = 150  # stage 2: audio against the frozen vision tower
    batch_size: int = 64  # videos (with their stills and soundtracks) per step
    image_batch_size: int = 32  # positioned images per step, on top of the stills
    lr: float = 2e-3
    bind_lr: float = 2e-3
    betas: tuple[float, float] = (0.9, 0.98)  # CLIP's
    weight_decay: float = 0.05
    warmup_ratio: float = 0.05
    grad_clip: float = 1.0
    # Direction of motion is the slowest thing to learn, and shape the hardest attribute to see:
    # their losses are weighted up (see encoder_train's docstring).
    loss_weights: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"video_text": 2.0, "still_video": 0.5, "image_attributes": 2.0, "video_attributes": 2.0})
    threads: int | None = None  # torch threads while training; None = leave torch's setting alone
    progress: bool = True

    @classmethod
    def quick(cls, **overrides) -> "EncoderPretrainSettings":
        base = dict(n_images=48, n_videos=48, image_sizes=(48, 64), video_sizes=(32, 64), video_seconds=(1.0, 2.0),
                    clip_steps=12, bind_steps=12, batch_size=24, image_batch_size=12, lr=3e-3, bind_lr=3e-3, warmup_ratio=0.0)
        base.update(overrides)
        return cls(**base)


# --------------------------------------------------------------------------------------------
# The training set
# --------------------------------------------------------------------------------------------
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


def render_toy_set(cfg: EncoderConfig, settings: EncoderPretrainSettings, split: str | None = None) -> ToyBatchSet:
    """Render `settings.n_images` images and `settings.n_videos` videos (with stills and
    soundtracks) of the toy world's `split` (default `settings.split`), at sizes/lengths drawn
    with `settings.seed`."""
    split = split or settings.split
    rng = np.random.default_rng(settings.seed)
    tokenize = pp.load_text_tokenizer(cfg)
    image_items = tw.sample_items("image", settings.n_images, seed=settings.seed, split=split)
    video_items = tw.sample_items("video", settings.n_videos, seed=settings.seed, split=split)
    images, stills, videos, audio = [], [], [], []
    bar = tqdm(total=len(image_items) + len(video_items), desc="render toy world", unit="item",
               disable=not settings.progress)
    with torch_threads(1), torch.no_grad():  # hundreds of tiny ops per item: one thread is fastest
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
    world.ATTRIBUTE_VALUES order), worded as the captions word it."""
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


# --------------------------------------------------------------------------------------------
# Held-out retrieval
# --------------------------------------------------------------------------------------------
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
    with torch_threads(1), torch.no_grad():
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
