import dataclasses

import pytest
import torch

import nextgpt_mini.cache as cache_mod
from nextgpt_mini.cache import EmbeddingCache, encoder_identity, file_key, state_dict_digest, text_key
from nextgpt_mini.profiles import load_profile

ID = "ab" * 32


def _files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_tensor_and_dict_values_round_trip_with_counters(tmp_path):
    c = EmbeddingCache(tmp_path, ID)
    k1, k2 = text_key("a red circle"), text_key("a blue square")
    assert c.get_many([k1, k2]) == {} and c.stats() == {"hits": 0, "misses": 2, "corrupt": 0, "writes": 0}
    c.put_many({k1: torch.arange(4.0), k2: {"prompt_embeds": torch.ones(2, 3), "mask": torch.tensor([1, 0])}})
    got = EmbeddingCache(tmp_path, ID).get_many([k1, k2, k1])  # a fresh instance reads the same files
    assert torch.equal(got[k1], torch.arange(4.0))
    assert set(got[k2]) == {"prompt_embeds", "mask"} and got[k2]["mask"].dtype == torch.int64
    path = c.path_for(k1)
    assert path == tmp_path / ID[:16] / k1[:2] / f"{k1}.safetensors" and path.is_file()
    assert k1 in c and c.writes == 2


def test_a_batch_row_view_is_stored_alone(tmp_path):
    c = EmbeddingCache(tmp_path, ID)
    batch = torch.randn(100, 64)
    c.put("row3", batch[3])
    assert c.path_for("row3").stat().st_size < 64 * 4 + 400  # not the whole batch's storage
    assert torch.equal(c.get("row3"), batch[3])


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "foreign"])
def test_damaged_entry_is_a_miss_with_a_warning_and_is_repaired(tmp_path, damage):
    c = EmbeddingCache(tmp_path, ID)
    key = text_key("x")
    path = c.put(key, torch.ones(64))
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) - 50])
    elif damage == "garbage":
        path.write_bytes(b"\x00\xff" * 40)
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a valid file written for another key / identity, copied into place
        other = EmbeddingCache(tmp_path / "o", "cd" * 32).put(text_key("y"), torch.zeros(64))
        path.write_bytes(other.read_bytes())
    with pytest.warns(UserWarning, match="unreadable entry"):
        assert c.get(key) is None
    assert c.stats()["corrupt"] == 1 and not path.exists()
    c.put(key, torch.full((64,), 2.0))  # the caller recomputes and rewrites it
    assert torch.equal(c.get(key), torch.full((64,), 2.0))


def test_crash_during_put_leaves_no_entry_and_no_temp_file(tmp_path, monkeypatch):
    c = EmbeddingCache(tmp_path, ID)
    real_save = cache_mod.save_safetensors

    def crashing_save(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as fh:  # half the file is on disk when the "crash" comes
            fh.truncate(fh.seek(0, 2) // 2)
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod, "save_safetensors", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        c.put(text_key("x"), torch.ones(8))
    assert _files(tmp_path) == []
    monkeypatch.undo()
    assert c.get(text_key("x")) is None and c.corrupt == 0  # a plain miss, not a damaged entry


def test_keys_and_identities_are_validated(tmp_path):
    c = EmbeddingCache(tmp_path, ID)
    for bad in ("../../etc", "a/b", ".hidden", "x"):
        with pytest.raises(ValueError):
            c.path_for(bad)
    with pytest.raises(ValueError):
        EmbeddingCache(tmp_path, "../x")
    with pytest.raises(TypeError):
        c.put("abcd", [1, 2])


def test_content_keys(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.write_bytes(b"same bytes")
    b.write_bytes(b"same bytes")
    assert file_key(a, "audio") == file_key(b, "audio")  # the name does not matter
    assert file_key(a, "audio") != file_key(a, "video")  # how the bytes are read does
    assert text_key("a dog") != text_key("a dog ") and len(text_key("a dog")) == 64


def test_encoder_identity_follows_config_and_weights(tmp_path):
    cfg = load_profile("tiny").encoder
    sd = {"w": torch.ones(3, 2), "b": torch.zeros(2, dtype=torch.bfloat16), "scale": torch.tensor(2.0)}
    base = encoder_identity(cfg, state_dict=sd)
    assert base == encoder_identity(dataclasses.replace(cfg, weights="elsewhere"), state_dict=sd)
    assert base != encoder_identity(dataclasses.replace(cfg, audio_clips=3), state_dict=sd)
    sd2 = dict(sd, scale=torch.tensor(2.5))
    assert base != encoder_identity(cfg, state_dict=sd2) and state_dict_digest(sd) != state_dict_digest(sd2)
    w = tmp_path / "w.safetensors"
    w.write_bytes(b"weights v1")
    v1 = encoder_identity(cfg, w)
    w2 = tmp_path / "w2.safetensors"
    w2.write_bytes(b"weights v2")
    w2.replace(w)  # an atomic rewrite of the same path
    assert encoder_identity(cfg, w) != v1
    with pytest.raises(ValueError, match="weights"):
        encoder_identity(cfg)
