"""Chapter 06: exercise checks for notebooks/06_mosit_instruction_tuning.ipynb.

The checks: media-asking answers, a converted record, the loss with and without the video weight.
Each `ex06_k(answer)` prints "ok", "not done yet" or what is still wrong (see `course.check`);
the solutions notebook runs the same checks and must print "ok".
"""

from __future__ import annotations

import torch

from nextgpt_mini.course import check
from nextgpt_mini.training.stage3 import dialogue_example


def ex06_1(n, test_set) -> None:
    """Held-out dialogues whose first answer asks for media."""

    def test(value):
        expected = sum("output" in d["turns"][1] for d in test_set.dialogues)
        assert int(value) == expected, f"{value} is not the number of first answers with an 'output'"

    check("06.1", n, test)


def ex06_2(dialogue, model) -> None:
    """A converted record: one user turn, one answer that produces the image 'a red circle'."""

    def test(d):
        turns = d["turns"]
        assert [t["role"] for t in turns] == ["user", "assistant"], "expected a user turn then an assistant turn"
        assert turns[1].get("output") == {"modality": "image", "caption": "a red circle"}, "the answer's output is not the image"
        spans = dialogue_example(model, d).signal_spans
        assert len(spans) == 1 and spans[0][0] == "image" and spans[0][2] - spans[0][1] == len(model.signal.ids["image"]), spans

    check("06.2", dialogue, test)


def ex06_3(losses, model, batch) -> None:
    """(loss with video weight 2, loss with weight 0) on one T->V batch: half their difference must
    be the batch's video distance, which the check measures itself."""

    def test(pair):
        with_video, without_video = (float(x) for x in pair)
        with torch.no_grad():
            out = model.stage_loss(batch, "3")
        assert "video_distance" in out, "that batch produces no video: use the T->V batch"
        d = float(out["video_distance"])
        assert with_video > without_video, "with the video distance weighted in, the loss must be larger"
        got = (with_video - without_video) / 2
        assert abs(got - d) <= 1e-4 * max(1.0, d), f"half the difference is {got:.4f}; the batch's video distance is {d:.4f}"

    check("06.3", None if losses is None or None in tuple(losses) else losses, test)
