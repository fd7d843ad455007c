"""Chapter 01: exercise checks for notebooks/01_imagebind_encoding.ipynb.

The checks: top-1 retrieval, clip averaging, pooling the text tower.
Each `ex01_k(answer)` prints "ok", "not done yet" or what is still wrong (see `course.check`);
the solutions notebook runs the same checks and must print "ok".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nextgpt_mini.course import check
from nextgpt_mini.encode import encode
from nextgpt_mini.models.imagebind import eot_positions
from nextgpt_mini.processing import load_text_tokenizer


def ex01_1(top1_fn) -> None:
    """top1_fn(sim) -> text->image top-1 accuracy; sim[i, j] = text i vs image j, text i <-> image i."""

    def test(fn):
        # Rows and columns give different answers here: argmax over the wrong dim is caught.
        sim = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.1], [0.0, 0.1, 0.5]])
        got = fn(sim)
        if got is None:
            raise NotImplementedError
        assert abs(float(got) - 2 / 3) < 1e-6, f"{float(got):.3f} on a matrix whose answer is 2/3 (rows are the texts)"
        g = torch.Generator().manual_seed(1)
        for n in (5, 12):
            sim = torch.randn(n, n, generator=g) + 1.5 * torch.eye(n)
            expected = (sim.argmax(1) == torch.arange(n)).float().mean().item()
            assert abs(float(fn(sim)) - expected) < 1e-6, f"{float(fn(sim)):.3f} on a random {n} x {n} matrix, expected {expected:.3f}"

    check("01.1", top1_fn, test)


def ex01_2(embedding, encoder, path) -> None:
    """Your own embedding of the audio file `path` (clip embeddings averaged) vs encode()'s."""

    def test(emb):
        emb = torch.as_tensor(emb).detach().to("cpu", torch.float32).reshape(-1)
        expected = encode([path], encoder=encoder, progress=False)[0]
        assert emb.shape == expected.shape, f"shape {tuple(emb.shape)}, expected {tuple(expected.shape)}"
        norm = float(emb.norm())
        assert abs(norm - 1) < 1e-4, f"its norm is {norm:.3f}: encode() renormalises after averaging (read encode.py)"
        cos = float(emb @ expected)
        assert torch.allclose(emb, expected, atol=1e-5, rtol=1e-4), f"cosine with encode()'s embedding is {cos:.4f}, not 1"

    check("01.2", embedding, test)


def ex01_3(pool_at, encoder) -> None:
    """pool_at(encoder, ids, positions, causal=True) -> the text tower's normalised embedding at `positions`."""

    def reference(ids, positions, causal):
        pre, trunk, head = (encoder.modality_preprocessors["text"], encoder.modality_trunks["text"],
                            encoder.modality_heads["text"])
        L = ids.shape[1]
        with torch.no_grad():
            h = trunk(pre.token_embedding(ids) + pre.pos_embed[:, :L], attn_mask=pre.mask[:L, :L] if causal else None)
            return F.normalize(head.proj(h[torch.arange(len(ids), device=ids.device), positions]), dim=-1)

    def test(fn):
        ids = load_text_tokenizer(encoder.cfg)(["a big red circle on the left", "a small blue square on the right"])
        ids = ids.to(encoder.device)
        eot = eot_positions(ids, encoder.eot_token_id)
        got = fn(encoder, ids, eot)
        if got is None:
            raise NotImplementedError
        got = torch.as_tensor(got).detach()
        assert got.shape == (2, encoder.cfg.out_embed_dim), f"shape {tuple(got.shape)}, expected (2, {encoder.cfg.out_embed_dim})"
        with torch.no_grad():
            expected = encoder.encode_text(ids)
        assert torch.allclose(got.to(expected), expected, atol=1e-5), "at the end-of-text token it differs from encoder.encode_text"
        for causal in (True, False):
            for k in (0, 3, int(eot.max())):
                positions = torch.full((2,), k, device=ids.device)
                got = torch.as_tensor(fn(encoder, ids, positions, causal=causal)).detach()
                want = reference(ids, positions, causal)
                assert torch.allclose(got.to(want), want, atol=1e-5), \
                    f"at position {k} with causal={causal} it differs from the text tower's state there"

    check("01.3", pool_at, test)
