"""Chapter 09: feature extractors for the metrics, behind one small interface (so they can be injected).

A feature space answers five questions, each returning float32 rows (one per item):

* `image(images)`: the CLIP-side image features, for the CLIP score and CLIPSIM;
* `text(texts, modality)`: the text features in the space of that modality's score (CLIP for
  images and video frames, CLAP for audio);
* `audio(waves, sample_rate)`: the CLAP-side audio features, for the CLAP score and FD;
* `fid_images(images)`: the features FID is computed on (Inception-v3 pool features);
* `name`: what was used, printed with the results (numbers are only comparable in one space).

`RealFeatures`: Inception (torchmetrics, which needs torch-fidelity), CLIP and CLAP (transformers),
for the real suites. `ToyFeatures`: the tiny ImageBind encoder for every question (it embeds
images, audio and text in one space), for the toy suite and offline tests; its "CLAP score" is
ImageBind's emergent audio-text similarity (see `ToyFeatures.text`).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from nextgpt_mini.config import HUB
from nextgpt_mini.encode import Text, encode
from nextgpt_mini.processing import audio_to_tensor, image_to_tensor, resample
from nextgpt_mini.tiny.toy_decoder import sound_sources

__all__ = ["RealFeatures", "ToyFeatures", "as_uint8_image"]


def as_uint8_image(image) -> np.ndarray:
    """PIL image or array -> uint8 [H, W, 3]."""
    array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {array.shape}")
    return array


class ToyFeatures:
    """Every feature from the tiny (or any) ImageBind encoder: one joint space for all modalities."""

    def __init__(self, encoder):
        self.encoder = encoder.eval()
        self.cfg = encoder.cfg
        self.name = f"ImageBind ({self.cfg.out_embed_dim}-d; the profile's own encoder)"

    @torch.no_grad()
    def image(self, images: list) -> torch.Tensor:
        from PIL import Image

        x = torch.stack([image_to_tensor(Image.fromarray(as_uint8_image(im)), self.cfg.image_size) for im in images])
        return F.normalize(self.encoder.encode_image(x).float(), dim=-1)

    fid_images = image

    @torch.no_grad()
    def audio(self, waves: list, sample_rate: int) -> torch.Tensor:
        x = torch.stack([audio_to_tensor(torch.as_tensor(np.asarray(w, dtype=np.float32)), sample_rate, self.cfg) for w in waves])
        return F.normalize(self.encoder.encode_audio(x).float(), dim=-1)

    @torch.no_grad()
    def text(self, texts: list[str], modality: str = "image") -> torch.Tensor:
        """Text features. For audio, the tiny encoder met sounds only through images (as ImageBind
        did: audio was bound to images, never to text), so a toy sound's caption ("a low steady tone
        over white noise") is read through the objects that make that sound ("a big red circle",
        ...): the mean of their text features, ImageBind's emergent audio-text zero-shot. The sound's
        own caption carries no signal in this space (measured: assets/BUILD_RESULTS.md, History)."""
        def embed(batch: list[str]) -> torch.Tensor:
            return encode([Text(t) for t in batch], encoder=self.encoder, progress=False)

        if modality != "audio":
            return embed(texts)
        groups = [sound_sources(t) or (t,) for t in texts]
        flat = embed([phrase for g in groups for phrase in g])  # one encoder pass for every phrase
        rows = torch.split(flat, [len(g) for g in groups])
        return F.normalize(torch.stack([r.mean(0) for r in rows]), dim=-1)


class RealFeatures:
    """Inception-v3 for FID, CLIP for CLIP score / CLIPSIM, CLAP for the CLAP score and audio FD.

    NExT-GPT's audio FD used PANNs features (AudioLDM's evaluation); we use CLAP's audio embedding,
    so our FD is on a different scale from the paper's 23.58: the table says so.
    """

    def __init__(self, clip: str = HUB["clip_vit_b32"], clap: str = HUB["clap_htsat"], device: str | None = None):
        self.clip_ref, self.clap_ref = clip, clap
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.name = f"Inception-v3 2048 (FID), {clip} (CLIP), {clap} (CLAP)"
        self._clip = self._clap = self._inception = None

    def _load(self, kind: str):
        from transformers import AutoProcessor, ClapModel, CLIPModel

        ref, cls = (self.clip_ref, CLIPModel) if kind == "clip" else (self.clap_ref, ClapModel)
        try:
            return cls.from_pretrained(ref).to(self.device).eval(), AutoProcessor.from_pretrained(ref)
        except OSError as err:
            raise OSError(f"could not load the {kind.upper()} model {ref!r} for evaluation "
                          f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}): with internet, run "
                          f"`hf download {ref}`, or pass a local folder") from err

    @property
    def clip(self):
        if self._clip is None:
            self._clip = self._load("clip")
        return self._clip

    @property
    def clap(self):
        if self._clap is None:
            self._clap = self._load("clap")
        return self._clap

    @torch.no_grad()
    def image(self, images: list) -> torch.Tensor:
        model, processor = self.clip
        pixels = processor(images=[as_uint8_image(im) for im in images], return_tensors="pt")["pixel_values"]
        return F.normalize(_features(model.get_image_features(pixel_values=pixels.to(self.device))), dim=-1).cpu()

    @torch.no_grad()
    def text(self, texts: list[str], modality: str = "image") -> torch.Tensor:
        model, processor = self.clap if modality == "audio" else self.clip
        batch = processor(text=texts, return_tensors="pt", padding=True, truncation=True).to(self.device)
        return F.normalize(_features(model.get_text_features(**batch)), dim=-1).cpu()

    @torch.no_grad()
    def audio(self, waves: list, sample_rate: int) -> torch.Tensor:
        model, processor = self.clap
        rate = processor.feature_extractor.sampling_rate  # 48 kHz
        waves = [resample(torch.as_tensor(np.asarray(w, dtype=np.float32))[None], sample_rate, rate)[0].numpy() for w in waves]
        batch = processor(audio=waves, sampling_rate=rate, return_tensors="pt").to(self.device)
        return F.normalize(_features(model.get_audio_features(**batch)), dim=-1).cpu()

    @torch.no_grad()
    def fid_images(self, images: list) -> torch.Tensor:
        if self._inception is None:
            try:
                from torchmetrics.image.fid import FrechetInceptionDistance

                self._inception = FrechetInceptionDistance(feature=2048).inception.to(self.device)
            except ModuleNotFoundError as err:
                raise ModuleNotFoundError("FID with Inception-v3 needs torch-fidelity (pip install torch-fidelity; it "
                                          "downloads the FID Inception weights on first use)") from err
        x = torch.stack([torch.from_numpy(as_uint8_image(im)).permute(2, 0, 1) for im in images]).to(self.device)
        return self._inception(x).double().cpu()


def _features(out) -> torch.Tensor:
    """transformers 5 returns a model output from get_*_features; 4.x returned the tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output
