"""Pretraining the tiny profile's LLM: a toy-width LLaMA that learns the toy world's language.

In NExT-GPT the LLM (Vicuna) arrives pretrained and stays frozen; the system only teaches it to
read and write media. The tiny profile mirrors that: `build_tiny_llm` trains a
`LlamaForCausalLM` at the profile's toy width (`tiny_llama_config`) by plain causal language
modelling on the toy world's text, and the result ships in `nextgpt_mini/assets/tiny_llm/`
(`nextgpt-mini build-tiny llm`), where `load_llm(load_profile("tiny").llm)` finds it offline.

The corpus is what the later stages will show the model, minus the media:

* captions of every modality, one per document: `<s> a big red circle on the left </s>`;
* MosIT-style dialogues rendered with NExT-GPT's template exactly as training renders them
  (`prompts.dialogue_segments` + `prompts.tokenize_segments`, segment by segment), with the media
  slots and their `<Img>`/`</Img>` wrappers left out (those tokens join the vocabulary only
  later), so the model learns `### Human: ... \\n### Assistant: ...\\n###`, the world's words and
  its rules ("A red circle makes a low steady tone.").

* **reading documents**: a large LLM can read a vector it has never seen as a word (that is
  what stage 1 relies on); a 1 M-parameter LLM trained only on text cannot: with the text-only
  corpus, even a soft token optimised freely per example left its caption loss where it was. So,
  as part of its general education, the tiny LLM also reads dialogues whose media slot
  `<Img> . </Img>` holds one vector: the mean of the embeddings of the item's caption tokens,
  plus noise (a "bag of words" in one position). It learns to read one vector as words, the
  skill big LLMs bring from scale. Stage 1 still has to learn the hard part: turning ImageBind
  embeddings into vectors the LLM reads this way. `<Img>` and `</Img>` are therefore ordinary
  (pretrained, frozen) tokens of the tiny LLM's vocabulary.

Only `split="train"` text is used, so the held-out colour+shape pairs stay unseen; the
validation set is `split="test"` text (half of it about the held-out pairs).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from nextgpt_mini.prompts import IGNORE, STOP, dialogue_segments, tokenize_segments
from nextgpt_mini.utils import torch_threads

TINY_LLM_FOLDER = "tiny_llm"


@dataclass
class PretrainConfig:
    """How the tiny LLM is pretrained. `quick()` is the same recipe at test size."""

    n_captions: int = 1000  # per modality (image, video, audio)
    n_dialogues: int = 4000  # all tasks, in turn
    # more dialogues of the text-only tasks, whose answers the question decides (copying a caption,
    # the sound rule): the skills that the frozen LLM later lends to every stage. Without them the
    # model answered from its priors (0/11 held-out T->T answers right); with them it copies.
    n_text_dialogues: int = 4000
    n_reading: int = 6000  # reading documents (soft-token slots), all media tasks and captions
    reading_noise: float = 0.1  # noise on a slot vector, relative to its norm
    n_val_captions: int = 100  # per modality, split="test"
    n_val_dialogues: int = 300
    block_size: int = 128  # the profile's llm.max_length
    batch_size: int = 8
    steps: int = 2000
    lr: float = 3e-3
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    # One thread: the same bytes on every rerun (no thread-count-dependent reduction order), and
    # on a shared 2-core machine two OpenMP threads fighting a busy core ran ~8x slower than one.
    threads: int = 1

    @classmethod
    def quick(cls) -> "PretrainConfig":
        return cls(n_captions=60, n_dialogues=120, n_val_captions=10, n_text_dialogues=40, n_val_dialogues=22,
                   n_reading=40, batch_size=4, steps=12)


# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------
def lm_segments(turns: list[dict]):
    """A dialogue's NExT-GPT segments without media: the slots and their `<Img>`/`</Img>` wrappers go."""
    from nextgpt_mini.models.signal_tokens import MEDIA_END, MEDIA_START

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
    import random

    from nextgpt_mini.data import mosit
    from nextgpt_mini.tiny import world as tw

    docs = []
    for modality in ("image", "video", "audio"):
        docs += [caption_ids(item.caption, tokenizer) for item in tw.sample_items(modality, n_captions, seed=seed, split=split)]
    rng = random.Random(f"{split}:{seed}:joined")
    dialogues = mosit.toy_dialogues(n_dialogues, seed=seed, split=split)
    dialogues += mosit.toy_dialogues(n_text_dialogues, seed=seed + 1000, split=split, tasks=TEXT_TASKS)
    for d in dialogues:
        docs.append(dialogue_ids(d["turns"], tokenizer, max_length, joined=rng.random() < joined_fraction))
    return docs


