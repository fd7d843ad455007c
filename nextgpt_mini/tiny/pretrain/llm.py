"""Chapter 03: pretraining the tiny profile's LLM: a toy-width LLaMA that learns the toy world's language.

In NExT-GPT the LLM (Vicuna) arrives pretrained and stays frozen; the system only teaches it to
read and write media. The tiny profile mirrors that: `build_tiny_llm` trains a
`LlamaForCausalLM` at the profile's toy width (`tiny_llama_config`) by plain causal language
modelling on the toy world's text, and the result ships in `nextgpt_mini/assets/tiny_llm/`
(`nextgpt-mini build-tiny llm`), where `load_llm(load_profile("tiny").llm)` finds it offline.

What it reads (captions, dialogues without their media, and "reading documents" whose media slot
holds one bag-of-words vector) is built in `llm_corpus`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from nextgpt_mini.constants import MODALITIES
from nextgpt_mini.data.mosit import strip_answer
from nextgpt_mini.generation import greedy_tokens
from nextgpt_mini.models.llm import tiny_llama_config
from nextgpt_mini.models.signal_tokens import MEDIA_END, MEDIA_START
from nextgpt_mini.profiles import load_profile
from nextgpt_mini.prompts import IGNORE, STOP, dialogue_segments, tokenize_segments
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.dialogues import toy_dialogues
from nextgpt_mini.tiny.pretrain.llm_corpus import (
    TEXT_TASKS,
    attribute_alternatives,
    corpus_documents,
    embed_rows,
    pack,
    reading_documents,
)
from nextgpt_mini.tiny.pretrain.loop import EpochBatches, refuse_quick_build_into_package, train_loop
from nextgpt_mini.tiny.tokenizer import load_tiny_tokenizer
from nextgpt_mini.training.stage1 import INSTRUCTIONS
from nextgpt_mini.utils import atomic_folder, torch_threads


@dataclass
class LLMPretrainSettings:
    """How the tiny LLM is pretrained. `quick()` is the same recipe at test size."""

    n_captions: int = 1000  # per modality (image, video, audio)
    n_dialogues: int = 4000  # all tasks, in turn
    # more dialogues of the text-only tasks, whose answers the question decides (copying a caption,
    # the sound rule): the skills that the frozen LLM later lends to every stage; without them the
    # model answers from its priors instead of copying (see assets/BUILD_RESULTS.md, History).
    n_text_dialogues: int = 4000
    n_reading: int = 20000  # reading documents (soft-token slots), all media tasks and captions
    reading_noise: float = 0.1  # noise on a slot vector, relative to its norm
    # the largest share an attribute word of a slot gives to the other values of its attribute
    # (`llm_corpus.slot_vector`): the model learns to read an uncertain vector, as stage 1's are
    reading_mix: float = 0.45
    n_val_captions: int = 100  # per modality, split="test"
    n_val_dialogues: int = 300
    block_size: int = 128  # the profile's llm.max_length
    batch_size: int = 8
    steps: int = 8000
    lr: float = 3e-3
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    # One thread: the same bytes on every rerun (no thread-count-dependent reduction order), and
    # faster than two on a busy machine (see utils.torch_threads).
    threads: int = 1

    @classmethod
    def quick(cls) -> "LLMPretrainSettings":
        return cls(n_captions=60, n_dialogues=120, n_val_captions=10, n_text_dialogues=40, n_val_dialogues=22,
                   n_reading=40, batch_size=4, steps=12)


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


def packed_rows(tokenizer, cfg: LLMPretrainSettings):
    """The corpus packed into rows: ((ids, labels, slots) of training, the same of validation,
    number of reading documents)."""
    train_docs = corpus_documents(tokenizer, "train", cfg.n_captions, cfg.n_dialogues, cfg.seed, cfg.block_size,
                                  n_text_dialogues=cfg.n_text_dialogues)
    val_docs = corpus_documents(tokenizer, "test", cfg.n_val_captions, cfg.n_val_dialogues, cfg.seed, cfg.block_size)
    read_docs, read_slots = reading_documents(tokenizer, "train", cfg.n_reading, cfg.seed, cfg.block_size)
    val_read, val_read_slots = reading_documents(tokenizer, "test", max(cfg.n_reading // 10, 6), cfg.seed, cfg.block_size)
    train_slots = [[] for _ in train_docs] + read_slots
    train_docs = train_docs + read_docs
    # shuffled once (seeded) so that captions fill the gaps between dialogues in the rows
    mix = torch.randperm(len(train_docs), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    train = pack([train_docs[k] for k in mix], cfg.block_size, tokenizer.pad_token_id, [train_slots[k] for k in mix])
    val = pack(val_docs + val_read, cfg.block_size, tokenizer.pad_token_id, [[] for _ in val_docs] + val_read_slots)
    return train, val, len(read_docs)


def pretrain_tiny_llm(llm_cfg, tokenizer, cfg: LLMPretrainSettings | None = None, progress: bool = True):
    """Train a fresh tiny LLaMA on the toy world's text. Returns (model, report).

    The report holds the step count, the corpus sizes, and train/validation loss before and
    after (train loss on a fixed sample of training rows, so both numbers are comparable).
    """
    from transformers import LlamaForCausalLM

    cfg = cfg or LLMPretrainSettings()
    with torch_threads(cfg.threads):
        (ids, labels, slots), (val_ids, val_labels, val_slots), n_reading = packed_rows(tokenizer, cfg)
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
            "reading_documents": n_reading,
            "train_loss_before": lm_loss(model, ids[probe], labels[probe], row_slots=[slots[i] for i in probe]),
            "val_loss_before": lm_loss(model, val_ids, val_labels, row_slots=val_slots),
        }
        gen = torch.Generator().manual_seed(cfg.seed)
        batches = EpochBatches(ids.shape[0], cfg.batch_size, gen)
        alternatives = attribute_alternatives(tokenizer)

        def loss_fn() -> tuple[torch.Tensor, dict]:
            rows = batches.next()
            x = embed_rows(model, ids[rows], [slots[i] for i in rows.tolist()], cfg.reading_noise, gen,
                           cfg.reading_mix, alternatives)
            return model(inputs_embeds=x, labels=labels[rows]).loss, {}

        start = time.perf_counter()
        train_loop(loss_fn, list(model.named_parameters()), cfg.steps, cfg.lr, betas=cfg.betas,
                   weight_decay=cfg.weight_decay, no_decay=lambda name, p: p.ndim < 2,
                   warmup=max(int(cfg.warmup_ratio * cfg.steps), 1), floor=cfg.min_lr_ratio, grad_clip=cfg.grad_clip,
                   desc="pretraining the tiny LLM", progress=progress)
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
def greedy_continue(model, tokenizer, ids: list[int], max_new_tokens: int = 40) -> str:
    """Greedy decoding from token ids (`generation.greedy_tokens`); the new text, cut before "###" or `</s>`."""
    embeds = model.get_input_embeddings()(torch.tensor([ids]))
    return _reply_text(greedy_tokens(model, tokenizer, embeds, max_new_tokens=max_new_tokens)[0], tokenizer)


def _reply_text(new: torch.Tensor, tokenizer) -> str:
    return tokenizer.decode([i for i in new.tolist() if i != tokenizer.eos_token_id]).split(STOP)[0]


def answer(model, tokenizer, question: str, max_new_tokens: int = 40, max_length: int = 128) -> str:
    """The model's greedy answer to one text-only user turn, in NExT-GPT's template."""
    segs = dialogue_segments([{"role": "user", "text": question}], "nextgpt")
    ids = tokenize_segments(segs, tokenizer, max_length, bos=True).input_ids
    return greedy_continue(model, tokenizer, ids, max_new_tokens).strip()


def complete(model, tokenizer, text: str, max_new_tokens: int = 20) -> str:
    """Greedy continuation of raw text (after `<s>`), up to `</s>`, "###" or a newline."""
    ids = [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]
    return greedy_continue(model, tokenizer, ids, max_new_tokens).split("\n")[0]


def answer_accuracy(model, tokenizer, split: str = "test", n: int = 44, seed: int = 1,
                    tasks: tuple[str, ...] = TEXT_TASKS) -> dict[str, tuple[int, int]]:
    """Exact-match rate of greedy answers to the world's text-only questions.

    Returns {"<task> seen" / "<task> held-out": (right, asked)}; "held-out" questions name a
    colour+shape pair that never appears in the training text. (`split="test"` dialogues alternate
    held-out and seen pairs; `split="train"` with a seed other than the training one gives new
    questions about seen pairs.) "Play the sound of a red circle." does not name the size, so no
    model can know the noise word of the T->A answer: there exact matches are partly luck.
    """
    held = [f"{c} {s}" for c, s in tw.HELD_OUT_PAIRS]
    out: dict[str, list[int]] = {}
    for d in toy_dialogues(n, seed=seed, split=split, tasks=tasks):
        q, a = d["turns"][0]["text"], d["turns"][1]["text"]
        key = f"{d['task']} {'held-out' if any(h in q for h in held) else 'seen'}"
        right, asked = out.setdefault(key, [0, 0])
        out[key] = [right + (answer(model, tokenizer, q) == a), asked + 1]
    return {k: tuple(v) for k, v in sorted(out.items())}


@torch.no_grad()
def reading_accuracy(model, tokenizer, n: int = 30, split: str = "test", seed: int = 3) -> tuple[int, int]:
    """How often the model, given a bag-of-words slot for a caption, names every attribute."""
    right = 0
    for k in range(n):
        modality = MODALITIES[k % 3]
        item = tw.sample_items(modality, 1, seed=seed * 101 + k, split=split)[0]
        turns = [{"role": "user", "text": INSTRUCTIONS[modality][0], "media": [{"modality": modality}]}]
        ex = tokenize_segments(dialogue_segments(turns, "nextgpt"), tokenizer, 128, bos=True)
        bag = tokenizer(item.caption, add_special_tokens=False)["input_ids"]
        x = embed_rows(model, torch.tensor([ex.input_ids]), [[(ex.media_positions[0], bag)]])
        said = strip_answer(_reply_text(greedy_tokens(model, tokenizer, x, max_new_tokens=24)[0], tokenizer))
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
    tokenizer.add_tokens([MEDIA_START, MEDIA_END], special_tokens=True)
    return tokenizer


def _drop_loading_flags(path: Path) -> None:
    """transformers records how the tokenizer was loaded (`local_files_only` follows HF_HUB_OFFLINE):
    not part of the tokenizer, and it would make the shipped bytes depend on the environment."""
    config = json.loads(path.read_text())
    config.pop("local_files_only", None)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def save_llm(model, tokenizer, out: Path) -> list[Path]:
    """Model and tokenizer files, swapped into `out` whole (never a half-written folder)."""
    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _drop_loading_flags(tmp / "tokenizer_config.json")
    return sorted(p for p in out.iterdir() if p.is_file())


def build_tiny_llm(out: Path, quick: bool = False, progress: bool = True) -> tuple[list[Path], list[str]]:
    """`nextgpt-mini build-tiny llm`: pretrain the tiny LLM, save it (model + tokenizer files) to
    `out`; returns (files, the measured numbers and sample answers as lines)."""
    out = Path(out)
    refuse_quick_build_into_package(out, quick)
    llm_cfg = load_profile("tiny").llm
    tokenizer = tiny_llm_tokenizer(load_tiny_tokenizer())
    cfg = LLMPretrainSettings.quick() if quick else LLMPretrainSettings(block_size=llm_cfg.max_length)
    model, rep = pretrain_tiny_llm(llm_cfg, tokenizer, cfg, progress=progress)
    files = save_llm(model, tokenizer, out)
    lines = [f"tiny LLM: {rep['params'] / 1e6:.2f} M parameters, {rep['steps']} steps x {cfg.batch_size} rows of "
             f"{cfg.block_size} tokens ({rep['epochs']:.1f} epochs of {rep['train_tokens']} tokens) in {rep['train_seconds']:.0f} s"]
    for part in ("train", "val"):
        b, a = rep[f"{part}_loss_before"], rep[f"{part}_loss_after"]
        lines.append(f"  {part} loss {b:.3f} -> {a:.3f} (perplexity {math.exp(b):.1f} -> {math.exp(a):.2f})")
    lines.append(f"  (uniform guess over {len(tokenizer)} tokens: {math.log(len(tokenizer)):.3f})")
    lines.append(f"  reads a bag-of-words soft token: {rep['reading'][0]}/{rep['reading'][1]} held-out captions with every attribute right")
    with torch_threads(cfg.threads):
        for q in SAMPLE_QUESTIONS:
            lines.append(f"  ### Human: {q}\n  ### Assistant: {answer(model, tokenizer, q)}")
        for c in SAMPLE_CAPTIONS:
            lines.append(f"  {c!r} -> {c}{complete(model, tokenizer, c)!r}")
        if not quick:
            # new questions about seen pairs come from both splits (the test split alternates them
            # with the held-out pairs): their tallies add up
            acc: dict[str, tuple[int, int]] = {}
            for part in (answer_accuracy(model, tokenizer, "train", 80, seed=cfg.seed + 1), answer_accuracy(model, tokenizer, "test", 40)):
                for k, (r, n) in part.items():
                    acc[k] = (acc.get(k, (0, 0))[0] + r, acc.get(k, (0, 0))[1] + n)
            lines.append("  exact greedy answers to new questions: " + ", ".join(f"{k} {r}/{n}" for k, (r, n) in acc.items()))
    return files, lines
