"""Chapters 03 and 07: signal tokens, from new vocabulary rows to the runs the LLM writes.

Signal tokens (`[IMG0]`.., `[VID0]`.., `[AUD0]`..) and the media wrappers `<Img>`, `</Img>` are
added to the vocabulary. As in NExT-GPT's code, one wrapper pair `<Img> ... </Img>` surrounds the
soft token of any input modality. (The tiny LLM already knows the wrappers: it learnt to read a
soft token between them during pretraining, see `tiny/pretrain/llm.py`; then they are not new
rows.) Only the *new* rows of the input embedding and the LM head are trainable:
`NewRowsEmbedding` / `NewRowsLMHead` keep the old rows as a frozen tensor that no optimizer ever
sees, so they stay bit-identical (the original code trained the whole resized matrices,
2 x 131 M parameters in the paper profile).

A *run* is a maximal stretch of consecutive tokens of one modality's signal tokens. Training reads
the runs inside answers (`prompts.tokenize_segments`: where the output projector reads), and
generation completes runs the LLM cut short (`complete_runs`, chapter 07).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nextgpt_mini.config import SignalTokenConfig
from nextgpt_mini.constants import MODALITIES

MEDIA_START, MEDIA_END = "<Img>", "</Img>"
# NExT-GPT's released checkpoint (7b_tiva_v0) was trained with these as its first two new tokens:
# its code passed a set, add_tokens({"<Img>"}), and transformers 4.29 added str() of it. So the
# prompts' "<Img>" went through as ordinary text and these two rows were never read
# (docs/import-nextgpt.md). The "legacy" template adds them to keep the checkpoint's ids.
LEGACY_WRAPPERS = ("{'<Img>'}", "{'</Img>'}")


@dataclass
class SignalTokens:
    """Token ids of the signal tokens per modality and of the media wrappers."""

    ids: dict[str, list[int]]
    tokens: dict[str, list[str]]
    media_start: int
    media_end: int
    first_new_id: int  # rows >= this id are new

    def modality_of(self, token_id: int) -> str | None:
        for m, ids in self.ids.items():
            if token_id in ids:
                return m
        return None

    def all_ids(self) -> list[int]:
        return [i for m in MODALITIES for i in self.ids[m]]


# --------------------------------------------------------------------------------------------
# New vocabulary rows, and only those rows trainable
# --------------------------------------------------------------------------------------------
class NewRows(nn.Module):
    """A vocabulary matrix split at `first_new`: the old rows a frozen buffer, the new rows trainable.

    The new rows are kept in fp32 whatever the frozen rows are (an LLM loaded in fp16 on a GPU):
    mixed-precision training unscales fp32 gradients only ("Attempting to unscale FP16 gradients"),
    and small updates vanish in fp16. They are cast to the frozen rows' dtype where they are used."""

    def __init__(self, weight: torch.Tensor, first_new: int):
        super().__init__()
        self.register_buffer("old_rows", weight[:first_new].detach().clone(), persistent=True)
        self.new_rows = nn.Parameter(weight[first_new:].detach().clone().float())

    @property
    def weight(self) -> torch.Tensor:
        return torch.cat([self.old_rows, self.new_rows.to(self.old_rows.dtype)], dim=0)

    @property
    def num_rows(self) -> int:
        return self.old_rows.shape[0] + self.new_rows.shape[0]


class NewRowsEmbedding(NewRows):
    """nn.Embedding whose first `old` rows are frozen and whose appended rows are trainable."""

    def __init__(self, weight: torch.Tensor, first_new: int, padding_idx: int | None = None):
        super().__init__(weight, first_new)
        self.padding_idx = padding_idx

    @property
    def num_embeddings(self) -> int:
        return self.num_rows

    @property
    def embedding_dim(self) -> int:
        return self.old_rows.shape[1]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight, self.padding_idx)


class NewRowsLMHead(NewRows):
    """The LM head with frozen old rows and trainable new rows (one logit per vocabulary row)."""

    @property
    def out_features(self) -> int:
        return self.num_rows

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.cat([hidden @ self.old_rows.T, hidden @ self.new_rows.to(self.old_rows.dtype).T], dim=-1)


