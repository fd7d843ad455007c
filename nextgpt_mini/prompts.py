"""Chapters 02 and 06: prompt assembly: conversation templates, soft-token slots, masked labels, padded batches.

A dialogue (our MosIT format, `nextgpt_mini/data/mosit.py`) becomes a list of `Segment`s:
text the model only reads (labels -100), text it must produce (the answers, labels = ids), and
media slots where an input projector's soft token goes, wrapped as `<Img>` soft-token `</Img>`.

Templates:
* "nextgpt": NExT-GPT's own `### Human: ... \\n### Assistant: ...\\n###` (paper profile, tiny);
  generation stops at `###`.
* "chat": the model's own chat template (`tokenizer.apply_chat_template`, colab's TinyLlama).
* "legacy": NExT-GPT's released checkpoint as its code trained it (`nextgpt-mini import-nextgpt`):
  the same words, but each segment tokenized on its own as transformers 4.29's slow LLaMA
  tokenizer did (`legacy_encode`), `<Img>` as plain text, no space before a signal run and `▁###`
  after it, and a follow-up turn's "Human:" after the previous answer's "###" (docs/import-nextgpt.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from nextgpt_mini.models.signal_tokens import LEGACY_WRAPPERS, MEDIA_END, MEDIA_START, find_runs

IGNORE = -100
MEDIA_PLACEHOLDER = -1  # an input id that marks a soft-token slot until embeddings are built
STOP = "###"


@dataclass
class Segment:
    text: str = ""
    train: bool = False  # part of an answer: counted in the loss
    media: int | None = None  # index into the example's media list: a soft-token slot
    ids: list[int] | None = None  # already tokenized (the legacy template): used instead of `text`


@dataclass
class Example:
    """One tokenized training example."""

    input_ids: list[int]
    labels: list[int]
    media_positions: list[int] = field(default_factory=list)  # where soft tokens go
    signal_spans: list[tuple[str, int, int]] = field(default_factory=list)  # (modality, start, end) in tokens


def answer_text(turn: dict, signal_tokens: dict[str, list[str]] | None) -> str:
    """The assistant's text, followed by its modality's signal tokens when it asks for media."""
    text = turn["text"]
    out = turn.get("output")
    if out and signal_tokens is not None:
        text = f"{text} {''.join(signal_tokens[out['modality']])}"
    return text


def dialogue_segments(turns: list[dict], template: str = "nextgpt", signal_tokens=None, tokenizer=None) -> list[Segment]:
    """Turn a dialogue into segments. Media of user turns become slots, numbered in order."""
    if template == "nextgpt":
        return _nextgpt_segments(turns, signal_tokens)
    if template in ("chat", "legacy") and tokenizer is None:
        raise ValueError(f"the {template!r} template needs the tokenizer")
    if template == "chat":
        return _chat_segments(turns, signal_tokens, tokenizer)
    if template == "legacy":
        return _legacy_segments(turns, signal_tokens, tokenizer)
    raise ValueError(f"unknown template {template!r}: expected 'nextgpt', 'chat' or 'legacy'")


def _media_segments(turn: dict, counter: list[int]) -> list[Segment]:
    out = []
    for _ in turn.get("media", []):
        out += [Segment(MEDIA_START), Segment(media=counter[0]), Segment(MEDIA_END)]
        counter[0] += 1
    return out


def _nextgpt_segments(turns, signal_tokens) -> list[Segment]:
    segs: list[Segment] = []
    counter = [0]
    for turn in turns:
        if turn["role"] == "user":
            if turn.get("media"):
                segs.append(Segment("### Human: "))
                segs += _media_segments(turn, counter)
                segs.append(Segment(f" {turn['text']}\n### Assistant:"))
            else:
                # one segment, so a text-only prompt tokenizes exactly as the same text typed by hand
                segs.append(Segment(f"### Human: {turn['text']}\n### Assistant:"))
        else:
            segs.append(Segment(f" {answer_text(turn, signal_tokens)}\n{STOP}", train=True))
            segs.append(Segment("\n"))
    return segs


def _chat_segments(turns, signal_tokens, tokenizer) -> list[Segment]:
    """Render with the tokenizer's chat template; answers are found as differences of prefixes."""
    segs: list[Segment] = []
    counter = [0]
    messages: list[dict] = []
    rendered = ""
    for turn in turns:
        if turn["role"] == "user":
            slot = f"{MEDIA_START}\x00{MEDIA_END} " * len(turn.get("media", []))
            messages.append({"role": "user", "content": slot + turn["text"]})
            full = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            piece = full[len(rendered):]
            for k, part in enumerate(piece.split("\x00")):
                if k:
                    segs.append(Segment(media=counter[0]))
                    counter[0] += 1
                segs.append(Segment(part))
        else:
            messages.append({"role": "assistant", "content": answer_text(turn, signal_tokens)})
            full = tokenizer.apply_chat_template(messages, tokenize=False)
            segs.append(Segment(full[len(rendered):], train=True))
        rendered = full
    return segs


