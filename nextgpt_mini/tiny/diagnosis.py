"""Chapter 02: where does media -> text lose what the encoder knows? Measured step by step.

For held-out toy items of each modality, every step from the embedding to the greedy answer:

* `probe`: a linear probe of each attribute (least squares onto one-hot columns, fitted on
  training-split items, read on held-out ones) from a representation: the encoder's embedding,
  the projected soft token (a linear map of it, so it can only lose what the map's rank drops) and
  the LLM's last hidden state where the answer begins;
* `bag_reading`: the frozen LLM shown the best soft token there is, the mean embedding of the
  item's own caption words: the ceiling of any projector (what the LLM's pretraining taught it);
* `teacher_forced`: with the true caption as the prefix, is each attribute's value the most
  likely of its attribute's values? Greedy answers (`greedy`) can be worse: an early wrong word
  changes what follows.

`by_pair` splits held-out items into seen and held-out colour+shape pairs, so that each row of the
report says where a pair the encoder and stages never saw together loses its shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nextgpt_mini.data.pairs import PairSet
from nextgpt_mini.prompts import collate, embed_with_media
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.tiny.pretrain.llm_corpus import slot_vector
from nextgpt_mini.training import stage1

STEPS = ("embedding probe", "soft-token probe", "LLM-state probe", "bag-of-words reading", "teacher-forced", "greedy")


def probe(train_x: torch.Tensor, train_items: list, test_x: torch.Tensor, test_items: list) -> dict[str, float]:
    """{attribute: held-out accuracy} of a least-squares linear probe from features [N, D]."""
    fit = torch.cat([train_x, torch.ones(len(train_x), 1)], 1).double()
    read = torch.cat([test_x, torch.ones(len(test_x), 1)], 1).double()
    out = {}
    for attribute in test_items[0].attributes:
        values = tw.ATTRIBUTE_VALUES[attribute]
        y = torch.tensor([values.index(it.attributes[attribute]) for it in train_items])
        w = torch.linalg.lstsq(fit, F.one_hot(y, len(values)).double(), driver="gelsd").solution
        truth = torch.tensor([values.index(it.attributes[attribute]) for it in test_items])
        out[attribute] = float(((read @ w).argmax(1) == truth).double().mean())
    return out


def _prompts(model, modality: str, captions: list[str | None]) -> dict:
    p = model.profile
    examples = [stage1.caption_example(model.tokenizer, model.signal, p.llm.template, modality, c,
                                       stage1.INSTRUCTIONS[modality][0], p.llm.max_length) for c in captions]
    return collate(examples, model.tokenizer.pad_token_id)


def _with_soft(model, batch: dict, soft: torch.Tensor) -> torch.Tensor:
    """The batch's input embeddings with one soft token [N, hidden] in each prompt's media slot."""
    return embed_with_media(model.llm.get_input_embeddings(), batch["input_ids"], list(soft[:, None]))


@torch.no_grad()
def answer_states(model, modality: str, soft: torch.Tensor) -> torch.Tensor:
    """The LLM's last hidden state at the prompt's last position (where the answer begins) [N, hidden]."""
    batch = _prompts(model, modality, [None] * len(soft))
    out = model.llm(inputs_embeds=_with_soft(model, batch, soft), attention_mask=batch["attention_mask"], output_hidden_states=True)
    return out.hidden_states[-1][:, -1].float()


def _value_tokens(tokenizer, attribute: str) -> dict[int, str]:
    """{first token of the value as written inside a caption: value}; {} when two values share it.

    The value is tokenized after a word ("a red", less "a"), as it is inside a caption: a
    SentencePiece tokenizer (TinyLlama's, Vicuna's) would give a lone " red" its own prefix piece."""
    def first(value: str) -> int:
        return tokenizer("a " + value, add_special_tokens=False)["input_ids"][len(tokenizer("a", add_special_tokens=False)["input_ids"])]
    tokens = {first(v): v for v in tw.ATTRIBUTE_VALUES[attribute]}
    return tokens if len(tokens) == len(tw.ATTRIBUTE_VALUES[attribute]) else {}


@torch.no_grad()
def teacher_forced(model, modality: str, soft: torch.Tensor, items: list) -> dict[str, float]:
    """{attribute: share of items whose right value is the likeliest of its attribute's values at
    its place in the true caption}."""
    batch = _prompts(model, modality, [it.caption for it in items])
    logits = model.llm(inputs_embeds=_with_soft(model, batch, soft), attention_mask=batch["attention_mask"]).logits.float()
    out = {}
    for attribute in items[0].attributes:
        tokens = _value_tokens(model.tokenizer, attribute)
        if not tokens:  # its values cannot be told apart by one token: no teacher-forced reading
            continue
        ids = torch.tensor(list(tokens))
        right = 0
        for k, it in enumerate(items):
            answer = (batch["labels"][k] != -100).nonzero().flatten().tolist()
            want = next(t for t, v in tokens.items() if v == it.attributes[attribute])
            at = next(p for p in answer if int(batch["input_ids"][k, p]) == want)
            right += int(ids[logits[k, at - 1, ids].argmax()]) == want
        out[attribute] = right / len(items)
    return out


def _scored(texts: list[str], items: list) -> dict[str, float]:
    hits = [it.attribute_scores(t) for t, it in zip(texts, items)]
    return {a: sum(h[a] for h in hits) / len(hits) for a in hits[0]}


@torch.no_grad()
def bag_tokens(model, captions: list[str]) -> torch.Tensor:
    """The mean input embedding of each caption's tokens [N, hidden]: the soft token the LLM reads best."""
    table = model.llm.get_input_embeddings().weight
    return torch.stack([slot_vector(table, model.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in captions])


def by_pair(test: dict[str, PairSet]) -> dict[str, PairSet]:
    """{"<modality>, seen pairs" / "<modality>, held-out pairs": PairSet}: each toy PairSet split by
    whether its items' colour+shape pair is one of the world's held-out pairs."""
    out = {}
    for m, data in test.items():
        for name, held in (("seen", False), ("held-out", True)):
            keep = [k for k, it in enumerate(data.items) if it.obj.held_out == held]
            if keep:
                out[f"{m}, {name} pairs"] = PairSet(data.modality, data.embeddings[keep], [data.captions[k] for k in keep],
                                                    [data.items[k] for k in keep])
    return out


@torch.no_grad()
def diagnose(model, train: dict, test: dict) -> dict[str, dict[str, dict[str, float]]]:
    """{name: {step (STEPS): {attribute: accuracy}}} for each of `test`'s PairSets (named by
    modality, or as `by_pair` names them), probes fitted on `train`'s PairSet of its modality."""
    report = {}
    for name, data in test.items():
        m = data.modality
        fit, items = train[m], data.items
        soft_fit, soft = model.input_projector(fit.embeddings), model.input_projector(data.embeddings)
        bags = bag_tokens(model, data.captions)
        greedy = stage1.greedy_captions(model, m, data.embeddings)
        with _soft_tokens(model, bags):
            bag_said = stage1.greedy_captions(model, m, torch.arange(len(bags)).float()[:, None])
        report[name] = {
            STEPS[0]: probe(fit.embeddings, fit.items, data.embeddings, items),
            STEPS[1]: probe(soft_fit, fit.items, soft, items),
            STEPS[2]: probe(answer_states(model, m, soft_fit), fit.items, answer_states(model, m, soft), items),
            STEPS[3]: _scored(bag_said, items),
            STEPS[4]: teacher_forced(model, m, soft, items),
            STEPS[5]: _scored(greedy, items),
        }
    return report


class _soft_tokens:
    """Within the block, the input projector returns row `int(x[:, 0])` of `vectors` for input x."""

    def __init__(self, model, vectors: torch.Tensor):
        self.projector, self.vectors = model.input_projector, vectors

    def __enter__(self):
        self.projector.forward = lambda x: self.vectors[x[:, 0].long()]

    def __exit__(self, *exc):
        del self.projector.forward


def report_lines(report: dict) -> list[str]:
    lines = []
    for m, steps in report.items():
        lines.append(f"  {m}:")
        every = next(iter(steps.values()))
        for step, rates in steps.items():
            left_out = [a for a in every if a not in rates]  # values that share their first token
            lines.append(f"    {step:22s} " + ", ".join(f"{a} {r:.0%}" for a, r in rates.items())
                         + (f" ({', '.join(left_out)}: values share a first token)" if left_out else ""))
    return lines