def add_signal_tokens(model, tokenizer, signal: SignalTokenConfig, legacy: bool = False) -> SignalTokens:
    """Add signal tokens and media wrappers; resize; mean-initialise; make only new rows trainable.

    `legacy`: as NExT-GPT's released checkpoint has them (the "legacy" template): the wrappers
    `LEGACY_WRAPPERS`, all 38 tokens ordinary (non-special) added tokens, in the same id order.
    Otherwise they are special tokens, which the tokenizer never splits or merges with spaces.

    Why the mean: a new row at the mean of the existing embeddings starts as an "average token":
    its logit is close to the average logit (no token is suddenly predicted everywhere, as with
    a large random row) and its input embedding lies where the frozen layers expect inputs to be.
    """
    tokens = {m: signal.tokens(m) for m in MODALITIES}
    wrappers = LEGACY_WRAPPERS if legacy else (MEDIA_START, MEDIA_END)
    new = [*wrappers] + [t for m in MODALITIES for t in tokens[m]]
    old_vocab = model.get_input_embeddings().weight.shape[0]
    if tokenizer.convert_tokens_to_ids(wrappers[0]) not in (None, tokenizer.unk_token_id) and isinstance(
        model.get_input_embeddings(), NewRowsEmbedding
    ):
        raise ValueError("signal tokens were already added to this model")
    tokenizer.add_tokens(new, special_tokens=not legacy)
    for t in new:
        ids = tokenizer(t, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"{t!r} encodes to {len(ids)} ids {ids}, expected exactly one")
    first_new = old_vocab
    # tokens the vocabulary already had (the tiny LLM's <Img>, </Img>) keep their pretrained rows
    total = max(len(tokenizer), old_vocab)
    model.resize_token_embeddings(total, mean_resizing=False)
    with torch.no_grad():
        for matrix in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
            matrix[first_new:] = matrix[:first_new].mean(dim=0, keepdim=True)
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    model.set_input_embeddings(NewRowsEmbedding(emb.weight, first_new, emb.padding_idx))
    model.lm_head = NewRowsLMHead(head.weight, first_new)
    model.config.vocab_size = total
    ids = {m: tokenizer.convert_tokens_to_ids(tokens[m]) for m in MODALITIES}
    return SignalTokens(
        ids=ids,
        tokens=tokens,
        media_start=tokenizer.convert_tokens_to_ids(wrappers[0]),
        media_end=tokenizer.convert_tokens_to_ids(wrappers[1]),
        first_new_id=first_new,
    )


def new_row_parameters(model) -> list[nn.Parameter]:
    """The trainable signal-token rows (input embedding and LM head)."""
    base = getattr(model, "get_base_model", lambda: model)()
    return [base.get_input_embeddings().new_rows, base.get_output_embeddings().new_rows]


# --------------------------------------------------------------------------------------------
# Runs of signal tokens in a token sequence
# --------------------------------------------------------------------------------------------
def find_runs(ids: list[int], signal_ids: dict[str, list[int]],
              can_start: list[bool] | None = None) -> list[tuple[str, int, int]]:
    """Maximal runs of consecutive ids of one modality's signal tokens, as (modality, start, end).

    With `can_start`, a run may only start at a position k where can_start[k] is true (training:
    inside an answer); once started it continues over every following token of the same modality.
    """
    lookup = {i: m for m, group in signal_ids.items() for i in group}
    runs = []
    k = 0
    while k < len(ids):
        m = lookup.get(ids[k]) if can_start is None or can_start[k] else None
        if m is None:
            k += 1
            continue
        start = k
        while k < len(ids) and lookup.get(ids[k]) == m:
            k += 1
        runs.append((m, start, k))
    return runs


def is_complete(ids: list[int], run: tuple[str, int, int], signal_ids: dict[str, list[int]]) -> bool:
    """Whether the run is its modality's whole signal-token sequence, in order."""
    m, start, end = run
    return ids[start:end] == signal_ids[m]


def complete_runs(ids: list[int], signal_ids: dict[str, list[int]], max_per_modality: int = 1):
    """The answer with every run of signal tokens made whole ([IMG0][IMG1] -> [IMG0]..[IMG3]),
    runs beyond `max_per_modality` per modality dropped. Returns (ids, runs, completed modalities)."""
    out, runs, completed = [], [], []
    count = {m: 0 for m in signal_ids}
    k = 0
    for run in find_runs(ids, signal_ids):
        m, start, end = run
        out.extend(ids[k:start])
        k = end
        if count[m] >= max_per_modality:
            continue
        if not is_complete(ids, run, signal_ids):
            completed.append(m)
        count[m] += 1
        runs.append((m, len(out), len(out) + len(signal_ids[m])))
        out.extend(signal_ids[m])
    out.extend(ids[k:])
    return out, runs, completed
