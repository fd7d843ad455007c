"""Chapter 01: the text tower's tokenizers.

`ClipBPETokenizer` gives the ids of ImageBind's SimpleTokenizer (CLIP BPE: sot 49406, eot 49407,
pad 0); `PackageTokenizer` reads a `tokenizers` tokenizer.json shipped with the package (the tiny
profile's); `load_text_tokenizer(cfg)` picks one from `cfg.tokenizer`.
"""

from __future__ import annotations

import functools
import gzip
import html
import importlib.util
import itertools
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from nextgpt_mini import utils
from nextgpt_mini.config import EncoderConfig

__all__ = ["CLIP_BPE_FILENAME", "ClipBPETokenizer", "PackageTokenizer", "clip_bpe_path", "load_text_tokenizer"]

CLIP_BPE_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
_CLIP_BPE_ENV = "NEXTGPT_MINI_CLIP_BPE"


def clip_bpe_path(path: str | os.PathLike | None = None) -> Path:
    """The CLIP BPE merges file: `path`, else $NEXTGPT_MINI_CLIP_BPE, else the copy inside the
    installed `imagebind` package (located without importing it)."""
    if path is None:
        path = os.environ.get(_CLIP_BPE_ENV) or None
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"CLIP BPE vocabulary not found at {p}")
        return p
    locations: list[str] = []
    module = sys.modules.get("imagebind")
    if module is not None:
        locations.extend(getattr(module, "__path__", []) or [])
    try:
        spec = importlib.util.find_spec("imagebind")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        locations.extend(spec.submodule_search_locations)
    for loc in locations:
        candidate = Path(loc) / "bpe" / CLIP_BPE_FILENAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"the CLIP BPE vocabulary ({CLIP_BPE_FILENAME}) was not found. Install Meta's ImageBind code, "
        "which ships it, without its dependencies: `pip install --no-deps imagebind-unofficial==0.1.1`; "
        f"or pass bpe_path=... to load_text_tokenizer, or set ${_CLIP_BPE_ENV} to the file"
    )


@functools.lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode character table."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


class ClipBPETokenizer:
    """CLIP's BPE tokenizer, id for id ImageBind's `SimpleTokenizer`.

    Text is cleaned (ftfy, HTML unescaped twice, whitespace collapsed, lower-cased), split by
    CLIP's pattern, byte-encoded and merged by rank. Each row is [sot] + ids, cut to
    context_length - 1, then [eot]: eot always ends the sequence (at the last position when the
    text is too long); the rest is padded with 0.
    """

    SOT, EOT = "<|startoftext|>", "<|endoftext|>"

    def __init__(self, bpe_path: str | os.PathLike, context_length: int = 77) -> None:
        import regex

        with gzip.open(bpe_path, "rb") as fh:
            lines = fh.read().decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
        self.byte_encoder = _bytes_to_unicode()
        symbols = list(self.byte_encoder.values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [self.SOT, self.EOT]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.decoder = {i: token for token, i in self.encoder.items()}
        self.bpe_ranks = {pair: i for i, pair in enumerate(merges)}
        self.cache: dict[str, list[str]] = {self.SOT: [self.SOT], self.EOT: [self.EOT]}
        self.pattern = regex.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
        self._regex = regex
        self.context_length = int(context_length)
        self.sot_id = self.encoder[self.SOT]
        self.eot_id = self.encoder[self.EOT]
        self.pad_id = 0
        self.vocab_size = len(vocab)

    def _clean(self, text: str) -> str:
        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        return self._regex.sub(r"\s+", " ", text).strip().lower()

    def _bpe(self, token: str) -> list[str]:
        cached = self.cache.get(token)
        if cached is not None:
            return cached
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = set(itertools.pairwise(word))
            best = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, math.inf))
            if best not in self.bpe_ranks:
                break
            first, second = best
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        if len(token) > 1:  # SimpleTokenizer leaves single characters uncached; harmless either way
            self.cache[token] = word
        return word

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for token in self.pattern.findall(self._clean(text)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self._bpe(token))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        text = "".join(self.decoder[int(i)] for i in ids)
        return bytearray(byte_decoder[c] for c in text).decode("utf-8", errors="replace").replace("</w>", " ")

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        result = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = ([self.sot_id] + self.encode(text))[: self.context_length - 1] + [self.eot_id]
            result[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return result


class PackageTokenizer:
    """A `tokenizers` tokenizer.json with "<pad>", "<s>" and "</s>": each row is
    <s> ids </s> (cut so that </s> stays, at the last position when too long), padded with <pad>."""

    def __init__(self, tokenizer_file: str | os.PathLike, context_length: int) -> None:
        from tokenizers import Tokenizer

        self.path = Path(tokenizer_file)
        self.tokenizer = Tokenizer.from_file(str(self.path))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        ids = {tok: self.tokenizer.token_to_id(tok) for tok in ("<pad>", "<s>", "</s>")}
        absent = [tok for tok, i in ids.items() if i is None]
        if absent:
            raise ValueError(f"{self.path}: the tokenizer has no {', '.join(absent)} token")
        self.pad_id, self.sot_id, self.eot_id = ids["<pad>"], ids["<s>"], ids["</s>"]
        self.context_length = int(context_length)
        if self.context_length < 2:
            raise ValueError(f"context_length must be >= 2, got {context_length}")
        self.vocab_size = self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        result = torch.full((len(texts), self.context_length), self.pad_id, dtype=torch.long)
        if not texts:
            return result
        for row, enc in enumerate(self.tokenizer.encode_batch(texts, add_special_tokens=False)):
            ids = ([self.sot_id] + enc.ids)[: self.context_length - 1] + [self.eot_id]
            result[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return result


@functools.lru_cache(maxsize=4)
def _clip_tokenizer(path: str, context_length: int) -> ClipBPETokenizer:
    return ClipBPETokenizer(path, context_length)


def load_text_tokenizer(
    cfg: EncoderConfig, bpe_path: str | os.PathLike | None = None
) -> Callable[[str | Sequence[str]], torch.Tensor]:
    """Tokenizer for the encoder's text tower: list[str] -> LongTensor [N, cfg.context_length].

    cfg.tokenizer: "clip-bpe" (ImageBind's CLIP BPE; the vocabulary file comes from `bpe_path`,
    $NEXTGPT_MINI_CLIP_BPE or the installed imagebind package), "package:<folder>" (a
    tokenizer.json shipped in nextgpt_mini/assets), or a local folder / tokenizer.json path.
    """
    name = cfg.tokenizer
    if name == "clip-bpe":
        return _clip_tokenizer(str(clip_bpe_path(bpe_path)), int(cfg.context_length))
    if name.startswith("package:"):
        location = utils.asset_path(name)
    else:
        location = Path(name)
        if not location.exists():
            raise ValueError(
                f"unknown text tokenizer {name!r}: expected 'clip-bpe', 'package:<folder>' or a path to a "
                "tokenizer.json or its folder"
            )
    file = location / "tokenizer.json" if location.is_dir() else location
    if not file.is_file():
        raise FileNotFoundError(f"text tokenizer {name!r}: {file} not found")
    return PackageTokenizer(file, int(cfg.context_length))
