"""Runs of signal tokens: the one scanner (`find_runs`) that training and generation share."""

import json
from pathlib import Path

import pytest

from nextgpt_mini.models.signal_tokens import complete_runs, find_runs, is_complete
from nextgpt_mini.prompts import dialogue_segments, tokenize_segments
from tests._tiny_llm import random_tiny_llm

SIG = {"image": [10, 11, 12, 13], "video": [30, 31, 32], "audio": [20, 21]}


def test_find_runs_splits_mixed_modalities_and_keeps_cut_short_runs():
    ids = [1, 10, 11, 2, 20, 21, 30, 31, 32, 10, 3, 12, 13]
    assert find_runs(ids, SIG) == [("image", 1, 3), ("audio", 4, 6), ("video", 6, 9), ("image", 9, 10), ("image", 11, 13)]
    assert find_runs([1, 2, 3], SIG) == [] and find_runs([], SIG) == []
    # out of order, repeated: still one run (a run is a stretch of one modality, not a sequence)
    assert find_runs([13, 10, 10], SIG) == [("image", 0, 3)]


def test_find_runs_starts_only_where_allowed_and_then_continues():
    ids = [10, 11, 1, 10, 11, 12, 13, 20]
    mask = [False, False, True, False, True, True, True, True]
    # 0-1: not allowed to start; 3: not allowed, 4: starts and runs on to 7; 7: audio starts
    assert find_runs(ids, SIG, mask) == [("image", 4, 7), ("audio", 7, 8)]
    # a run that started continues over positions that could not start one
    assert find_runs([10, 11, 12], SIG, [True, False, False]) == [("image", 0, 3)]
    assert find_runs(ids, SIG, [False] * len(ids)) == []


def test_is_complete_wants_the_whole_sequence_in_order():
    ids = [10, 11, 12, 13, 1, 10, 11, 13, 12, 20]
    runs = find_runs(ids, SIG)
    assert [is_complete(ids, r, SIG) for r in runs] == [True, False, False]


def test_complete_runs_completes_caps_and_keeps_other_tokens():
    out, runs, completed = complete_runs([1, 10, 11, 2], SIG)
    assert out == [1, 10, 11, 12, 13, 2] and runs == [("image", 1, 5)] and completed == ["image"]
    # the second image run is over the cap: dropped, the tokens around it kept
    out, runs, completed = complete_runs([20, 1, 10, 11, 12, 13, 2, 10, 3], SIG)
    assert out == [20, 21, 1, 10, 11, 12, 13, 2, 3] and runs == [("audio", 0, 2), ("image", 3, 7)] and completed == ["audio"]
    out, runs, completed = complete_runs([10, 2, 13, 31], SIG, max_per_modality=2)
    assert out == [10, 11, 12, 13, 2, 10, 11, 12, 13, 30, 31, 32]
    assert runs == [("image", 0, 4), ("image", 5, 9), ("video", 9, 12)] and completed == ["image", "image", "video"]
    assert complete_runs([4, 5], SIG) == ([4, 5], [], [])


@pytest.fixture(scope="module")
def llm():
    return random_tiny_llm()


def _spans(turns, tok, st, max_length=128):
    return tokenize_segments(dialogue_segments(turns, "nextgpt", st.tokens), tok, max_length, signal_ids=st.ids).signal_spans


def test_prompt_signal_spans_are_those_of_the_old_scanner(llm):
    # pinned: the spans `prompts._signal_spans` gave before the scanners were merged
    _, tok, st = llm
    assert st.ids["image"] == [487, 488, 489, 490] and st.ids["audio"] == [499, 500, 501, 502]
    # the toy dialogues the old scanner read (written before the phrasing families changed their words)
    dialogues = json.loads((Path(__file__).parent / "signal_span_dialogues.json").read_text())
    spans = [_spans(turns, tok, st) for turns in dialogues]
    assert spans == [[("image", 42, 46), ("audio", 88, 92)], [("video", 47, 55)], [], [("audio", 42, 46)],
                     [("image", 42, 46), ("audio", 88, 92)], [("video", 46, 54)]]
    # signal tokens the user typed are not spans (not an answer); an answer cut at max_length leaves a short span
    turns = [{"role": "user", "text": "Say [IMG0][IMG1] back.", "media": []},
             {"role": "assistant", "text": "Here.", "output": {"modality": "video", "caption": "x"}}]
    assert _spans(turns, tok, st) == [("video", 35, 43)]
    assert _spans(turns, tok, st, max_length=38) == [("video", 35, 38)]
    assert tokenize_segments(dialogue_segments(turns, "nextgpt", st.tokens), tok, 128).signal_spans == []