def _legacy_segments(turns, signal_tokens, tokenizer) -> list[Segment]:
    """NExT-GPT's stage-3 training format (its `build_one_instance_stage_3` and `prompt_wrap`):

    [BOS] "### Human: <Img>" soft "</Img> q1\n### Assistant: " | "a1[IMG0] [IMG1] ..\n###" |
    "Human: q2\n### Assistant: " | "a2\n###" ...  (| = a separate tokenizer call; a text-only first
    turn is "### Human: " | "q1\n### Assistant: "). The turn being answered ends "Assistant:"
    without the space, as the original's inference prompt does. Several media items in one turn (the
    original had one) are "<Img>" soft "</Img><Img>" soft ... "</Img>"."""
    added = LEGACY_WRAPPERS + tuple(t for group in (signal_tokens or {}).values() for t in group)

    def seg(text: str, **kw) -> Segment:
        return Segment(text, ids=legacy_encode(tokenizer, text, added), **kw)

    segs: list[Segment] = []
    counter = [0]
    for k, turn in enumerate(turns):
        if turn["role"] != "user":
            out = turn.get("output")
            run = " ".join(signal_tokens[out["modality"]]) if out and signal_tokens is not None else ""
            segs.append(seg(f"{turn['text']}{run}\n{STOP}", train=True))
            continue
        head = "### Human: " if k == 0 else "Human: "
        tail = "\n### Assistant:" + ("" if k == len(turns) - 1 else " ")
        media = turn.get("media", [])
        if media:
            segs.append(seg(head + "<Img>"))
            for j in range(len(media)):
                if j:
                    segs.append(seg("</Img><Img>"))
                segs.append(Segment(media=counter[0]))
                counter[0] += 1
            segs.append(seg(f"</Img> {turn['text']}{tail}"))
        elif k == 0:
            segs += [seg(head), seg(f"{turn['text']}{tail}")]
        else:
            segs.append(seg(f"{head}{turn['text']}{tail}"))
    return segs


def legacy_encode(tokenizer, text: str, added: tuple[str, ...]) -> list[int]:
    """Ids as transformers 4.29's slow LlamaTokenizer gave them (NExT-GPT's pin), whatever this
    transformers does: the text is split at the added tokens, the whitespace on both sides of each
    is dropped (4.29 stripped around added tokens given as plain strings), and every remaining
    piece is encoded on its own, so each gets SentencePiece's leading "▁"."""
    if not text:
        return []
    parts = re.split("(" + "|".join(re.escape(t) for t in sorted(added, key=len, reverse=True)) + ")", text) if added else [text]
    ids: list[int] = []
    for k, part in enumerate(parts):
        if k % 2:  # an added token
            ids.append(tokenizer.convert_tokens_to_ids(part))
            continue
        if k > 0:
            part = part.lstrip()
        if k < len(parts) - 1:
            part = part.rstrip()
        if part:
            ids += tokenizer(part, add_special_tokens=False)["input_ids"]
    return ids


def tokenize_segments(segments: list[Segment], tokenizer, max_length: int, bos: bool = True,
                      signal_ids: dict[str, list[int]] | None = None) -> Example:
    """Token ids, labels (-100 outside answers), soft-token positions and signal-token spans.

    Raises ValueError when the prompt alone does not fit `max_length` (truncating it would drop
    the media or the question); answers are cut at the end instead.
    """
    ids: list[int] = [tokenizer.bos_token_id] if bos and tokenizer.bos_token_id is not None else []
    labels: list[int] = [IGNORE] * len(ids)
    media_positions: list[int] = []
    for seg in segments:
        if seg.media is not None:
            media_positions.append(len(ids))
            ids.append(MEDIA_PLACEHOLDER)
            labels.append(IGNORE)
            continue
        if seg.ids is not None:
            piece = seg.ids
        elif not seg.text:
            continue
        else:
            piece = tokenizer(seg.text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if seg.train else [IGNORE] * len(piece)
    first_answer = next((k for k, lab in enumerate(labels) if lab != IGNORE), len(ids))
    if first_answer >= max_length or (media_positions and media_positions[-1] >= max_length):
        raise ValueError(f"the prompt is {first_answer} tokens long, over the model's limit of {max_length}")
    ids, labels = ids[:max_length], labels[:max_length]
    # signal-token runs inside answers: where the output projector reads
    spans = find_runs(ids, signal_ids, [lab != IGNORE for lab in labels]) if signal_ids else []
    return Example(ids, labels, media_positions, spans)


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; attention_mask is 0 on padding, labels are -100 there."""
    width = max(len(e.input_ids) for e in examples)
    batch = len(examples)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    labels = torch.full((batch, width), IGNORE, dtype=torch.long)
    attention = torch.zeros((batch, width), dtype=torch.long)
    for b, e in enumerate(examples):
        n = len(e.input_ids)
        input_ids[b, :n] = torch.tensor(e.input_ids)
        labels[b, :n] = torch.tensor(e.labels)
        attention[b, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


def embed_with_media(embed_tokens, input_ids: torch.Tensor, soft_tokens: list[torch.Tensor] | None) -> torch.Tensor:
    """Token embeddings with each MEDIA_PLACEHOLDER replaced by the example's soft tokens.

    `soft_tokens[b]` is [n_media_b, hidden] in slot order. Replacing (not concatenating) keeps the
    sequence length and positions exactly those of the tokenized prompt.
    """
    slots = input_ids == MEDIA_PLACEHOLDER
    embeds = embed_tokens(input_ids.masked_fill(slots, 0))
    if not slots.any():
        return embeds
    if soft_tokens is None:
        raise ValueError("the prompt has media slots but no soft tokens were given")
    embeds = embeds.clone()
    for b in range(input_ids.shape[0]):
        rows = slots[b].nonzero(as_tuple=True)[0]
        if len(rows) != (0 if soft_tokens[b] is None else soft_tokens[b].shape[0]):
            raise ValueError(f"example {b}: {len(rows)} media slots but {0 if soft_tokens[b] is None else soft_tokens[b].shape[0]} soft tokens")
        if len(rows):
            embeds[b, rows] = soft_tokens[b].to(embeds.dtype)
    return embeds


def plain_text(segments: list[Segment]) -> str:
    """Segments as one string (slots shown as <media>), for printing prompts in notebooks."""
    return "".join("<media>" if s.media is not None else s.text for s in segments)
