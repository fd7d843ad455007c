"""Other instruction formats read into our MosIT dialogues."""

import json

import pytest

from nextgpt_mini.data.formats import detect_format, read_dialogues


def write(tmp_path, name, records):
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def test_nextgpt_t2m_record_becomes_a_text_to_audio_dialogue(tmp_path):
    path = write(tmp_path, "t2m.json", [{
        "audio_captions": ["A vehicle engine works at regular pace and a man speeches"],
        "conversations": [
            {"from": "human", "value": "Can you play an engine and a speech?", "input_modality": "text"},
            {"from": "gpt", "value": "Here it is. <audio>", "caption": "A vehicle engine works at regular pace and a man speeches",
             "output_modality": "audio"},
        ],
    }])
    (d,) = read_dialogues(path)
    assert d["task"] == "T->A"
    assert d["turns"][1] == {"role": "assistant", "text": "Here it is.",
                             "output": {"modality": "audio", "caption": "A vehicle engine works at regular pace and a man speeches"}}


def test_nextgpt_mosit_record_with_input_media_and_two_outputs(tmp_path):
    path = write(tmp_path, "mosit.json", [{"id": "m1", "conversation": [
        {"from": "human", "value": "<image> What would this sound like?", "input_modality": "image", "mm_name": "a.jpg"},
        {"from": "gpt", "value": "Like this: <audio>", "output_modality": "audio", "caption": "waves on a beach"},
        {"from": "human", "value": "And a video?"},
        {"from": "gpt", "value": "<video>", "output_modality": "video", "caption": "waves rolling in"},
    ]}])
    (d,) = read_dialogues(path, media_dir=tmp_path / "media")
    assert d["id"] == "m1" and d["task"] == "I->V,A"
    assert d["turns"][0]["media"] == [{"modality": "image", "path": str(tmp_path / "media" / "a.jpg")}]
    assert d["turns"][0]["text"] == "What would this sound like?"
    assert [t.get("output", {}).get("modality") for t in d["turns"]] == [None, "audio", None, "video"]


def test_llava_and_alpaca(tmp_path):
    llava = write(tmp_path, "llava.json", [{"id": "000001", "image": "bus.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat colour is the bus?"}, {"from": "gpt", "value": "Red."}]}])
    (d,) = read_dialogues(llava)
    assert d["task"] == "I->T" and d["turns"][0]["text"] == "What colour is the bus?"
    assert d["turns"][0]["media"][0]["path"].endswith("bus.jpg")
    alpaca = write(tmp_path, "alpaca.json", [{"instruction": "Add.", "input": "2 and 3", "output": "5"}])
    (d,) = read_dialogues(alpaca)
    assert d == {"id": "alpaca-0", "task": "T->T", "turns": [{"role": "user", "text": "Add.\n2 and 3"}, {"role": "assistant", "text": "5"}]}


def test_our_own_format_and_the_committed_samples_read():
    from nextgpt_mini.course import data_samples_dir

    dialogues = read_dialogues(data_samples_dir() / "mosit" / "mosit.json")
    assert len(dialogues) >= 24 and detect_format([{"turns": []}]) == "mosit"


@pytest.mark.parametrize("records, message", [
    ([{"foo": 1}], "unrecognised instruction format"),
    ([{"conversations": [{"from": "robot", "value": "hi"}]}], "record 0, turn 0"),
    ([{"conversations": [{"from": "gpt", "value": "x", "output_modality": "image"}]}], "needs a 'caption'"),
    ([{"instruction": "x"}], "unrecognised"),
    ({"not": "a list"}, "expected a JSON list"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, records, message):
    path = write(tmp_path, "bad.json", records)
    with pytest.raises(ValueError, match=message) as err:
        read_dialogues(path)
    assert "bad.json" in str(err.value)
