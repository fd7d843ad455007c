"""Checks for the notebooks' exercises, shared by the chapter and its solutions notebook.

Each `exNN_K(answer)` prints "ok", "not done yet" or what is still wrong (see `course.check`).
"""

from __future__ import annotations

import collections
import json

from nextgpt_mini.course import check, data_samples_dir


# ---- chapter 00 ---------------------------------------------------------------------------
def ex00_1(profile) -> None:
    """The colab profile with LoRA rank 8 and alpha 16, built from `--set`-style strings."""

    def test(p):
        assert p.name == "colab", f"profile is {p.name!r}, expected 'colab'"
        assert (p.lora.r, p.lora.alpha) == (8, 16), f"lora r/alpha are {p.lora.r}/{p.lora.alpha}"

    check("00.1", profile, test)


def ex00_2(counts) -> None:
    """Dialogues per task in data_samples/mosit/mosit.json, as {task: count}."""

    def test(c):
        data = json.loads((data_samples_dir() / "mosit" / "mosit.json").read_text())
        expected = dict(collections.Counter(d["task"] for d in data))
        assert dict(c) == expected, f"got {dict(c)}"

    check("00.2", counts, test)


def ex00_3(pitch_hz) -> None:
    """The pitch, in Hz, of a small blue circle's sound (a held-out object), found with an FFT."""
    from nextgpt_mini.tiny.world import PITCH_HZ

    def test(f):
        assert abs(float(f) - PITCH_HZ["blue"]) < 5, f"{float(f):.1f} Hz is not the blue pitch"

    check("00.3", pitch_hz, test)


# ---- chapter 03 ---------------------------------------------------------------------------
def ex03_1(n_pieces) -> None:
    """How many ids the tokenizer without signal tokens cuts "[VID7]" into."""
    from nextgpt_mini.profiles import load_profile
    from nextgpt_mini.tiny.tokenizer import load_tiny_tokenizer

    def test(n):
        tok = load_tiny_tokenizer(load_profile("tiny").encoder.tokenizer)
        expected = len(tok("[VID7]", add_special_tokens=False)["input_ids"])
        assert int(n) == expected, f"{n} is not the number of ids"

    check("03.1", n_pieces, test)


def ex03_2(colab_lora) -> None:
    """LoRA parameters of the colab profile (TinyLlama, grouped-query attention)."""
    from nextgpt_mini.models.llm import build_empty_llm, lora_parameter_count
    from nextgpt_mini.profiles import load_profile

    def test(n):
        colab = load_profile("colab")
        expected = lora_parameter_count(build_empty_llm(colab.llm), colab.lora)
        assert int(n) == expected, f"{int(n):,} != {expected:,}"

    check("03.2", colab_lora, test)


def ex03_3(signal_states, llm, example) -> None:
    """signal_states(llm, example) -> {modality: hidden + embedding at the signal span}."""
    import torch

    def test(fn):
        got = fn(llm, example)
        if got is None:
            raise NotImplementedError
        ids = torch.tensor([example.input_ids])
        with torch.no_grad():
            out = llm(ids, output_hidden_states=True)
            embeds = llm.get_input_embeddings()(ids)[0]
        assert set(got) == {m for m, _, _ in example.signal_spans}, f"modalities {sorted(got)}"
        for m, s, e in example.signal_spans:
            torch.testing.assert_close(got[m], out.hidden_states[-1][0, s:e] + embeds[s:e])

    check("03.3", signal_states, test)


# ---- chapter 02 ---------------------------------------------------------------------------
def ex02_1(n) -> None:
    """Parameters stage 1 trains in the tiny profile: the input projector's weight and bias."""
    from nextgpt_mini.profiles import load_profile

    def test(value):
        p = load_profile("tiny")
        expected = p.encoder.out_embed_dim * p.llm.hidden_size + p.llm.hidden_size
        assert int(value) == expected, f"{value} is not what stage 1 trains"

    check("02.1", n, test)