def reading_documents(tokenizer, split: str, n: int, seed: int = 0, max_length: int = 128):
    """Dialogues whose media slots hold a bag-of-words vector: returns (docs, slots).

    docs[k] is token ids with -1 at each slot; slots[k] is [(position, caption token ids)]. Half
    are the media tasks of the MosIT dialogues, half stage-1 style "Describe this ..." requests.
    """
    from nextgpt_mini.data import mosit
    from nextgpt_mini.tiny import world as tw
    from nextgpt_mini.prompts import MEDIA_PLACEHOLDER
    from nextgpt_mini.training.stage1 import INSTRUCTIONS

    media_tasks = tuple(t for t in mosit.TASKS if not t.startswith("T->"))
    dialogues = mosit.toy_dialogues(n - n // 2, seed=seed + 2000, split=split, tasks=media_tasks)
    for k, modality in enumerate(("image", "video", "audio") * (n // 6 + 1)):
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
    from nextgpt_mini.data import mosit
    from nextgpt_mini.tiny import world as tw

    lines = [i.caption for m in ("image", "video", "audio") for i in tw.sample_items(m, n_captions, seed=seed, split=split)]
    lines += ["".join(s.text for s in lm_segments(d["turns"])) for d in mosit.toy_dialogues(n_dialogues, seed=seed, split=split)]
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


def embed_rows(model, ids: torch.Tensor, row_slots: list[list] | None, noise: float = 0.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Input embeddings of packed rows, each slot filled with the mean embedding of its bag."""
    table = model.get_input_embeddings()
    x = table(ids.clamp(min=0))
    if not row_slots or not any(row_slots):
        return x
    where, vectors = [], []
    for r, slots in enumerate(row_slots):
        for pos, bag in slots:
            v = table.weight[torch.tensor(bag)].mean(0)
            if noise:
                v = v + noise * v.detach().norm() / v.numel() ** 0.5 * torch.randn(v.shape, generator=generator)
            where.append((r, pos))
            vectors.append(v)
    index = torch.tensor(where)
    return x.index_put((index[:, 0], index[:, 1]), torch.stack(vectors))


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def lm_loss(model, ids: torch.Tensor, labels: torch.Tensor, batch_size: int = 32, row_slots: list | None = None) -> float:
    """Mean next-token NLL (nats per token) over all non-padding targets."""
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for k in range(0, ids.shape[0], batch_size):
            x = embed_rows(model, ids[k : k + batch_size], row_slots[k : k + batch_size] if row_slots else None)
            logits = model(inputs_embeds=x).logits[:, :-1].float()
            target = labels[k : k + batch_size, 1:]
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE, reduction="sum")
            total += nll.item()
            count += int((target != IGNORE).sum())
    model.train(was_training)
    return total / max(count, 1)


def pretrain_tiny_llm(llm_cfg, tokenizer, cfg: PretrainConfig | None = None, progress: bool = True):
    """Train a fresh tiny LLaMA on the toy world's text. Returns (model, report).

    The report holds the step count, the corpus sizes, and train/validation loss before and
    after (train loss on a fixed sample of training rows, so both numbers are comparable).
    """
    from tqdm.auto import tqdm
    from transformers import LlamaForCausalLM

    from nextgpt_mini.models.llm import tiny_llama_config
    from nextgpt_mini.training.trainer import warmup_cosine

    cfg = cfg or PretrainConfig()
    with torch_threads(cfg.threads):
        train_docs = corpus_documents(tokenizer, "train", cfg.n_captions, cfg.n_dialogues, cfg.seed, cfg.block_size,
                                      n_text_dialogues=cfg.n_text_dialogues)
        val_docs = corpus_documents(tokenizer, "test", cfg.n_val_captions, cfg.n_val_dialogues, cfg.seed, cfg.block_size)
        read_docs, read_slots = reading_documents(tokenizer, "train", cfg.n_reading, cfg.seed, cfg.block_size)
        val_read, val_read_slots = reading_documents(tokenizer, "test", max(cfg.n_reading // 10, 6), cfg.seed, cfg.block_size)
        train_slots = [[] for _ in train_docs] + read_slots
        train_docs = train_docs + read_docs
        # shuffled once (seeded) so that captions fill the gaps between dialogues in the rows
        mix = torch.randperm(len(train_docs), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
        ids, labels, slots = pack([train_docs[k] for k in mix], cfg.block_size, tokenizer.pad_token_id,
                                  [train_slots[k] for k in mix])
        val_ids, val_labels, val_slots = pack(val_docs + val_read, cfg.block_size, tokenizer.pad_token_id,
                                              [[] for _ in val_docs] + val_read_slots)
        probe = torch.arange(0, ids.shape[0], max(ids.shape[0] // 64, 1))[:64]  # fixed train sample

        torch.manual_seed(cfg.seed)
        model = LlamaForCausalLM(tiny_llama_config(llm_cfg, vocab_size=len(tokenizer)))
        model.train()
        report = {
            "params": sum(p.numel() for p in model.parameters()),
            "train_tokens": int((labels != IGNORE).sum()),
            "train_rows": ids.shape[0],
            "val_tokens": int((val_labels != IGNORE).sum()),
            "steps": cfg.steps,
            "reading_documents": len(read_docs),
            "train_loss_before": lm_loss(model, ids[probe], labels[probe], row_slots=[slots[i] for i in probe]),
            "val_loss_before": lm_loss(model, val_ids, val_labels, row_slots=val_slots),
        }

        decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr, betas=cfg.betas,
        )
        warmup = max(int(cfg.warmup_ratio * cfg.steps), 1)
        sched = warmup_cosine(opt, warmup, cfg.steps, floor=cfg.min_lr_ratio)
        gen = torch.Generator().manual_seed(cfg.seed)
        order = torch.randperm(ids.shape[0], generator=gen)
        cursor = 0
        start = time.perf_counter()
        bar = tqdm(range(cfg.steps), desc="pretraining the tiny LLM", disable=not progress, mininterval=1.0)
        for step in bar:
            if cursor + cfg.batch_size > len(order):
                order, cursor = torch.randperm(ids.shape[0], generator=gen), 0
            rows = order[cursor : cursor + cfg.batch_size]
            cursor += cfg.batch_size
            x = embed_rows(model, ids[rows], [slots[i] for i in rows.tolist()], cfg.reading_noise, gen)
            loss = model(inputs_embeds=x, labels=labels[rows]).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            if step % 10 == 0 or step == cfg.steps - 1:
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{sched.get_last_lr()[0]:.1e}")
        report["train_seconds"] = time.perf_counter() - start
        report["train_loss_after"] = lm_loss(model, ids[probe], labels[probe], row_slots=[slots[i] for i in probe])
        report["val_loss_after"] = lm_loss(model, val_ids, val_labels, row_slots=val_slots)
        report["reading"] = reading_accuracy(model, tokenizer)
        report["epochs"] = cfg.steps * cfg.batch_size / ids.shape[0]
    model.eval()
    model.requires_grad_(False)
    return model, report


# --------------------------------------------------------------------------------------------
# Greedy generation (the template's stop string is "###")
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def greedy_continue(model, tokenizer, ids: list[int], max_new_tokens: int = 40, stop: str | None = STOP) -> str:
    """Greedy decoding from token ids; returns the new text, cut before `stop` or `</s>`."""
    new: list[int] = []
    for _ in range(max_new_tokens):  # no KV cache: sequences are short and the model is tiny
        logits = model(input_ids=torch.tensor([ids + new]), use_cache=False).logits
        nxt = int(logits[0, -1].argmax())
        if nxt == tokenizer.eos_token_id:
            break
        new.append(nxt)
        if stop and stop in tokenizer.decode(new):
            break
    text = tokenizer.decode(new)
    return text.split(stop)[0] if stop else text


def answer(model, tokenizer, question: str, max_new_tokens: int = 40, max_length: int = 128) -> str:
    """The model's greedy answer to one text-only user turn, in NExT-GPT's template."""
    segs = dialogue_segments([{"role": "user", "text": question}], "nextgpt")
    ids = tokenize_segments(segs, tokenizer, max_length, bos=True).input_ids
    return greedy_continue(model, tokenizer, ids, max_new_tokens).strip()


def complete(model, tokenizer, text: str, max_new_tokens: int = 20) -> str:
    """Greedy continuation of raw text (after `<s>`), up to `</s>`, "###" or a newline."""
    ids = [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]
    return greedy_continue(model, tokenizer, ids, max_new_tokens, stop=STOP).split("\n")[0]


def answer_accuracy(model, tokenizer, split: str = "test", n: int = 44, seed: int = 1,
                    tasks: tuple[str, ...] = TEXT_TASKS) -> dict[str, tuple[int, int]]:
    """Exact-match rate of greedy answers to the world's text-only questions.

    Returns {"<task> seen" / "<task> held-out": (right, asked)}; "held-out" questions name a
    colour+shape pair that never appears in the training text. (`split="test"` dialogues are all
    about held-out pairs; `split="train"` with a seed other than the training one gives new
    questions about seen pairs.) "Play the sound of a red circle." does not name the size, so no
    model can know the noise word of the T->A answer: there exact matches are partly luck.
    """
    from nextgpt_mini.data import mosit
    from nextgpt_mini.tiny import world as tw

    held = [f"{c} {s}" for c, s in tw.HELD_OUT_PAIRS]
    out: dict[str, list[int]] = {}
    for d in mosit.toy_dialogues(n, seed=seed, split=split, tasks=tasks):
        q, a = d["turns"][0]["text"], d["turns"][1]["text"]
        key = f"{d['task']} {'held-out' if any(h in q for h in held) else 'seen'}"
        right, asked = out.setdefault(key, [0, 0])
        out[key] = [right + (answer(model, tokenizer, q) == a), asked + 1]
    return {k: tuple(v) for k, v in sorted(out.items())}


@torch.no_grad()
def reading_accuracy(model, tokenizer, n: int = 30, split: str = "test", seed: int = 3) -> tuple[int, int]:
    """How often the model, given a bag-of-words slot for a caption, names every attribute."""
    from nextgpt_mini.tiny import world as tw
    from nextgpt_mini.data.mosit import strip_answer
    from nextgpt_mini.training.stage1 import INSTRUCTIONS

    right = 0
    for k in range(n):
        modality = ("image", "video", "audio")[k % 3]
        item = tw.sample_items(modality, 1, seed=seed * 101 + k, split=split)[0]
        turns = [{"role": "user", "text": INSTRUCTIONS[modality][0], "media": [{"modality": modality}]}]
        ex = tokenize_segments(dialogue_segments(turns, "nextgpt"), tokenizer, 128, bos=True)
        bag = tokenizer(item.caption, add_special_tokens=False)["input_ids"]
        new: list[int] = []
        for _ in range(24):
            ids = torch.tensor([ex.input_ids + new])
            x = embed_rows(model, ids, [[(ex.media_positions[0], bag)]])
            nxt = int(model(inputs_embeds=x).logits[0, -1].argmax())
            if nxt == tokenizer.eos_token_id or STOP in tokenizer.decode(new):
                break
            new.append(nxt)
        said = strip_answer(tokenizer.decode(new).split(STOP)[0])
        right += all(tw.attribute_scores(said, item).values())
    return right, n


# --------------------------------------------------------------------------------------------
# The shipped asset
# --------------------------------------------------------------------------------------------
SAMPLE_QUESTIONS = (
    "What sound does a red circle make?",  # training pair
    "What does a purple square sound like?",  # training pair
    "What sound does a blue circle make?",  # held out: blue + circle never seen together
    "What sound does a red triangle make?",  # held out
)
SAMPLE_CAPTIONS = ("a big green", "an orange square moving")


def tiny_llm_tokenizer(tokenizer):
    """The tiny tokenizer plus the media wrappers `<Img>`, `</Img>` (ids 485, 486)."""
    from nextgpt_mini.models.signal_tokens import MEDIA_END, MEDIA_START

    tokenizer.add_tokens([MEDIA_START, MEDIA_END], special_tokens=True)
    return tokenizer


def _drop_loading_flags(path: Path) -> None:
    """transformers records how the tokenizer was loaded (`local_files_only` follows HF_HUB_OFFLINE):
    not part of the tokenizer, and it would make the shipped bytes depend on the environment."""
    import json

    config = json.loads(path.read_text())
    config.pop("local_files_only", None)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def _save_atomically(model, tokenizer, out: Path) -> list[Path]:
    """Write into a temporary sibling folder, then swap it into place: never a half-written folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _drop_loading_flags(tmp / "tokenizer_config.json")
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700 folders; give the usual permissions
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~mask)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
        if old.exists():
            shutil.rmtree(old)
    return sorted(p for p in out.iterdir() if p.is_file())


def build_tiny_llm(out: Path, quick: bool = False, progress: bool = True) -> list[Path]:
    """Pretrain the tiny LLM and save it (model + tokenizer files) to `out`; returns the files."""
    from nextgpt_mini.profiles import load_profile
    from nextgpt_mini.tiny.tokenizer import load_tiny_tokenizer
    from nextgpt_mini.utils import ASSETS

    out = Path(out)
    if quick and out.resolve() == (ASSETS / TINY_LLM_FOLDER).resolve():
        raise ValueError("a --quick build would replace the shipped tiny LLM; give it --out DIR")
    llm_cfg = load_profile("tiny").llm
    tokenizer = tiny_llm_tokenizer(load_tiny_tokenizer())
    cfg = PretrainConfig.quick() if quick else PretrainConfig(block_size=llm_cfg.max_length)
    model, rep = pretrain_tiny_llm(llm_cfg, tokenizer, cfg, progress=progress)
    files = _save_atomically(model, tokenizer, out)

    print(
        f"tiny LLM: {rep['params'] / 1e6:.2f} M parameters, {rep['steps']} steps x {cfg.batch_size} rows of "
        f"{cfg.block_size} tokens ({rep['epochs']:.1f} epochs of {rep['train_tokens']} tokens) in {rep['train_seconds']:.0f} s"
    )
    for part in ("train", "val"):
        b, a = rep[f"{part}_loss_before"], rep[f"{part}_loss_after"]
        print(f"  {part} loss {b:.3f} -> {a:.3f} (perplexity {math.exp(b):.1f} -> {math.exp(a):.2f})")
    print(f"  (uniform guess over {len(tokenizer)} tokens: {math.log(len(tokenizer)):.3f})")
    print(f"  reads a bag-of-words soft token: {rep['reading'][0]}/{rep['reading'][1]} held-out captions with every attribute right")
    with torch_threads(cfg.threads):
        for q in SAMPLE_QUESTIONS:
            print(f"  ### Human: {q}\n  ### Assistant: {answer(model, tokenizer, q)}")
        for c in SAMPLE_CAPTIONS:
            print(f"  {c!r} -> {c}{complete(model, tokenizer, c)!r}")
        if not quick:
            acc = {**answer_accuracy(model, tokenizer, "train", 80, seed=cfg.seed + 1), **answer_accuracy(model, tokenizer, "test", 40)}
            print("  exact greedy answers to new questions: " + ", ".join(f"{k} {r}/{n}" for k, (r, n) in acc.items()))
    return files
