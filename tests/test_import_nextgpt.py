"""Issue 20: `nextgpt-mini import-nextgpt` on a checkpoint in the exact released layout.

The released file (ChocoWu/nextgpt_7b_tiva_v0, pytorch_model.pt) cannot be downloaded here, so this
builds one like it: 647 fp16 tensors at the real shapes with random values, the output projectors
made by NExT-GPT's own TextFcLayer as docs/import-nextgpt.md describes it (written out below, not
taken from the package). The imported folder must hold exactly the checkpoint's tensors under our
names, its projectors must compute what TextFcLayer computes, and it must load strictly into the
paper-sized system (built on the meta device: no 13 GB LLM here).
"""

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from nextgpt_mini.cli import main
from nextgpt_mini.constants import FROZEN_ROWS
from nextgpt_mini.models.import_nextgpt import check_layout, expected_shapes, released_profile

H, VOCAB, ROWS = 4096, 32000, 32038
OUT = {"image": (768, 77, 4), "video": (1024, 77, 24), "audio": (512, 1, 8)}  # out dim, queries, signal tokens
PREFIX = {"image": "gen_text_hidden_fcs.0.", "video": "gen_text_hidden_fcs_video.0.", "audio": "gen_text_hidden_fcs_audio.0."}


class TextFcLayer(nn.Module):
    """NExT-GPT's code/model/layers.py, 'transformer' mode (in_dim 4096, 512 wide, 4+4 layers)."""

    def __init__(self, out_dim: int, num_output_tokens: int):
        super().__init__()
        self.fc = nn.Linear(H, 512)
        with warnings.catch_warnings():  # norm_first rules out a fast path
            warnings.filterwarnings("ignore", message="enable_nested_tensor is True")
            self.tfm = nn.Transformer(batch_first=True, norm_first=True, d_model=512, num_encoder_layers=4,
                                      num_decoder_layers=4, dim_feedforward=2048, dropout=0.0, nhead=4)
        self.model = nn.Linear(512, out_dim)
        self.query_embs = nn.Parameter(torch.randn(1, num_output_tokens, 512))

    def forward(self, x, input_embs):
        x = x + input_embs
        x = self.fc(x)
        x = self.tfm(x, self.query_embs.repeat(x.shape[0], 1, 1))
        return self.model(x)


def released_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = {}
    for i in range(32):
        for t in ("q_proj", "k_proj", "v_proj", "o_proj"):
            base = f"llama_model.base_model.model.model.layers.{i}.self_attn.{t}"
            state[f"{base}.lora_A.default.weight"] = torch.randn(32, H, dtype=torch.float16)
            state[f"{base}.lora_B.default.weight"] = torch.randn(H, 32, dtype=torch.float16)
    state["llama_model.base_model.model.model.embed_tokens.weight"] = torch.randn(ROWS, H, dtype=torch.float16)
    state["llama_model.base_model.model.lm_head.weight"] = torch.randn(ROWS, H, dtype=torch.float16)
    state["llama_proj.weight"] = torch.randn(H, 1024, dtype=torch.float16)
    state["llama_proj.bias"] = torch.randn(H, dtype=torch.float16)
    for m, (out_dim, queries, _) in OUT.items():
        layer = TextFcLayer(out_dim, queries)
        for k, v in layer.state_dict().items():
            state[PREFIX[m] + k] = v.half()
    return state


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("released")
    state = released_state()
    torch.save(state, root / "pytorch_model.pt")
    assert main(["import-nextgpt", str(root / "pytorch_model.pt"), "--out", str(root / "imported"),
                 "--llm", "/models/vicuna-7b-v0"]) == 0
    return state, root


def test_the_stand_in_is_the_released_layout():
    # the facts: 647 tensors, 396,045,568 parameters (792 MB in fp16); projectors 31,958,784 / 32,090,112 / 31,788,544
    shapes = expected_shapes(released_profile())
    assert len(shapes) == 647 and sum(torch.Size(s).numel() for s in shapes.values()) == 396_045_568
    assert [sum(torch.Size(s).numel() for k, s in shapes.items() if k.startswith(PREFIX[m])) for m in OUT] == \
        [31_958_784, 32_090_112, 31_788_544]
    assert sum(k.startswith(PREFIX["image"]) for k in shapes) == 129


def test_imported_tensors_are_the_checkpoints(imported):
    state, root = imported
    trained = load_file(root / "imported" / "trained.safetensors")
    frozen = load_file(root / "imported" / FROZEN_ROWS)
    assert len(trained) == 647
    lora = {k: v for k, v in trained.items() if "lora_" in k}
    assert len(lora) == 256
    for k, v in state.items():
        if "lora_" in k:
            assert torch.equal(lora["llm." + k[len("llama_model."):]], v), k
    for ours, original in (("llm.base_model.model.model.embed_tokens", "llama_model.base_model.model.model.embed_tokens.weight"),
                           ("llm.base_model.model.lm_head", "llama_model.base_model.model.lm_head.weight")):
        assert torch.equal(trained[f"{ours}.new_rows"], state[original][VOCAB:])  # the 38 signal-token rows
        assert torch.equal(frozen[f"{ours}.old_rows"], state[original][:VOCAB])  # the trained base rows
    assert torch.equal(trained["input_projector.proj.weight"], state["llama_proj.weight"])
    config = json.loads((root / "imported" / "config.json").read_text())
    assert config["lora"] and config["profile"]["llm"]["template"] == "legacy"
    assert config["profile"]["llm"]["name_or_path"] == "/models/vicuna-7b-v0"
    assert [config["profile"]["signal_tokens"][m] for m in OUT] == [4, 24, 8]


