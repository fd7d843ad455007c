"""Chapter 07: exercise checks for notebooks/07_any_to_any_inference.ipynb.

The checks: the modalities asked for, completing signal runs, the video conditioning.
Each `ex07_k(answer)` prints "ok", "not done yet" or what is still wrong (see `course.check`);
the solutions notebook runs the same checks and must print "ok".
"""

from __future__ import annotations

import torch

from nextgpt_mini.course import check
from nextgpt_mini.models.signal_tokens import complete_runs


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


def ex07_3(conditioning, model) -> None:
    """The video conditioning of "Make a video of a red square moving down slowly."."""

    def test(value):
        result = model.generate("Make a video of a red square moving down slowly.", seed=0)
        assert "video" in result.conditioning, "the model did not ask for a video for this prompt"
        torch.testing.assert_close(torch.as_tensor(value).float(), result.conditioning["video"].float(), rtol=1e-4, atol=1e-5)

    check("07.3", conditioning, test)
