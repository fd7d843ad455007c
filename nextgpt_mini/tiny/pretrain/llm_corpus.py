"""Chapter 03: what the tiny LLM reads while it is pretrained, as packed rows of token ids.

The corpus is what the later stages will show the model, minus the media:

* captions of every modality, one per document: `<s> a big red circle on the left </s>`;
* MosIT-style dialogues rendered with NExT-GPT's template exactly as training renders them
  (`prompts.dialogue_segments` + `prompts.tokenize_segments`, segment by segment), with the media
  slots and their `<Img>`/`</Img>` wrappers left out (those tokens join the vocabulary only
  later), so the model learns `### Human: ... \\n### Assistant: ...\\n###`, the world's words and
  its rules ("A red circle makes a low steady tone.").

* **reading documents**: a large LLM can read a vector it has never seen as a word (that is
  what stage 1 relies on); a 1 M-parameter LLM trained only on text cannot. So, as part of its
  general education, the tiny LLM also reads dialogues whose media slot
  `<Img> . </Img>` holds one vector: the mean of the embeddings of the item's caption tokens,
  plus noise (a "bag of words" in one position). It learns to read one vector as words, the
  skill big LLMs bring from scale. Each slot is also *uncertain* (`slot_vector`): every attribute
  word gives a random share of its weight to the other values of its attribute, because what a
  projector makes of a perception is blurred exactly there; an LLM that read only exact bags read
  stage 1's tokens no better than 65% (assets/BUILD_RESULTS.md, History). Stage 1 still has to learn the hard part: turning ImageBind
  embeddings into vectors the LLM reads this way. `<Img>` and `</Img>` are therefore ordinary
  (pretrained, frozen) tokens of the tiny LLM's vocabulary.

Only `split="train"` text is used, so the held-out colour+shape pairs stay unseen; the
validation set is `split="test"` text (half of it about the held-out pairs).
"""

from __future__ import annotations

import random

import torch

from nextgpt_mini.constants import MODALITIES
from nextgpt_mini.data import mosit
from nextgpt_mini.models.signal_tokens import MEDIA_END, MEDIA_START
from nextgpt_mini.prompts import IGNORE, MEDIA_PLACEHOLDER, dialogue_segments, tokenize_segments
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.dialogues import TASKS, toy_dialogues
from nextgpt_mini.training.stage1 import INSTRUCTIONS


def lm_segments(turns: list[dict]):
    """A dialogue's NExT-GPT segments without media: the slots and their `<Img>`/`</Img>` wrappers go."""
    segs = dialogue_segments(turns, "nextgpt", signal_tokens=None)
    return [s for s in segs if s.media is None and s.text not in (MEDIA_START, MEDIA_END)]


def dialogue_ids(turns: list[dict], tokenizer, max_length: int, joined: bool = False) -> list[int]:
    """`<s>` + the dialogue + `</s>`, tokenized segment by segment as training does.

    `joined=True` tokenizes the same text as one string instead, as a prompt typed by hand is:
    the two differ where a segment ends in a space ("### Human: " + "What ..." gives a lone
    space token and "What", the whole string gives " What").
    """
    segs = lm_segments(turns)
    if joined:
        ids = [tokenizer.bos_token_id] + tokenizer("".join(s.text for s in segs), add_special_tokens=False)["input_ids"]
        ids = ids[: max_length - 1]
    else:
        ids = tokenize_segments(segs, tokenizer, max_length - 1, bos=True).input_ids
    return ids + [tokenizer.eos_token_id]