def test_it_loads_strictly_at_the_paper_interfaces_and_computes_textfclayer(imported):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from nextgpt_mini.models.llm import build_empty_llm
    from nextgpt_mini.models.nextgpt import NextGPT
    from nextgpt_mini.models.signal_tokens import add_signal_tokens

    state, root = imported
    profile = released_profile("/models/vicuna-7b-v0")
    # Vicuna-7B v0 on the meta device, with a 32000-entry stand-in vocabulary (the real one is LLaMA-1's)
    llm = build_empty_llm(profile.llm)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i for i in range(3, VOCAB)}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
                                  unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    signal = add_signal_tokens(llm, tok, profile.signal_tokens, legacy=True)
    assert signal.ids["image"] == [32002, 32003, 32004, 32005] and signal.ids["video"][0] == 32006
    assert signal.ids["audio"] == list(range(32030, 32038))  # the checkpoint's vocabulary order
    model = NextGPT(profile, llm, tok, signal)
    model.enable_lora()
    loaded = model.load_trained(root / "imported")  # every name and shape checked
    assert len(loaded) == 647
    assert len(model.load_frozen_rows(root / "imported" / FROZEN_ROWS)) == 2
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for group in model.trainable_groups().values() for p in group} == set(loaded)  # all of them

    torch.manual_seed(1)
    for m, (out_dim, queries, n) in OUT.items():
        original = TextFcLayer(out_dim, queries)
        original.load_state_dict({k[len(PREFIX[m]):]: v.float() for k, v in state.items() if k.startswith(PREFIX[m])})
        hidden, embeds = torch.randn(2, n, H), torch.randn(2, n, H)
        with torch.no_grad():
            want = original(hidden, embeds)
            got = model.output_projectors[m](hidden, embeds)
        want = want[:, 0] if queries == 1 else want
        assert got.shape == want.shape == ((2, out_dim) if queries == 1 else (2, queries, out_dim))
        assert (got - want).abs().max().item() <= 1e-4, m
    x = torch.randn(3, 1024)
    with torch.no_grad():
        want = x @ state["llama_proj.weight"].float().T + state["llama_proj.bias"].float()
        assert (model.input_projector(x) - want).abs().max().item() <= 1e-4


def _refused(tmp_path, path, expect: str, capsys):
    out = tmp_path / "out"
    assert main(["import-nextgpt", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and len(err.splitlines()) == 1, err
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())  # nothing written


def test_a_truncated_file_is_refused_in_one_line(imported, tmp_path, capsys):
    _, root = imported
    with open(root / "pytorch_model.pt", "rb") as f:
        (tmp_path / "cut.pt").write_bytes(f.read(50_000_000))
    _refused(tmp_path, tmp_path / "cut.pt", "not a complete PyTorch checkpoint", capsys)


def test_another_layout_and_a_non_checkpoint_are_refused(tmp_path, capsys):
    torch.save({"model.mm_input_projector.weight": torch.zeros(4096, 1024)}, tmp_path / "v15.pt")
    _refused(tmp_path, tmp_path / "v15.pt", "not NExT-GPT's 7b_tiva_v0 layout", capsys)
    (tmp_path / "notes.pt").write_text("this is not a checkpoint\n")
    _refused(tmp_path, tmp_path / "notes.pt", "not a PyTorch checkpoint", capsys)
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    _refused(tmp_path, tmp_path / "list.pt", "expected a dict of tensors", capsys)
    _refused(tmp_path, tmp_path / "missing.pt", "no such file", capsys)
    torch.save({"x": Payload()}, tmp_path / "code.pt")  # unpickling it would run this module's code
    _refused(tmp_path, tmp_path / "code.pt", "holds objects other than tensors", capsys)


class Payload:
    pass


def test_a_mis_shaped_tensor_is_named():
    profile = released_profile()
    state = {k: torch.empty(s, dtype=torch.float16, device="meta") for k, s in expected_shapes(profile).items()}
    check_layout(state, profile)  # the layout itself passes
    state["gen_text_hidden_fcs_audio.0.query_embs"] = torch.empty(1, 77, 512, device="meta")
    with pytest.raises(ValueError, match=r"query_embs has shape \(1, 77, 512\), the released layout has \(1, 1, 512\)"):
        check_layout(state, profile)
    del state["llama_proj.bias"]
    with pytest.raises(ValueError, match="no 'llama_proj.bias'"):
        check_layout(state, profile)


def test_an_existing_folder_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    torch.save({"x": torch.zeros(1)}, tmp_path / "x.pt")
    assert main(["import-nextgpt", str(tmp_path / "x.pt"), "--out", str(tmp_path / "out")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_the_memory_plan_of_the_import_in_4_bits_fits_a_t4(tmp_path, capsys):
    from nextgpt_mini.models.nextgpt import read_saved_config
    from nextgpt_mini.scaling.memory import plan

    folder = tmp_path / "sys"
    folder.mkdir()
    p = released_profile()
    p.llm.load_in_bits = 4
    (folder / "config.json").write_text(json.dumps({"format": "nextgpt-mini", "version": 1, "lora": True, "profile": p.to_dict()}))
    got = plan(read_saved_config(folder)[1])
    assert got.dtype == "int4" and got.fits  # llm.load_in_bits=4 is what the plan reads
    assert plan(read_saved_config(folder)[1], dtype="fp16").gpu_total > got.gpu_total + 8 * 1024**3  # 7 B in 16-bit does not
    assert main(["memory", "--checkpoint", str(folder), "--inference"]) == 0
    assert "LLM in int4" in capsys.readouterr().out
