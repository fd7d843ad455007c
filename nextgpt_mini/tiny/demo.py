"""Chapters 00-07, end to end: `nextgpt-mini demo` (what `make demo` runs) does everything the
package can do on the tiny CPU profile, and gives an honest account of what it did.

It renders toy-world media, checks the shipped encoder, trains the three stages (progress bars),
holds a scripted conversation covering T->I, I->T, T->A, A->T, T->V and V->T, saves the trained
system with `save_pretrained`, and writes every output plus `report.html` to the output folder.
`quick=True` runs a few steps per stage (for tests); the numbers are then meaningless.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

from nextgpt_mini.constants import MODALITIES
from nextgpt_mini.encode import Text, encode
from nextgpt_mini.files import save_audio, save_image, save_video
from nextgpt_mini.generation import save_result
from nextgpt_mini.models.decoders import Decoders
from nextgpt_mini.models.imagebind_weights import load_encoder
from nextgpt_mini.models.nextgpt import NextGPT
from nextgpt_mini.profiles import load_profile
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.data import reading_report, run_stage1, run_stage2, run_stage3
from nextgpt_mini.tiny.dialogues import toy_dialogues
from nextgpt_mini.tiny.tokenizer import load_tiny_tokenizer
from nextgpt_mini.training.report import summary_lines
from nextgpt_mini.utils import atomic_write_text, torch_threads

CONVERSATION = (  # (direction, prompt, input file written in step 1 or None)
    ("T->I", "Show me a big red circle on the left.", None),
    ("I->T", "What is in this picture?", "image.png"),
    ("T->A", "Play a low steady tone over white noise.", None),
    ("A->T", "What do you hear?", "audio.wav"),
    ("T->V", "Make a video of a blue square moving up slowly.", None),
    ("V->T", "What happens in this video?", "video.mp4"),
)


def run_demo(out_dir: str | Path = "outputs/demo", quick: bool = False) -> int:
    start = time.perf_counter()
    out = Path(out_dir)
    profile = load_profile("tiny")
    print(f"profile: {profile.name} (encoder {profile.encoder.out_embed_dim}-d, LLM hidden {profile.llm.hidden_size})")

    print("1. the toy world: an image, a video and the video's soundtrack, rendered and saved")
    image, video, sound = render_media(out)
    print("2. a modality-switching dialogue from the toy world (MosIT format)")
    dialogue = show_dialogue()
    print("3. the tiny tokenizer (shipped in the package) on the dialogue's first turn")
    show_tokens(dialogue["turns"][0]["text"])
    # One thread from here on, as `build-tiny system` trains: the sums then run in the same order,
    # so the demo's checkpoint is the shipped system, bit for bit.
    with torch_threads(1):
        print("4. the tiny ImageBind (pretrained on the toy world, shipped) matches across modalities")
        check_encoder(profile, out, image, video)
        print("5. the tiny decoders (Stable Diffusion, Zeroscope and AudioLDM at toy size, trained on the toy world,")
        print("   shipped) generate from each caption's own conditioning, as they will from the output projectors'")
        decoders = show_decoders(profile, out, image, video, sound)
        print("6. the three training stages on toy-world data" + (" (quick: a few steps each)" if quick else ""))
        model, numbers = train_stages(profile, out, quick, decoders)
        print("7. a scripted conversation, every direction")
        turns = converse(model, decoders, out)
        print("8. the trained system, saved (only what was trained)")
        saved = save_system(model, out, turns, numbers)

    print("summary (measured in this run):")
    for line in summary_lines(numbers):
        print(f"   {line}")
    print(f"talk to it: `nextgpt-mini chat --checkpoint {saved}` in a terminal, or in a notebook "
          f"`ChatUI(NextGPT.from_pretrained({str(saved)!r}))` (nextgpt_mini.ui)")
    print(f"done in {time.perf_counter() - start:.1f} s; files in {out}")
    return 0


def save_toy_media(out: Path) -> tuple[tw.ToyItem, tw.ToyItem, tw.ToyItem]:
    """A test-split image and video, and the video's soundtrack, saved into `out` as image.png,
    video.mp4 and audio.wav (the demo's inputs; the web demo's examples)."""
    image = tw.sample_items("image", 1, seed=7, split="test")[0]
    video = tw.sample_items("video", 1, seed=7, split="test")[0]
    sound = tw.soundtrack_of(video)
    save_image(tw.render_image(image, 128), out / "image.png")
    save_video(tw.render_video(video, 96, 2.0, 8), out / "video.mp4", fps=8)
    save_audio(tw.render_audio(sound, 2.0, 16000), out / "audio.wav", 16000)
    return image, video, sound


def render_media(out: Path) -> tuple[tw.ToyItem, tw.ToyItem, tw.ToyItem]:
    """Step 1: `save_toy_media`, with each file's caption printed."""
    image, video, sound = save_toy_media(out)
    for name, item in (("image.png", image), ("video.mp4", video), ("audio.wav", sound)):
        print(f"   {out / name}  caption: {item.caption!r}")
    return image, video, sound


def show_dialogue() -> dict:
    """Step 2: one T->I,A dialogue of the toy world, printed turn by turn."""
    dialogue = toy_dialogues(1, seed=3, tasks=("T->I,A",))[0]
    for turn in dialogue["turns"]:
        wants = f"  [asks for {turn['output']['modality']}: {turn['output']['caption']!r}]" if "output" in turn else ""
        print(f"   {turn['role']:9s}: {turn['text']}{wants}")
    return dialogue


def show_tokens(text: str) -> None:
    """Step 3: the shipped tiny tokenizer's tokens of `text`."""
    tok = load_tiny_tokenizer()
    ids = tok(text)["input_ids"]
    print(f"   {len(ids)} tokens: {tok.convert_ids_to_tokens(ids)}")


