"""Chapters 03, 05, 07, 08 and 09: each component exercise's check rejects the stub and a
plausible wrong answer, and accepts a right one (as chapter 01's, 02's, 04's, 06's and 10's tests do)."""

import inspect

import torch
import torch.nn.functional as F
from torch import nn

from nextgpt_mini import load_profile
from nextgpt_mini.course import ex03, ex05, ex07, ex08, ex09


def verdicts(capsys) -> list[str]:
    out = capsys.readouterr().out.splitlines()
    return [line.split(": ", 1)[1][:7] for line in out if line.startswith("exercise ")]


class NewRowsHead(nn.Module):
    def __init__(self, weight, first_new):
        super().__init__()
        self.register_buffer("old_rows", weight[:first_new].detach().clone())
        self.new_rows = nn.Parameter(weight[first_new:].detach().clone().float())

    def forward(self, hidden):
        return torch.cat([hidden @ self.old_rows.T, hidden @ self.new_rows.T], dim=-1)


class OldRowsOnly(NewRowsHead):
    def forward(self, hidden):
        return hidden @ self.old_rows.T


class AllRowsTrainable(nn.Module):
    def __init__(self, weight, first_new):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())

    def forward(self, hidden):
        return hidden @ self.weight.T


def test_03_3_the_lm_head_with_new_rows(capsys, one_thread):
    from nextgpt_mini.models.llm import load_llm
    from nextgpt_mini.models.signal_tokens import add_signal_tokens

    profile = load_profile("tiny")
    llm, tok = load_llm(profile.llm)
    signal = add_signal_tokens(llm, tok, profile.signal_tokens)
    for answer in (None, AllRowsTrainable, OldRowsOnly, NewRowsHead):
        ex03.ex03_3(answer, llm, signal)
    assert verdicts(capsys) == ["not don", "not yet", "not yet", "ok"]


def test_05_1_and_05_2_the_schedule_and_v_prediction(capsys):
    from nextgpt_mini.models.decoders import Decoders

    scheduler = Decoders(load_profile("tiny"))["image"].pipe.scheduler
    abar = scheduler.alphas_cumprod.double()
    first = int((abar / (1 - abar) < 1).nonzero()[0])
    for answer in (None, first - 1, first + 1, first):
        ex05.ex05_1(answer, scheduler)
    for answer in (lambda x_t, v, a: None,
                   lambda x_t, v, a: (x_t - (1 - a).sqrt() * v) / a.sqrt(),  # v read as the noise
                   lambda x_t, v, a: a.sqrt() * x_t + (1 - a).sqrt() * v,  # a sign wrong
                   lambda x_t, v, a: a.sqrt() * x_t - (1 - a).sqrt() * v):
        ex05.ex05_2(answer)
    assert verdicts(capsys) == ["not don", "not yet", "not yet", "ok"] * 2


def test_07_3_greedy_decoding_with_a_kv_cache(capsys, one_thread):
    from nextgpt_mini.models.nextgpt import NextGPT
    from nextgpt_mini.prompts import STOP

    model = NextGPT.from_pretrained("package:tiny_system")
    forward = inspect.signature(type(model.llm.get_base_model()).forward).parameters
    name = "cache" if "cache" in forward else "past_key_values"  # renamed in transformers 5.25

    def decode(model, embeds, mask, max_new_tokens, cache=True):
        ids, out = [], model.llm(inputs_embeds=embeds, attention_mask=mask, use_cache=True)
        for _ in range(max_new_tokens):
            ids.append(int(out.logits[0, -1].argmax()))
            if ids[-1] == model.tokenizer.eos_token_id or STOP in model.tokenizer.decode(ids):
                break
            mask = torch.cat([mask, mask.new_ones(1, 1)], dim=1)
            out = model.llm(input_ids=torch.tensor([ids[-1:]]), attention_mask=mask if cache else None,
                            use_cache=True, **{name: getattr(out, name) if cache else None})
        return ids

    ex07.ex07_3(lambda *a: None, model)
    ex07.ex07_3(lambda m, e, a, n: decode(m, e, a, n, cache=False), model)  # forgets the prompt
    ex07.ex07_3(decode, model)
    assert verdicts(capsys) == ["not don", "not yet", "ok"]


def test_08_3_a_lora_counter_for_any_llama(capsys):
    def count(config, r, targets, gqa=True):
        h = config.hidden_size
        kv = config.num_key_value_heads * (h // config.num_attention_heads) if gqa else h
        widths = {"q_proj": h + h, "k_proj": h + kv, "v_proj": h + kv, "o_proj": h + h,
                  "gate_proj": h + config.intermediate_size, "up_proj": h + config.intermediate_size,
                  "down_proj": config.intermediate_size + h}
        return config.num_hidden_layers * r * sum(widths[t] for t in targets)

    ex08.ex08_3(lambda c, r, t: None)
    ex08.ex08_3(lambda c, r, t: count(c, r, t, gqa=False))
    ex08.ex08_3(lambda c, r, t: count(c, r, [x for x in t if x.endswith(("q_proj", "k_proj", "v_proj", "o_proj"))]))
    ex08.ex08_3(count)
    assert verdicts(capsys) == ["not don", "not yet", "not yet", "ok"]


def test_09_2_and_09_3_kid_and_the_nearest_caption(capsys):
    def kid(x, y, unbiased=True):
        def k(a, b):
            return (a @ b.T / a.shape[1] + 1) ** 3

        n = len(x)
        if not unbiased:
            return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())
        within = [(kk.sum() - kk.diagonal().sum()) / (n * (n - 1)) for kk in (k(x, x), k(y, y))]
        return float(sum(within) - 2 * k(x, y).mean())

    for answer in (lambda x, y: None, lambda x, y: kid(x, y, unbiased=False), kid):
        ex09.ex09_2(answer)

    def nearest(pred, targets, captions, by_cosine=False):
        if pred.dim() == 2:
            pred, targets = pred[:, None], targets[:, None]
        if by_cosine:
            score = -F.cosine_similarity(pred[:, None], targets[None], dim=-1).mean(-1)
        else:
            score = (pred[:, None] - targets[None]).norm(dim=-1).mean(-1)
        return [captions[i] for i in score.argmin(1).tolist()]

    for answer in (lambda *a: None, lambda p, t, c: nearest(p, t, c, by_cosine=True), nearest):
        ex09.ex09_3(answer)
    assert verdicts(capsys) == ["not don", "not yet", "ok"] * 2
