"""Chapter 09: evaluation suites: a pinned protocol, a system (or two), one results table.

`evaluate_suite("toy", "package:tiny_system")` runs the toy suite on a trained system and on the
untrained one (same profile, projectors at their initialisation, no LoRA), and returns a report:
the protocol, the feature space, per system and task the metrics, and where the suite is one of
the paper's, NExT-GPT's published numbers. `write_report` stores it as JSON and a markdown table.

The protocol (sample count, seeds, prompts, resolution, steps, guidance) of every suite lives in
`protocols.json` next to this file; `--protocol FILE` replaces it, and the report repeats what ran.
Generation tasks append the signal tokens when the LLM did not ask for media (`require`), so the
generation metrics judge the output side on every request; whether the LLM asked by itself is the
separate `signal accuracy` (right modality, complete run; none for media->text).

Real suites read a local copy of their data: `DATA/<suite>/pairs.json` in NExT-GPT's pair format
(`[{"image_name": "x.jpg", "caption": "..."}]`, or video_name / audio_name), media files next to it
in `DATA/<suite>/pairs/`. For captioning, several records may name the same file (several references).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from nextgpt_mini import processing as pp
from nextgpt_mini.data.mosit import strip_answer
from nextgpt_mini.data.pairs import read_pairs
from nextgpt_mini.evaluation import metrics
from nextgpt_mini.evaluation.features import RealFeatures, ToyFeatures, as_uint8_image
from nextgpt_mini.files import read_video_frames
from nextgpt_mini.models.decoders import Decoders
from nextgpt_mini.models.nextgpt import load_system
from nextgpt_mini.tiny import reader
from nextgpt_mini.tiny.render import RENDER, encoder_input
from nextgpt_mini.tiny.toy_decoder import ToyDecoder, all_items, toy_samples
from nextgpt_mini.training.stage3 import encode_media, media_key
from nextgpt_mini.utils import atomic_path

__all__ = ["PAPER", "SUITES", "evaluate_suite", "load_protocol", "load_system", "markdown", "write_report"]

PROTOCOLS = Path(__file__).with_name("protocols.json")
SUITES = ("toy", "coco-t2i", "audiocaps-t2a", "msrvtt-t2v", "coco-caption")
GENERATION = {"T->I": "image", "T->V": "video", "T->A": "audio"}
CAPTIONING = {"I->T": "image", "V->T": "video", "A->T": "audio"}
# NExT-GPT's published numbers (paper, Tables 3-6), for the suites that are the paper's.
PAPER = {"coco-t2i": {"T->I": {"FID": 11.28}}, "audiocaps-t2a": {"T->A": {"FD": 23.58, "IS": 8.35}},
         "msrvtt-t2v": {"T->V": {"FID": 13.04, "CLIPSIM": 0.3085}}, "coco-caption": {"I->T": {"CIDEr": 156.7}}}
LOWER_IS_BETTER = ("FID", "FD")


def load_protocol(suite: str, path: str | os.PathLike | None = None) -> dict:
    """The protocol of `suite` from `path` (default: the package's protocols.json)."""
    if suite not in SUITES:
        raise ValueError(f"suite: expected one of {', '.join(SUITES)}, got {suite!r}")
    path = Path(path) if path else PROTOCOLS
    try:
        protocols = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such protocol file") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if suite not in protocols:
        raise ValueError(f"{path}: has no protocol for suite {suite!r} (it has {', '.join(protocols)})")
    protocol = dict(protocols[suite])
    unknown = [t for t in protocol.get("tasks", []) if t not in GENERATION and t not in CAPTIONING]
    if unknown or not protocol.get("tasks"):
        raise ValueError(f"{path}: suite {suite!r} needs 'tasks' from {sorted(GENERATION) + sorted(CAPTIONING)}, got {unknown or 'none'}")
    return protocol


def _features_for(model, protocol: dict):
    return ToyFeatures(model.encoder) if protocol["features"] == "profile-encoder" else RealFeatures()


# Which protocol settings reach which decoder's config (protocol key -> DecoderConfig field).
DECODER_SETTINGS = {
    "image_decoder": {"steps": "steps", "guidance_scale": "guidance_scale", "resolution": ("height", "width")},
    "video_decoder": {"steps": "steps", "guidance_scale": "guidance_scale", "resolution": ("height", "width"),
                      "num_frames": "num_frames"},
    "audio_decoder": {"steps": "steps", "guidance_scale": "guidance_scale", "audio_seconds": "audio_seconds"},
}


def _decoder_overrides(profile, protocol: dict):
    """The profile with the protocol's sampling settings on its decoders."""
    import dataclasses

    out = {}
    for key, settings in DECODER_SETTINGS.items():
        fields = {}
        for name, targets in settings.items():
            if protocol.get(name) is not None:
                fields.update(dict.fromkeys((targets,) if isinstance(targets, str) else targets, protocol[name]))
        out[key] = dataclasses.replace(getattr(profile, key), **fields)
    return dataclasses.replace(profile, **out)


# --------------------------------------------------------------------------------------------
# Samples: the toy world's, or a local copy of a real dataset
# --------------------------------------------------------------------------------------------
def _samples(suite: str, task: str, protocol: dict, data_dir: str | os.PathLike | None, limit: int | None) -> list[dict]:
    n = min(protocol["samples"], limit) if limit else protocol["samples"]
    if suite == "toy":
        return toy_samples(task, n, protocol["seed"])
    return _real_samples(suite, task, protocol, data_dir, n)


def _real_samples(suite: str, task: str, protocol: dict, data_dir, n: int) -> list[dict]:
    if data_dir is None:
        raise FileNotFoundError(f"suite {suite!r} reads a local copy of its data: pass --data DIR with "
                                f"DIR/{suite}/pairs.json (NExT-GPT's pair format) and the media in DIR/{suite}/pairs/")
    pairs = Path(data_dir) / suite / "pairs.json"
    if not pairs.is_file():
        raise FileNotFoundError(f"{pairs}: not found. Suite {suite!r} expects DIR/{suite}/pairs.json "
                                f"(a JSON list of {{\"<image|video|audio>_name\": file, \"caption\": text}}) and the files in DIR/{suite}/pairs/")
    modality, files, captions = read_pairs(pairs)
    wanted = GENERATION.get(task) or CAPTIONING[task]
    if modality != wanted:
        raise ValueError(f"{pairs}: holds {modality} pairs, suite {suite!r} ({task}) needs {wanted} pairs")
    by_file: dict[Path, list[str]] = defaultdict(list)
    for f, c in zip(files, captions):
        by_file[f].append(c)
    out = []
    for k, (f, caps) in enumerate(list(by_file.items())[:n]):
        if not f.is_file():  # before any generation, not after hours of it
            raise FileNotFoundError(f"{f}: no such file (named in {pairs})")
        seed = protocol["seed"] + k
        if task in GENERATION:
            out.append({"prompt": protocol["prompt"].format(caption=caps[0]), "caption": caps[0], "modality": modality,
                        "reference_path": f, "seed": seed})
        else:
            out.append({"prompt": protocol["prompt"], "media": str(f), "references": caps, "modality": modality, "seed": seed})
    return out


def read_reference(path: Path, modality: str, sample_rate: int):
    """A real item as the metrics take it: a PIL image, uint8 frames [F, H, W, 3], or a mono
    waveform at `sample_rate`. A file that cannot be read raises MediaError naming it."""
    path = pp.check_file(path)
    try:
        if modality == "image":
            from PIL import Image

            with Image.open(path) as im:
                return im.convert("RGB")
        if modality == "video":
            return read_video_frames(path)[0]
        wave, rate = pp.read_audio(path)
        return pp.resample(wave.mean(0, keepdim=True), rate, sample_rate)[0].numpy()
    except pp.MediaError:
        raise
    except Exception as err:
        raise pp.MediaError(f"{path}: cannot read this {modality} ({type(err).__name__}: {err})") from err


# --------------------------------------------------------------------------------------------
# Running one task
# --------------------------------------------------------------------------------------------
CEILING = " (decoder fed the caption)"  # the reader's column for the decoder's ceiling
CHUNK = 32  # media held in memory at once: features are computed per chunk (30,000 COCO images would not fit)


def _generation_task(model, samples: list[dict], modality: str, protocol: dict, features, decoders, progress,
                     ceiling: bool = False) -> dict:
    from tqdm.auto import tqdm

    toy = protocol["decode"] == "toy-world"  # the nearest caption rendered: the projector judged alone
    judge = modality in protocol.get("reader", ())  # the toy world's attribute reader on what was made
    renderer = ToyDecoder(decoders[modality], model.profile.train.distance) if toy or judge else None
    rate = RENDER["sample_rate"] if toy else _sample_rate(decoders, protocol)
    asked, feats = [], defaultdict(list)  # feats: real / made (Fréchet) and score (media for the text score)
    readings = defaultdict(list)
    bar = tqdm(total=len(samples), desc=f"{modality} generation", disable=not progress, leave=False)
    for start in range(0, len(samples), CHUNK):
        chunk, conds = samples[start : start + CHUNK], []
        for s in chunk:  # the LLM and projector one request at a time; the decoder once per chunk
            r = model.generate(s["prompt"], seed=s["seed"], require=modality, decode=False,
                               max_new_tokens=protocol["max_new_tokens"])
            asked.append(not r.forced and modality not in r.completed)
            conds.append(r.conditioning[modality][:1].float())
            bar.update(1)
        seeds = [s["seed"] for s in chunk]
        rendered = [renderer.decode(c, s)[0] for c, s in zip(conds, seeds)] if toy or judge else []
        made = rendered if toy else decoders[modality].generate(torch.cat(conds), seed=seeds, progress=False)
        if judge:
            readings[""].extend(_read(modality, m, rate) for m in made)
            readings[" (oracle decoder)"].extend(_read(modality, m, RENDER["sample_rate"]) for m in rendered)
        if judge and ceiling:  # the decoder fed each caption's own conditioning: what it can draw at best
            decoder = decoders[modality]
            own = decoder.generate(decoder.targets([s["caption"] for s in chunk]), seed=seeds, progress=False)
            readings[CEILING].extend(_read(modality, m, rate) for m in own)
        refs = [_reference(s, modality, rate) for s in chunk]
        if modality == "image":
            feats["real"].append(features.fid_images(refs))
            feats["made"].append(features.fid_images(made))
            feats["score"].append(features.image(made))
        elif modality == "video":  # FID on frames; CLIPSIM per video over its frames
            feats["real"].append(features.fid_images([f for v in refs for f in v]))
            feats["made"].append(features.fid_images([f for v in made for f in v]))
            feats["score"].extend(features.image(list(v)) for v in made)
        else:
            feats["real"].append(features.audio(refs, rate))
            feats["made"].append(features.audio(made, rate))
            feats["score"].append(feats["made"][-1])
    bar.close()
    texts = features.text([s["caption"] for s in samples], modality)
    fd = metrics.frechet_distance(torch.cat(feats["real"]), torch.cat(feats["made"]))
    out = {"_signals": asked}
    if modality == "image":
        out.update({"FID": fd, "CLIP score": metrics.clip_score(torch.cat(feats["score"]), texts)})
    elif modality == "video":
        out.update({"FID": fd, "CLIPSIM": metrics.clipsim(feats["score"], texts)})
    else:
        out.update({"FD": fd, "CLAP score": metrics.clip_score(torch.cat(feats["score"]), texts)})
    items = [all_items(modality)[s["caption"]] for s in samples] if judge else []
    unstated = [s.get("unstated", []) for s in samples]  # attributes a request left open are not scored
    for column, read in readings.items():
        scored = reader.accuracy(read, items, [[] if column == CEILING else u for u in unstated])  # the caption states all
        out.update({f"{attribute} %{column}": 100 * v for attribute, v in scored.items()})
    return out


def _read(modality: str, media, sample_rate: int) -> dict:
    """The attribute reader on one generated (or rendered) item: PIL images, frame arrays, waveforms."""
    if modality == "image":
        return reader.read_image(as_uint8_image(media))
    if modality == "video":
        return reader.read_video(np.asarray(media))
    return reader.read_audio(np.asarray(media, dtype=np.float64), sample_rate)


def _reference(sample: dict, modality: str, sample_rate: int):
    """The sample's reference media: rendered (toy) or read from its file (real suites), only when needed."""
    if "reference" in sample:
        return sample["reference"]
    return read_reference(sample["reference_path"], modality, sample_rate)


def _sample_rate(decoders, protocol: dict) -> int:
    return RENDER["sample_rate"] if protocol["decode"] == "toy-world" else decoders["audio"].sample_rate


def _captioning_task(model, samples: list[dict], protocol: dict, progress) -> dict:
    from tqdm.auto import tqdm

    toy = isinstance(samples[0]["media"], dict)
    if toy:  # rendered items: encode them in batches, as stage 3 does
        embedded = encode_media(model, [{"turns": [{"media": [s["media"]]}]} for s in samples], render=encoder_input)
        inputs = [[(s["modality"], embedded[media_key(s["media"])])] for s in samples]
    else:
        inputs = [[s["media"]] for s in samples]
    answers, right = [], []
    for s, media in tqdm(list(zip(samples, inputs)), desc="captioning", disable=not progress, leave=False):
        r = model.generate(s["prompt"], media, seed=s["seed"], decode=False, max_new_tokens=protocol["max_new_tokens"])
        answers.append(strip_answer(r.text) if toy else r.text)
        right.append(not r.conditioning and bool(r.text))
    out = {"_signals": right}
    out.update(metrics.caption_metrics(answers, [s["references"] for s in samples], with_meteor=protocol.get("meteor", False)))
    out["examples"] = [{"answer": a, "reference": s["references"][0]} for a, s in list(zip(answers, samples))[:3]]
    return out


def _evaluate_system(model, suite: str, protocol: dict, samples: dict, features, decoders, progress,
                     ceiling: bool = False) -> dict:
    """{task: {metric: value}}, plus "all tasks": the signal accuracy over every request (the right
    modality's complete run where media is asked for, no signal tokens where text is)."""
    results, signals = {}, {}
    for task in protocol["tasks"]:
        with torch.no_grad():
            if task in GENERATION:
                results[task] = _generation_task(model, samples[task], GENERATION[task], protocol, features, decoders,
                                                 progress, ceiling=ceiling)
            else:
                results[task] = _captioning_task(model, samples[task], protocol, progress)
        signals[task] = results[task].pop("_signals")
    everything = [ok for v in signals.values() for ok in v]
    results["all tasks"] = {"signal accuracy": 100 * sum(everything) / len(everything)}
    results["signal accuracy per task"] = {t: 100 * sum(v) / len(v) for t, v in signals.items()}
    return results


def evaluate_suite(suite: str, checkpoint: str, *, baseline: str | None = None, limit: int | None = None,
                   data_dir: str | os.PathLike | None = None, protocol_file: str | os.PathLike | None = None,
                   features=None, progress: bool = True) -> dict:
    """Run `suite` on the system at `checkpoint` (and on `baseline`: "untrained", "none", or the
    protocol's default). `features` overrides the protocol's feature space (tests, custom ones)."""
    protocol = load_protocol(suite, protocol_file)
    if limit is not None and limit < 2:
        raise ValueError(f"limit: expected at least 2 samples per task (a Fréchet distance needs 2), got {limit}")
    start = time.perf_counter()
    samples = {task: _samples(suite, task, protocol, data_dir, limit) for task in protocol["tasks"]}  # fail early
    model = load_system(checkpoint, None if suite != "toy" else protocol["profile"], same_profile=True)
    decoders = Decoders(_decoder_overrides(model.profile, protocol))
    features = features or _features_for(model, protocol)
    systems = {"trained" if checkpoint != "untrained" else "untrained": (checkpoint, model)}
    baseline = protocol.get("baseline", "none") if baseline is None else baseline
    if baseline not in ("none", "untrained"):
        raise ValueError(f"baseline: expected 'untrained' or 'none', got {baseline!r}")
    if baseline == "untrained" and checkpoint != "untrained":
        systems["untrained"] = ("untrained", load_system("untrained", model.profile))
    results = {}
    for k, (name, (ref, system)) in enumerate(systems.items()):
        system.eval()  # the decoder's ceiling does not depend on the system: measured with the first
        results[name] = {"checkpoint": str(ref), "tasks": _evaluate_system(system, suite, protocol, samples, features,
                                                                           decoders, progress, ceiling=k == 0)}
    return {"suite": suite, "protocol": protocol, "features": features.name, "profile": model.profile.name,
            "samples": {t: len(v) for t, v in samples.items()}, "systems": results, "paper": PAPER.get(suite, {}),
            "seconds": round(time.perf_counter() - start, 1)}


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------
def rows(report: dict) -> list[tuple[str, str, dict[str, float | None], float | None]]:
    """(task, metric, {system: value}, paper value) for every number in the report."""
    names = list(report["systems"])
    first = report["systems"][names[0]]["tasks"]
    out = []
    for task, values in first.items():
        if task == "signal accuracy per task":
            continue
        paper = report["paper"].get(task, {})
        metric_names = [m for m in values if m != "examples"] + [m for m in paper if m not in values]
        for metric in metric_names:
            per = {n: report["systems"][n]["tasks"][task].get(metric) for n in names}
            out.append((task, metric, per, paper.get(metric)))
    return out


def better(metric: str, a: float | None, b: float | None) -> bool:
    """Whether a is better than b for this metric (None, not measured for that system: never better)."""
    if a is None or b is None:
        return False
    return a < b if metric in LOWER_IS_BETTER else a > b


def markdown(report: dict) -> str:
    names = list(report["systems"])
    has_paper = bool(report["paper"])
    head = ["task", "metric", *names] + (["NExT-GPT (paper)"] if has_paper else [])
    lines = [f"### Suite `{report['suite']}` ({report['profile']} profile, {report['seconds']} s)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task, metric, per, paper in rows(report):
        arrow = " (lower is better)" if metric in LOWER_IS_BETTER else ""
        cells = [task, metric + arrow] + ["—" if per[n] is None else f"{per[n]:.4g}" for n in names]
        if has_paper:
            cells.append("—" if paper is None else f"{paper:g}")
        lines.append("| " + " | ".join(cells) + " |")
    p = report["protocol"]
    lines += ["", p.get("about", ""), "", f"Samples per task: {report['samples']}. Features: {report['features']}.",
              "Protocol: " + ", ".join(f"{k}={v}" for k, v in p.items() if k not in ("about", "tasks")) + "."]
    if has_paper:
        lines.append("The paper's numbers come from its own, unreleased protocol and feature extractors: compare trends, not digits.")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """results.json and results.md in `out_dir`, each written to a temporary file and renamed."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir}: exists and is not a folder (--out expects a folder)")
    paths = out_dir / "results.json", out_dir / "results.md"
    with atomic_path(paths[0]) as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=str))
    with atomic_path(paths[1]) as tmp:
        tmp.write_text(markdown(report))
    return paths