def ex02_2(name, model, test_sets) -> None:
    """The audio attribute the trained model names right least often."""
    from nextgpt_mini.tiny import world as tw
    from nextgpt_mini.training.stage1 import greedy_captions

    def test(value):
        audio = test_sets["audio"]
        captions = greedy_captions(model, "audio", audio.embeddings)
        scores = [tw.attribute_scores(c, it) for c, it in zip(captions, audio.items)]
        rate = {k: sum(s[k] for s in scores) for k in scores[0]}
        worst = [k for k, v in rate.items() if v == min(rate.values())]
        assert value in worst, f"{value!r} is right {rate.get(value)} times; the least is {min(rate.values())}"

    check("02.2", name, test)


def ex02_3(loss) -> None:
    """Held-out loss after 100 steps of stage 1 with an MLP projector (a number)."""

    def test(value):
        value = float(value)
        assert 0.0 < value < 3.0, f"{value:.3f} does not look like a trained held-out loss"

    check("02.3", loss, test)


# ---- chapter 01 ---------------------------------------------------------------------------
def ex01_1(top1_fn) -> None:
    """top1_fn(sim) -> text->image top-1 accuracy; sim[i, j] = text i vs image j, text i <-> image i."""
    import torch

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
    import torch

    from nextgpt_mini.encode import encode

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
    import torch
    import torch.nn.functional as F

    from nextgpt_mini.models.imagebind import eot_positions
    from nextgpt_mini.processing import load_text_tokenizer

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


# ---- chapter 04 ---------------------------------------------------------------------------
def ex04_1(n) -> None:
    """Parameters stage 2 trains in the tiny profile: output projectors + signal-token rows."""

    def test(value):
        from nextgpt_mini.models.nextgpt import NextGPT

        groups = NextGPT.from_profile("tiny").trainable_groups()
        expected = sum(p.numel() for g in ("output_projectors", "signal_rows") for p in groups[g])
        projectors = sum(p.numel() for p in groups["output_projectors"])
        assert int(value) != projectors, "that is the output projectors alone: stage 2 also trains the signal rows"
        assert int(value) == expected, f"{value} is not what stage 2 trains"

    check("04.1", n, test)


def ex04_2(fn) -> None:
    """NExT-GPT's per-token L2 distance: [N, Q, D] x 2 -> [N]."""
    import torch

    from nextgpt_mini.losses import distance

    def test(f):
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(5, 7, 9, generator=g), torch.randn(5, 7, 9, generator=g)
        got = f(a, b)
        assert got is not None, "my_l2 returns None"
        got = torch.as_tensor(got)
        assert got.shape == (5,), f"expected one number per row, shape (5,), got {tuple(got.shape)}"
        torch.testing.assert_close(got, distance(a, b, "l2"))

    def answered(f) -> bool:  # the stub returns None: "not done yet" rather than an error
        try:
            return f(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1)) is not None
        except Exception:  # noqa: BLE001 - a bug is reported by the test itself
            return True

    check("04.2", fn if callable(fn) and answered(fn) else None, test)


def ex04_3(retrieval) -> None:
    """Held-out retrieval after 200 steps of stage 2 with the output projectors only (a fraction)."""

    def test(value):
        value = float(value)
        assert 0.0 <= value <= 1.0, f"{value} is not a fraction of captions"

    check("04.3", retrieval, test)


# ---- chapter 05 ---------------------------------------------------------------------------
def ex05_1(shape) -> None:
    """Shape of one tiny video: (frames, height, width, 3)."""

    def test(value):
        from nextgpt_mini.profiles import load_profile

        cfg = load_profile("tiny").video_decoder
        assert tuple(value) == (cfg.num_frames, cfg.height, cfg.width, 3), f"{tuple(value)} is not the shape of a clip"

    check("05.1", shape, test)


def ex05_2(seconds) -> None:
    """Duration of the tiny audio decoder's WAV, read back from disk."""

    def test(value):
        from nextgpt_mini.profiles import load_profile

        expected = load_profile("tiny").audio_decoder.audio_seconds
        assert abs(float(value) - expected) < 1e-3, f"{value} s; the profile asks for {expected} s"

    check("05.2", seconds, test)