def caption_ids(caption: str, tokenizer) -> list[int]:
    return [tokenizer.bos_token_id] + tokenizer(caption, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


TEXT_TASKS = ("T->T", "T->I", "T->V", "T->A")


def corpus_documents(tokenizer, split: str, n_captions: int, n_dialogues: int, seed: int = 0,
                     max_length: int = 128, joined_fraction: float = 0.25, n_text_dialogues: int = 0) -> list[list[int]]:
    """Token ids of every document: captions of the three modalities, dialogues of every task,
    and `n_text_dialogues` more of the text-only tasks (drawn from another seed).

    A seeded `joined_fraction` of the dialogues is tokenized as one string (see `dialogue_ids`),
    so the model also understands prompts typed as plain text.
    """
    docs = []
    for modality in MODALITIES:
        docs += [caption_ids(item.caption, tokenizer) for item in tw.sample_items(modality, n_captions, seed=seed, split=split)]
    rng = random.Random(f"{split}:{seed}:joined")
    dialogues = toy_dialogues(n_dialogues, seed=seed, split=split)
    dialogues += toy_dialogues(n_text_dialogues, seed=seed + 1000, split=split, tasks=TEXT_TASKS)
    for d in dialogues:
        docs.append(dialogue_ids(d["turns"], tokenizer, max_length, joined=rng.random() < joined_fraction))
    return docs


def reading_documents(tokenizer, split: str, n: int, seed: int = 0, max_length: int = 128):
    """Dialogues whose media slots hold a bag-of-words vector: returns (docs, slots).

    docs[k] is token ids with -1 at each slot; slots[k] is [(position, caption token ids)]. Half
    are the media tasks of the MosIT dialogues, half stage-1 style "Describe this ..." requests.
    """
    media_tasks = tuple(t for t in TASKS if not t.startswith("T->"))
    dialogues = toy_dialogues(n - n // 2, seed=seed + 2000, split=split, tasks=media_tasks)
    for k, modality in enumerate(MODALITIES * (n // 6 + 1)):
        if len(dialogues) >= n:
            break
        item = tw.sample_items(modality, 1, seed=seed * 7919 + k, split=split)[0]
        turns = [{"role": "user", "text": INSTRUCTIONS[modality][k % 3], "media": [{"modality": modality, "item": item}]},
                 {"role": "assistant", "text": mosit.describe_answer(modality, item.caption)}]
        dialogues.append({"turns": turns})
    docs, slots = [], []
    for d in dialogues:
        items = [m["item"] for t in d["turns"] for m in t.get("media", [])]
        ex = tokenize_segments(dialogue_segments(d["turns"], "nextgpt"), tokenizer, max_length - 1, bos=True)
        docs.append(ex.input_ids + [tokenizer.eos_token_id])
        bags = [tokenizer(it.caption, add_special_tokens=False)["input_ids"] for it in items]
        slots.append([(pos, bag) for pos, bag in zip(ex.media_positions, bags)])
        assert all(docs[-1][pos] == MEDIA_PLACEHOLDER for pos, _ in slots[-1])
    return docs, slots


def corpus_text(split: str = "train", n_captions: int = 3, n_dialogues: int = 11, seed: int = 0) -> list[str]:
    """The corpus as text, for reading in a notebook (media left out, as in training)."""
    lines = [i.caption for m in MODALITIES for i in tw.sample_items(m, n_captions, seed=seed, split=split)]
    lines += ["".join(s.text for s in lm_segments(d["turns"])) for d in toy_dialogues(n_dialogues, seed=seed, split=split)]
    return lines


def pack(docs: list[list[int]], block_size: int, pad_id: int, slots: list[list] | None = None):
    """Whole documents packed first-fit, in order, into rows of `block_size`; the rest is padding.

    Returns (input_ids, labels) [rows, block_size]; labels are -100 on padding and on soft-token
    slots. With `slots` (one list of (position, bag) per document) it also returns, per row, the
    slots moved to their place in the row. Documents are never cut, so every answer is seen whole;
    short captions fill the gaps that dialogues leave, so rows come out nearly full. Right padding
    needs no attention mask (causal attention never looks forward); each document starts with
    `<s>`, which marks where a new one begins.
    """
    rows: list[list[int]] = []
    row_slots: list[list] = []
    open_rows: list[int] = []  # rows with room for at least a short document
    shortest = min((len(d) for d in docs), default=1)
    for k, doc in enumerate(docs):
        doc = doc[:block_size]
        doc_slots = [(p, b) for p, b in (slots[k] if slots else []) if p < block_size]
        for j, r in enumerate(open_rows):
            if len(rows[r]) + len(doc) <= block_size:
                row_slots[r] += [(len(rows[r]) + p, b) for p, b in doc_slots]
                rows[r] += doc
                if block_size - len(rows[r]) < shortest:
                    open_rows.pop(j)
                break
        else:
            rows.append(list(doc))
            row_slots.append(list(doc_slots))
            if block_size - len(doc) >= shortest:
                open_rows.append(len(rows) - 1)
    ids = torch.full((len(rows), block_size), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), block_size), IGNORE, dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = torch.tensor(row)
        labels[r, : len(row)] = torch.tensor(row)
    labels[ids < 0] = IGNORE
    return (ids, labels, row_slots) if slots is not None else (ids, labels)


def attribute_alternatives(tokenizer) -> dict[int, list[int]]:
    """For the first token of each attribute value's word ("red", "circle", "top"), the first
    tokens of the other values of the same attribute: what an uncertain reading confuses it with."""
    alternatives: dict[int, list[int]] = {}
    for values in tw.ATTRIBUTE_VALUES.values():
        firsts = {tokenizer(" " + v, add_special_tokens=False)["input_ids"][0] for v in values}
        for t in firsts:  # "left" and "right" name a position and a direction: both sets
            alternatives[t] = sorted(set(alternatives.get(t, [])) | (firsts - {t}))
    return alternatives


def slot_vector(table: torch.Tensor, bag: list[int], noise: float = 0.0, mix: float = 0.0,
                alternatives: dict[int, list[int]] | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One slot: the mean embedding of the caption's tokens ("a bag of words in one position").

    With `mix`, the vector is an *uncertain* reading, as a perception projected into the LLM is:
    each attribute word's embedding gives up a random share of its own (up to `mix`, below one
    half, so the true word keeps the largest weight) to a random mixture of the other values of its
    attribute.
    With `noise`, Gaussian noise of that size relative to the vector's norm is added.
    """
    rows = []
    for t in bag:
        e = table[t]
        alts = (alternatives or {}).get(t)
        # a share per word: a projected perception can be sure of the colour and unsure of the shape
        share = float(torch.rand((), generator=generator)) * mix if mix and alts else 0.0
        if share:
            w = -torch.rand(len(alts), generator=generator).log()  # a uniform (Dirichlet(1)) split
            e = (1 - share) * e + share * (w / w.sum()) @ table[torch.tensor(alts)]
        rows.append(e)
    v = torch.stack(rows).mean(0)
    if noise:
        v = v + noise * v.detach().norm() / v.numel() ** 0.5 * torch.randn(v.shape, generator=generator)
    return v


def embed_rows(model, ids: torch.Tensor, row_slots: list[list] | None, noise: float = 0.0,
               generator: torch.Generator | None = None, mix: float = 0.0,
               alternatives: dict[int, list[int]] | None = None) -> torch.Tensor:
    """Input embeddings of packed rows, each slot filled with `slot_vector` of its bag."""
    table = model.get_input_embeddings()
    x = table(ids.clamp(min=0))
    if not row_slots or not any(row_slots):
        return x
    where, vectors = [], []
    for r, slots in enumerate(row_slots):
        for pos, bag in slots:
            where.append((r, pos))
            vectors.append(slot_vector(table.weight, bag, noise, mix, alternatives, generator))
    index = torch.tensor(where)
    return x.index_put((index[:, 0], index[:, 1]), torch.stack(vectors))
