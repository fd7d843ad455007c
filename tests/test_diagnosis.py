"""Where media -> text loses information (tiny/diagnosis.py), on the shipped encoder and LLM with
an untrained projector: the information is in the embedding and in the soft token; the frozen
LLM reads its best soft token; only the projector's training is missing."""

import pytest

from nextgpt_mini.models.nextgpt import NextGPT
from nextgpt_mini.tiny import diagnosis
from nextgpt_mini.tiny.data import stage1_data
from nextgpt_mini.utils import torch_threads


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    with torch_threads(1):
        model = NextGPT.from_profile("tiny", with_encoder=True)
        train, test = stage1_data(model, n_train=300, n_test=24, cache_dir=str(tmp_path_factory.mktemp("cache")))
        return diagnosis.diagnose(model, train, test)


def test_every_step_is_measured_for_every_attribute(report):
    assert set(report) == {"image", "video", "audio"}
    for steps in report.values():
        assert tuple(steps) == diagnosis.STEPS
        assert len({tuple(rates) for rates in steps.values()}) == 1  # the same attributes at every step
    assert len(diagnosis.report_lines(report)) == 3 * (1 + len(diagnosis.STEPS))


def test_the_embedding_and_even_a_random_soft_token_carry_the_attributes(report):
    for m, steps in report.items():
        assert min(steps["embedding probe"].values()) >= 0.75, (m, steps["embedding probe"])
        # a linear map of full rank loses nothing a linear probe can find
        for a, r in steps["embedding probe"].items():
            assert abs(steps["soft-token probe"][a] - r) <= 0.1, (m, a)


def test_the_frozen_llm_reads_its_best_soft_token_and_not_an_untrained_one(report):
    for m, steps in report.items():
        bag, greedy = steps["bag-of-words reading"], steps["greedy"]
        assert min(bag.values()) >= 0.9, (m, bag)
        assert sum(greedy.values()) / len(greedy) < 0.6, (m, greedy)


def test_by_pair_splits_every_item_once_by_its_colour_shape_pair():
    import torch

    from nextgpt_mini.data.pairs import PairSet
    from nextgpt_mini.tiny import world as tw

    items = tw.sample_items("image", 10, seed=4, split="test")  # the test split alternates held-out and seen pairs
    sets = {"image": PairSet("image", torch.arange(10.0)[:, None], [it.caption for it in items], items)}
    parts = diagnosis.by_pair(sets)
    assert list(parts) == ["image, seen pairs", "image, held-out pairs"]
    assert [it.obj.held_out for it in parts["image, held-out pairs"].items] == [True] * 5
    assert not any(it.obj.held_out for it in parts["image, seen pairs"].items)
    # embeddings and captions stay with their items
    assert sorted(parts["image, seen pairs"].embeddings[:, 0].tolist() + parts["image, held-out pairs"].embeddings[:, 0].tolist()) == list(range(10))
    for part in parts.values():
        assert [items[int(e)].caption for e in part.embeddings[:, 0]] == part.captions
