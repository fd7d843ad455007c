import re

from nextgpt_mini.cache import sha256_file
from nextgpt_mini.tiny import registry
from nextgpt_mini.tiny.build import build
from nextgpt_mini.tiny.tokenizer import SPECIAL_TOKENS, load_tiny_tokenizer
from nextgpt_mini.utils import ASSETS


def test_every_shipped_asset_matches_the_manifest():
    assert registry.read_manifest(), "assets/MANIFEST.json is missing"
    assert registry.manifest_mismatches() == [], "differ from what was built"


def test_every_file_in_the_assets_folder_is_in_the_manifest_or_a_record():
    on_disk = {p.relative_to(ASSETS).as_posix() for p in ASSETS.rglob("*") if p.is_file()}
    assert on_disk - set(registry.RECORDS) - set(registry.BUILD_INPUTS) == set(registry.read_manifest())


def test_every_manifest_entry_and_package_reference_names_a_registered_asset(repo):
    assert {rel.split("/")[0] for rel in registry.read_manifest()} == set(registry.SHIPPED)
    # the core (config.py's profiles, the CLI's defaults) names shipped assets as "package:<name>"
    # strings, since it never imports tiny/
    refs = {}
    for path in (repo / "nextgpt_mini").rglob("*.py"):
        for name in re.findall(r"package:(\w[\w.]*)", path.read_text()):
            refs.setdefault(name, path.name)
    assert {"tiny_imagebind.safetensors", "tiny_tokenizer", "tiny_llm"} <= set(refs)  # the tiny profile's
    assert set(refs) <= set(registry.SHIPPED), refs


def test_tokenizer_rebuild_reproduces_the_shipped_file(tmp_path):
    assert build("tokenizer", out=str(tmp_path)) == 0
    assert sha256_file(tmp_path / "tokenizer.json") == registry.read_manifest()["tiny_tokenizer/tokenizer.json"]
    assert "## tokenizer" in (tmp_path / registry.BUILD_RESULTS).read_text()


def test_results_sections_are_replaced_and_the_history_stays_last(tmp_path):
    (tmp_path / registry.BUILD_RESULTS).write_text("# Build results\n\n## History\n\nold numbers\n")
    registry.record_results("llm", ["loss 1"], tmp_path)
    registry.record_results("clap", ["closest 0.8"], tmp_path)
    registry.record_results("llm", ["loss 2"], tmp_path)
    text = (tmp_path / registry.BUILD_RESULTS).read_text()
    assert "loss 1" not in text and text.index("loss 2") < text.index("closest 0.8") < text.index("## History")
    assert text.endswith("## History\n\nold numbers\n")


def test_tiny_tokenizer_special_ids_and_toy_words_are_single_tokens():
    tok = load_tiny_tokenizer()
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2]
    ids = tok("a big red circle moving left quickly")["input_ids"]
    assert len(ids) == 7
    assert tok.decode(tok("Any text, even wörds it never saw!")["input_ids"]) == "Any text, even wörds it never saw!"