def ex05_3(latents, decoders) -> None:
    """Latents after one guided DDIM step, compared with the pipeline's own."""
    import torch

    def test(value):
        image = decoders["image"]
        cfg = image.cfg
        image.pipe.set_progress_bar_config(disable=True)
        out = image.pipe(prompt_embeds=image.targets(["a big red circle on the left"]),
                         negative_prompt_embeds=image.negative()[None], num_inference_steps=1, guidance_scale=7.5,
                         height=cfg.height, width=cfg.width, generator=torch.Generator().manual_seed(0),
                         output_type="latent")
        expected = out.images
        value = torch.as_tensor(value)
        assert value.shape == expected.shape, f"shape {tuple(value.shape)}, the pipeline's latents are {tuple(expected.shape)}"
        torch.testing.assert_close(value.float(), expected.float(), atol=1e-4, rtol=1e-4)

    check("05.3", latents, test)


# ---- chapter 06 ---------------------------------------------------------------------------
def ex06_1(n, test_set) -> None:
    """Held-out dialogues whose first answer asks for media."""

    def test(value):
        expected = sum("output" in d["turns"][1] for d in test_set.dialogues)
        assert int(value) == expected, f"{value} is not the number of first answers with an 'output'"

    check("06.1", n, test)


def ex06_2(dialogue, model) -> None:
    """A converted record: one user turn, one answer that produces the image 'a red circle'."""

    def test(d):
        from nextgpt_mini.training.stage3 import dialogue_example

        turns = d["turns"]
        assert [t["role"] for t in turns] == ["user", "assistant"], "expected a user turn then an assistant turn"
        assert turns[1].get("output") == {"modality": "image", "caption": "a red circle"}, "the answer's output is not the image"
        spans = dialogue_example(model, d).signal_spans
        assert len(spans) == 1 and spans[0][0] == "image" and spans[0][2] - spans[0][1] == len(model.signal.ids["image"]), spans

    check("06.2", dialogue, test)


def ex06_3(losses) -> None:
    """(loss with video weight 2, loss with weight 0) on one T->V batch."""

    def test(pair):
        with_video, without_video = (float(x) for x in pair)
        assert with_video > without_video, "with the video distance weighted in, the loss must be larger"

    check("06.3", None if losses is None or None in tuple(losses) else losses, test)


def ex07_1(asked_for, ids, model) -> None:
    """The output modalities a token list asks for."""

    def test(value):
        expected = [m for m, group in model.signal.ids.items() if any(i in group for i in ids)]
        assert sorted(value) == sorted(expected), f"{sorted(value)}: look for each modality's signal ids"

    check("07.1", asked_for, test)


def ex07_2(complete, model) -> None:
    """complete(ids) makes every signal run whole, as signal_tokens.complete_runs does."""

    def test(fn):
        from nextgpt_mini.models.signal_tokens import complete_runs

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


def ex07_3(conditioning, model) -> None:
    """The video conditioning of "Make a video of a red square moving down slowly."."""

    def test(value):
        import torch

        result = model.generate("Make a video of a red square moving down slowly.", seed=0)
        assert "video" in result.conditioning, "the model did not ask for a video for this prompt"
        torch.testing.assert_close(torch.as_tensor(value).float(), result.conditioning["video"].float(), rtol=1e-4, atol=1e-5)

    check("07.3", conditioning, test)


def ex08_1(share) -> None:
    """The paper system's share (%) trained in stage 1."""

    def test(value):
        from nextgpt_mini.scaling.params import full_size_table_with_decoders

        rows = full_size_table_with_decoders("paper", stage="1")
        expected = 100 * sum(r.trainable for r in rows) / sum(r.total for r in rows)
        assert abs(float(value) - expected) < 1e-3 * expected, f"{value} is not the share in % (a fraction? x 100)"

    check("08.1", share, test)