def check_encoder(profile, out: Path, image: tw.ToyItem, video: tw.ToyItem) -> None:
    """Step 4: the shipped encoder matches step 1's image and video to their captions, and the
    sound to the video that made it."""
    encoder = load_encoder(profile.encoder)
    captions = [image.caption, video.caption]
    emb = encode([str(out / "image.png"), str(out / "video.mp4"), str(out / "audio.wav")] + [Text(c) for c in captions],
                 encoder=encoder, cfg=profile.encoder, progress=False)
    for k, name in enumerate(("image.png", "video.mp4")):
        sims = emb[k] @ emb[3:].T
        best = int(sims.argmax())
        print(f"   {name} -> caption {captions[best]!r} (right: {best == k})")
    sims = emb[2] @ emb[:2].T
    print(f"   audio.wav -> made by the object in {('image.png', 'video.mp4')[int(sims.argmax())]} (right: {int(sims.argmax()) == 1})")


def show_decoders(profile, out: Path, image: tw.ToyItem, video: tw.ToyItem, sound: tw.ToyItem) -> Decoders:
    """Step 5: each tiny decoder generates from its item's caption conditioning into `out`."""
    decoders = Decoders(profile)
    for m, item, ext in (("image", image, "png"), ("video", video, "mp4"), ("audio", sound, "wav")):
        dec = decoders[m]
        cond = dec.targets([item.caption])
        path = dec.save(dec.generate(cond, seed=0, progress=False)[0], out / f"generated_{m}.{ext}")
        print(f"   {path}  from conditioning {tuple(cond.shape[1:])} of {item.caption!r}")
    return decoders


def train_stages(profile, out: Path, quick: bool, decoders=None):
    """Step 6: stages 1, 2, 3 in order on one model; returns (model, {stage: (steps, seconds, first, last),
    "reading": the media -> text report on 90 held-out questions})."""
    model = NextGPT.from_profile(profile)
    numbers = {}
    for stage, run in (("1", run_stage1), ("2", run_stage2), ("3", run_stage3)):
        steps = 6 if quick else None
        result = run(model, out_dir=str(out / f"stage{stage}"), steps=steps, cache_dir=str(out / ".cache"))
        numbers[stage] = (result.steps, result.seconds, result.first_eval, result.last_eval)
    if not quick:
        numbers["reading"] = reading_report(model, decoders or Decoders(profile), seed=profile.seed)
    return model, numbers


def converse(model, decoders, out: Path) -> list[dict]:
    """Step 7: the CONVERSATION, one fresh turn each; generated media go to out/conversation."""
    turns = []
    for k, (direction, prompt, media) in enumerate(CONVERSATION):
        result = model.generate(prompt, [str(out / media)] if media else None, decoders=decoders)
        paths = save_result(result, out / "conversation", decoders, stem=f"turn{k}")
        made = [p for m in MODALITIES for p in paths[m]]
        shown = ", ".join(p.name for p in made) if made else "text only"
        print(f"   {direction}  user: {prompt}{f' [{media}]' if media else ''}")
        print(f"         model: {result.text}  ({shown})")
        turns.append({"direction": direction, "prompt": prompt, "input": media, "text": result.text,
                      "outputs": [str(p.relative_to(out)) for p in made]})
    return turns


def save_system(model, out: Path, turns: list[dict], numbers: dict) -> Path:
    """Step 8: the trained system into out/checkpoint (`save_pretrained`), and `report.html`."""
    saved = model.save_pretrained(out / "checkpoint")
    size = sum(f.stat().st_size for f in saved.iterdir())
    print(f"   {saved}: {', '.join(sorted(f.name for f in saved.iterdir()))} ({size / 1e6:.2f} MB)")
    report = write_report(out, turns, numbers)
    print(f"   report: {report}")
    return saved


def _media_html(path: str) -> str:
    src = html.escape(path)
    if path.endswith(".png"):
        return f'<img src="{src}" width="128" style="image-rendering: pixelated">'
    if path.endswith(".wav"):
        return f'<audio controls src="{src}"></audio>'
    return f'<video controls loop width="128" src="{src}"></video>'


def write_report(out: Path, turns: list[dict], numbers: dict) -> Path:
    """`report.html`: each turn's prompt, input, answer and generated media, plus the numbers."""
    rows = []
    for t in turns:
        given = _media_html(t["input"]) if t["input"] else ""
        made = " ".join(_media_html(p) for p in t["outputs"])
        rows.append(f"<tr><td>{html.escape(t['direction'])}</td><td>{html.escape(t['prompt'])}<br>{given}</td>"
                    f"<td>{html.escape(t['text'])}<br>{made}</td></tr>")
    facts = "".join(f"<li>{html.escape(line)}</li>" for line in summary_lines(numbers))
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>nextgpt-mini demo</title>
<style>body {{ font-family: sans-serif; margin: 2em; }} td {{ border-top: 1px solid #ccc; padding: .5em; vertical-align: top; }}</style>
</head><body>
<h1>nextgpt-mini demo (tiny profile)</h1>
<p>The tiny system after the three training stages. The decoders are toy-size Stable Diffusion, Zeroscope and
AudioLDM pipelines trained on the toy world and frozen, as NExT-GPT's are: what they draw, animate and sound is
what the output projectors' conditioning asks for, as far as the projector and the decoder get it right.</p>
<table><tr><th>direction</th><th>user</th><th>model</th></tr>
{''.join(rows)}
</table>
<h2>Measured in this run</h2><ul>{facts}</ul>
</body></html>
"""
    atomic_write_text(out / "report.html", page)
    return out / "report.html"
