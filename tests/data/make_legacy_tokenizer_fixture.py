"""Regenerate tests/data/legacy_tokenizer_ids.json: how NExT-GPT's own code tokenized its prompts.

Run with transformers 4.29.2 (the original's pin) in a separate environment, never in the project's:

    python -m venv /tmp/tf429 && /tmp/tf429/bin/pip install transformers==4.29.2 sentencepiece
    /tmp/tf429/bin/python tests/data/make_legacy_tokenizer_fixture.py

It loads the slow LlamaTokenizer (use_fast=False, as anyToImageVideoAudio.py does) over
configs/hub/stand-ins/llama_sentencepiece.model (a 400-piece SentencePiece model trained with LLaMA's settings: BPE, byte
fallback, dummy prefix, whitespace kept; real LLaMA ids differ, the rules are the same), adds the
tokens in the original's order and calls (`add_tokens({"<Img>"})`: a set, so the token is the text
"{'<Img>'}"), and records the ids of each segment text the original passes to the tokenizer on its
own (`build_one_instance_stage_3`, `prompt_wrap`).
"""

import json
from pathlib import Path

from transformers import LlamaTokenizer

HERE = Path(__file__).parent
SIG = {"image": [f"[IMG{i}]" for i in range(4)], "video": [f"[VID{i}]" for i in range(24)],
       "audio": [f"[AUD{i}]" for i in range(8)]}


def original_tokenizer():
    tok = LlamaTokenizer(vocab_file=str(HERE.parents[1] / "configs" / "hub" / "stand-ins" / "llama_sentencepiece.model"))
    tok.add_tokens({"<Img>"})  # the released checkpoint's code, before commit 8f8af85
    tok.add_tokens({"</Img>"})
    for m in ("image", "video", "audio"):
        for t in SIG[m]:
            tok.add_tokens([t])
    return tok


TEXTS = [
    "### Human: <Img>",
    "</Img> What is in this picture?\n### Assistant: ",
    "</Img> What is in this picture?\n### Assistant:",
    "It shows a big red circle on the left.\n###",
    "### Human: ",
    "Please draw a small blue square.\n### Assistant: ",
    "Please draw a small blue square.\n### Assistant:",
    "Here it is." + " ".join(SIG["image"]) + "\n###",
    "Sure, here is the clip." + " ".join(SIG["video"]) + "\n###",
    "Listen." + " ".join(SIG["audio"]) + "\n###",
    "Human: What colour is it?\n### Assistant: ",
    "Human: Now play me a high tone.\n### Assistant:",
    "</Img><Img>",
    " ".join(SIG["image"]) + "\n###",
]

if __name__ == "__main__":
    tok = original_tokenizer()
    out = {"transformers": __import__("transformers").__version__, "added": tok.get_added_vocab(),
           "texts": TEXTS, "ids": [tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS],
           "pieces": [tok.convert_ids_to_tokens(tok(t, add_special_tokens=False)["input_ids"]) for t in TEXTS]}
    (HERE / "legacy_tokenizer_ids.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    for t, p in zip(out["texts"], out["pieces"]):
        print(repr(t), p)
