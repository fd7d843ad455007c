"""Chapter 01: the tiny profile's tokenizer: a byte-level BPE trained on the toy world's text.

The paper's models come with their own tokenizers (CLIP's BPE for ImageBind's text path, LLaMA's
SentencePiece for Vicuna). The tiny profile trains one small byte-level BPE on the toy world's
captions and dialogues and uses it for both the tiny encoder's text path and the tiny LLM.
Byte-level means any text a user types still encodes (no unknown token); the toy words become
single tokens, so sequences stay short.

Special tokens: `<pad>` = 0 (ImageBind pads text with 0), `<s>` = 1, `</s>` = 2.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from nextgpt_mini.tiny.registry import TOKENIZER_CORPUS, TOKENIZER_FOLDER, ref
from nextgpt_mini.utils import ASSETS, asset_path, atomic_write_text

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIAL_TOKENS = [PAD, BOS, EOS]
TINY_TOKENIZER = ref(TOKENIZER_FOLDER)


# The text the shipped tokenizer was trained on: the toy world's captions and its dialogues as the
# dialogue writer worded them when the tokenizer was built (before tiny/phrasings.py). Kept as a
# file because the tokenizer is the base of every other asset: retraining it on today's wording
# would change every token id, and with them the encoder, the LLM and every decoder built on it.
# New words ("paint", "animate") are split into pieces, as a pretrained tokenizer splits rare words.

def toy_corpus() -> list[str]:
    """Every kind of sentence the toy world wrote when the tokenizer was trained: 3,000 captions of
    each modality and 3,000 dialogues, one per line."""
    path = ASSETS / TOKENIZER_CORPUS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the tokenizer's training text is missing from the package; reinstall it")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def train_tiny_tokenizer(vocab_size: int = 512):
    """Train the byte-level BPE on `toy_corpus()`; returns a `tokenizers.Tokenizer`. Deterministic."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(toy_corpus(), trainer=trainer)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def save_tiny_tokenizer(tok, folder: str | Path) -> Path:
    """Write tokenizer.json and a transformers config so `AutoTokenizer.from_pretrained` loads it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "tokenizer.json", tok.to_str(pretty=True))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "model_max_length": 1024,
        "clean_up_tokenization_spaces": False,
    }
    atomic_write_text(folder / "tokenizer_config.json", json.dumps(config, indent=2))
    return folder


def load_tiny_tokenizer(ref: str = TINY_TOKENIZER):
    """The tiny tokenizer as a transformers `PreTrainedTokenizerFast`."""
    from transformers import PreTrainedTokenizerFast

    folder = asset_path(ref) if ref.startswith("package:") else Path(ref)
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"{folder}: no tokenizer.json; rebuild it with `nextgpt-mini build-tiny tokenizer`"
        )
    return PreTrainedTokenizerFast.from_pretrained(str(folder))


def build_tiny_tokenizer(out: Path, quick: bool = False) -> tuple[list[Path], list[str]]:
    """`nextgpt-mini build-tiny tokenizer` (seconds, so `quick` builds the full one); returns
    (files, the measured numbers as lines)."""
    tok = train_tiny_tokenizer()
    save_tiny_tokenizer(tok, out)
    lines = [f"tokenizer: {tok.get_vocab_size()} tokens (byte-level BPE on the toy world's text)"]
    return [Path(out) / "tokenizer.json", Path(out) / "tokenizer_config.json"], lines
