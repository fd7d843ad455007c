"""Chapter 07: exercise checks for notebooks/07_any_to_any_inference.ipynb.

The checks: the modalities asked for, completing signal runs, greedy decoding with a KV cache (a component).
Each `ex07_k(answer)` prints "ok", "not done yet" or what is still wrong (see `course.check`);
the solutions notebook runs the same checks and must print "ok".
"""

from __future__ import annotations

import torch

from nextgpt_mini.course import check
from nextgpt_mini.generation import cut_at_stop, prompt_example
from nextgpt_mini.models.signal_tokens import complete_runs
from nextgpt_mini.prompts import STOP, collate, embed_with_media


def ex07_1(asked_for, ids, model) -> None:
    """The output modalities a token list asks for."""

    def test(value):
        expected = [m for m, group in model.signal.ids.items() if any(i in group for i in ids)]
        assert sorted(value) == sorted(expected), f"{sorted(value)}: look for each modality's signal ids"

    check("07.1", asked_for, test)


def ex07_2(complete, model) -> None:
    """complete(ids) makes every signal run whole, as signal_tokens.complete_runs does."""

    def test(fn):
        sig, word = model.signal.ids, model.tokenizer("here", add_special_tokens=False)["input_ids"]
        cases = [word + sig["audio"][:2], word + sig["image"] + word, sig["video"][:1] + word + sig["audio"][:3], word,
                 sig["image"][1:3] + sig["audio"][:1]]
        for ids in cases:
            got = fn(list(ids))
            if got is None:
                raise NotImplementedError
            want = complete_runs(list(ids), sig, max_per_modality=99)[0]
            assert list(got) == want, f"for {model.tokenizer.convert_ids_to_tokens(ids)}"

    check("07.2", complete, test)


EX07_3_PROMPTS = ("Show me a big red circle on the left.", "What sound does a red circle make?")


def _prompt_embeds(model, text):
    ex, _ = prompt_example(model, [{"role": "user", "text": text, "media": []}])
    batch = collate([ex], model.tokenizer.pad_token_id)
    return embed_with_media(model.llm.get_input_embeddings(), batch["input_ids"], model.soft_tokens([None])), batch["attention_mask"]


def _answer(model, ids) -> list[int]:
    return cut_at_stop([int(i) for i in ids if int(i) != model.tokenizer.eos_token_id], model.tokenizer)


def ex07_3(decode, model) -> None:
    """decode(model, embeds, attention_mask, max_new_tokens) -> the greedy answer's ids, one token
    per forward pass with the KV cache, equal (cut at the stop string) to the LLM's own generate."""

    def test(fn):
        for text in EX07_3_PROMPTS:
            embeds, mask = _prompt_embeds(model, text)
            with torch.no_grad():
                got = fn(model, embeds, mask, 40)
                if got is None:
                    raise NotImplementedError
                want = model.llm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=40, do_sample=False,
                                          pad_token_id=model.tokenizer.pad_token_id, eos_token_id=model.tokenizer.eos_token_id,
                                          stop_strings=[STOP], tokenizer=model.tokenizer)[0]
            got, want = _answer(model, torch.as_tensor(got).flatten().tolist()), _answer(model, want.tolist())
            assert got == want, (f"for {text!r} you wrote {model.tokenizer.decode(got)!r}; "
                                 f"greedy decoding writes {model.tokenizer.decode(want)!r}")

    check("07.3", decode, test)