def ex08_2(batch) -> None:
    """The largest per-device batch (1-64) for which colab stage 3 without gradient checkpointing
    fits 15 GB by the planner."""

    def test(value):
        from nextgpt_mini.scaling.memory import plan

        expected = max(b for b in range(1, 65) if plan("colab", stage="3", checkpointing=False, batch_size=b).fits)
        assert int(value) == expected, f"{value}: plan with batch {int(value) + 1} and see whether it fits"

    check("08.2", batch, test)


def ex08_3(count) -> None:
    """Vicuna-7B's LoRA parameters with r = 32 on q, k, v and o, by hand."""

    def test(value):
        from nextgpt_mini.scaling.params import full_size_table

        lora = {r.module: r.total for r in full_size_table("paper")}["LoRA"]
        assert int(value) == lora, f"{value} != {lora:,}: r x (in + out) per projection, 4 per layer, 32 layers"

    check("08.3", count, test)


# ---- chapter 09 ---------------------------------------------------------------------------
def ex09_1(clip_score_fn) -> None:
    """clip_score_fn(media [N, D], texts [N, D]) -> float: the CLIP score by hand: per pair
    max(100 x cos, 0), then the mean."""

    def test(fn):
        import torch

        from nextgpt_mini.evaluation.metrics import clip_score

        g = torch.Generator().manual_seed(9)
        media = torch.randn(16, 8, generator=g) * 3
        sign = torch.tensor([1.0] * 12 + [-1.0] * 4)[:, None]  # a few anti-aligned pairs: the floor is per pair
        texts = sign * media + torch.randn(16, 8, generator=g)
        got = fn(media, texts)
        if got is None:  # the stub
            raise NotImplementedError
        expected = clip_score(media, texts)
        assert abs(float(got) - expected) < 1e-4, (
            f"{float(got):.4f} != {expected:.4f}: cosine per pair (normalise both), x 100, negatives count as 0, mean")

    check("09.1", clip_score_fn, test)


def ex09_2(fids, features) -> None:
    """{n: FID between two independent samples of n held-out toy images (seeds 1 and 2)} for n = 10, 40."""

    def test(value):
        from nextgpt_mini.tiny import world as tw
        from nextgpt_mini.evaluation.metrics import frechet_distance
        from nextgpt_mini.tiny.toy_decoder import render

        assert set(value) == {10, 40}, f"keys {sorted(value)}: expected 10 and 40"

        def feats(n, seed):
            return features.fid_images([render(it, it.seed) for it in tw.sample_items("image", n, seed=seed, split="test")])

        for n in (10, 40):
            expected = frechet_distance(feats(n, 1), feats(n, 2))
            assert abs(float(value[n]) - expected) < 1e-3 * max(expected, 1), f"n={n}: {value[n]} != {expected:.4f}"
        assert value[10] > value[40], "with these samples FID should fall as n grows"

    check("09.2", fids, test)


def ex09_3(retrieval_fn) -> None:
    """retrieval_fn(media [N, D], texts [N, D]) -> float in [0, 1]: the share of items whose most
    similar text (cosine) is their own. A conditional metric: FID cannot see a swapped pair."""

    def test(fn):
        import torch

        g = torch.Generator().manual_seed(3)
        texts = torch.randn(12, 6, generator=g)
        if fn(texts * 2.0, texts) is None:  # the stub
            raise NotImplementedError
        assert abs(float(fn(texts * 2.0, texts)) - 1.0) < 1e-6, "identical directions: every item finds its own text"
        swapped = texts[[1, 0, *range(2, 12)]]
        assert abs(float(fn(swapped, texts)) - 10 / 12) < 1e-6, "two swapped items: 10 of 12 right"
        media = torch.randn(12, 6, generator=g)
        expected = float(((torch.nn.functional.normalize(media, dim=-1) @ torch.nn.functional.normalize(texts, dim=-1).T)
                          .argmax(1) == torch.arange(12)).float().mean())
        assert abs(float(fn(media, texts)) - expected) < 1e-6, "compare each item with every text, not only its own"

    check("09.3", retrieval_fn, test)
