"""Chapter 02: exercise checks for notebooks/02_input_projection_alignment.ipynb.

The checks: stage 1's trainable count, the weakest audio attribute, an MLP projector's held-out loss.
Each `ex02_k(answer)` prints "ok", "not done yet" or what is still wrong (see `course.check`);
the solutions notebook runs the same checks and must print "ok".
"""

from __future__ import annotations

from nextgpt_mini.course import check
from nextgpt_mini.profiles import load_profile
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.training.stage1 import greedy_captions


def ex02_1(n) -> None:
    """Parameters stage 1 trains in the tiny profile: the input projector's weight and bias."""

    def test(value):
        p = load_profile("tiny")
        expected = p.encoder.out_embed_dim * p.llm.hidden_size + p.llm.hidden_size
        assert int(value) == expected, f"{value} is not what stage 1 trains"

    check("02.1", n, test)


def ex02_2(name, model, test_sets) -> None:
    """The audio attribute the trained model names right least often."""

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
