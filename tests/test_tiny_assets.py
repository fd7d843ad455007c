from nextgpt_mini.tiny import assets as tiny_assets
from nextgpt_mini.tiny.tokenizer import SPECIAL_TOKENS, load_tiny_tokenizer
from nextgpt_mini.utils import ASSETS


def test_every_shipped_asset_matches_the_manifest():
    manifest = tiny_assets.read_manifest()
    assert manifest, "assets/MANIFEST.json is missing"
    for rel, digest in manifest.items():
        assert tiny_assets.sha256_file(ASSETS / rel) == digest, f"{rel} differs from what was built"


def test_tokenizer_rebuild_reproduces_the_shipped_file(tmp_path):
    assert tiny_assets.build("tokenizer", out=str(tmp_path)) == 0
    assert tiny_assets.sha256_file(tmp_path / "tokenizer.json") == tiny_assets.read_manifest()["tiny_tokenizer/tokenizer.json"]


def test_tiny_tokenizer_special_ids_and_toy_words_are_single_tokens():
    tok = load_tiny_tokenizer()
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2]
    ids = tok("a big red circle moving left quickly")["input_ids"]
    assert len(ids) == 7
    assert tok.decode(tok("Any text, even wörds it never saw!")["input_ids"]) == "Any text, even wörds it never saw!"
