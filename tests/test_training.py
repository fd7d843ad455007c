import json

import pytest
import torch
from safetensors.torch import load_file

from nextgpt_mini import load_profile
from nextgpt_mini.models.nextgpt import NextGPT
from nextgpt_mini.prompts import collate, dialogue_segments, tokenize_segments
from nextgpt_mini.tiny import world as tw
from nextgpt_mini.training.trainer import Trainer, select_trainable
from tests._tiny_llm import random_tiny_llm


class CaptionSource:
    """Deterministic stage-1 batches: a fixed random 'embedding' per item, captioned."""

    def __init__(self, tok, st, n=32, batch_size=4, dim=64):
        g = torch.Generator().manual_seed(0)
        self.items = tw.sample_items("image", n, seed=0)
        self.embeds = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=-1)
        self.tok, self.st, self.batch_size = tok, st, batch_size

    def batch(self, step, rank=0, world=1):
        idx = [(step * self.batch_size + k) % len(self.items) for k in range(self.batch_size)]
        examples = []
        for i in idx:
            turns = [{"role": "user", "text": "Describe this image.", "media": [{"modality": "image"}]},
                     {"role": "assistant", "text": self.items[i].caption}]
            examples.append(tokenize_segments(dialogue_segments(turns, "nextgpt", self.st.tokens), self.tok, 64))
        batch = collate(examples, self.tok.pad_token_id)
        batch["media"] = [self.embeds[i : i + 1] for i in idx]
        return batch


def _system(seed=0):
    llm, tok, st = random_tiny_llm(seed)
    profile = load_profile("tiny")
    torch.manual_seed(seed)
    return NextGPT(profile, llm, tok, st).eval(), CaptionSource(tok, st)


def _cfg(**kw):
    cfg = load_profile("tiny").train
    cfg.eval_every = 1000
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_stage_1_trains_only_the_input_projector_and_the_loss_falls(tmp_path):
    system, source = _system()
    frozen = {n: p.clone() for n, p in system.llm.named_parameters()}
    start = system.input_projector.proj.weight.detach().clone()
    result = Trainer(system, "1", source, _cfg(lr=1e-2), out_dir=tmp_path, steps=16, progress=False).train()
    losses = result.losses()
    # a random LLM barely listens to one soft token; the real one is tested in test_stage1.py
    assert sum(losses[-4:]) < sum(losses[:4])
    assert not torch.equal(system.input_projector.proj.weight, start)
    assert all(torch.equal(p, dict(system.llm.named_parameters())[n]) for n, p in frozen.items())
    saved = load_file(tmp_path / "checkpoint" / "trainable.safetensors")
    assert sorted(saved) == ["input_projector.proj.bias", "input_projector.proj.weight"]
    assert (tmp_path / "loss.png").is_file()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 16


def test_a_stage_cannot_train_what_it_does_not_declare():
    system, _ = _system()
    named = select_trainable(system, "1")
    assert all(n.startswith("input_projector") for n in named)
    # something undeclared asking for gradients is refused
    class Leaky(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.extra = torch.nn.Linear(2, 2)

        def trainable_groups(self):
            return self.inner.trainable_groups()

        def requires_grad_(self, flag=True):
            self.inner.requires_grad_(flag)  # forgets self.extra
            return self

    with pytest.raises(RuntimeError, match="undeclared parameters: \\['extra.weight'"):
        select_trainable(Leaky(system), "1")
    with pytest.raises(ValueError, match="trains 'lora'"):
        select_trainable(system, "3")
    with pytest.raises(ValueError, match="unknown stage"):
        select_trainable(system, "4")


class InterruptAt:
    """A source that raises KeyboardInterrupt (Ctrl-C) when it is asked for a given step."""

    def __init__(self, source, step):
        self.source, self.step = source, step

    def batch(self, step, rank=0, world=1):
        if step == self.step:
            raise KeyboardInterrupt
        return self.source.batch(step, rank, world)


def test_resumed_run_equals_the_uninterrupted_one(tmp_path):
    system, source = _system()
    straight = Trainer(system, "1", source, _cfg(), out_dir=tmp_path / "a", steps=12, progress=False).train()

    system, source = _system()
    with pytest.raises(KeyboardInterrupt):
        Trainer(system, "1", InterruptAt(source, 7), _cfg(), out_dir=tmp_path / "b", steps=12, progress=False).train()
    # a new process: fresh system and trainer, same folder
    system, source = _system()
    state = json.loads((tmp_path / "b" / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 7
    resumed = Trainer(system, "1", source, _cfg(), out_dir=tmp_path / "b", steps=12, progress=False).train(resume=True)
    assert resumed.steps == 12
    assert resumed.losses() == straight.losses()
    w_a = load_file(tmp_path / "a" / "checkpoint" / "trainable.safetensors")
    w_b = load_file(tmp_path / "b" / "checkpoint" / "trainable.safetensors")
    assert all(torch.equal(w_a[k], w_b[k]) for k in w_a)
    log = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "step" in r and "eval" not in r] == list(range(1, 13))


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path):
    system, source = _system()
    trainer = Trainer(system, "1", InterruptAt(source, 4), _cfg(), out_dir=tmp_path, steps=10, progress=False)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    state = json.loads((tmp_path / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 4 and len(state["history"]) == 4
    system, source = _system()
    done = Trainer(system, "1", source, _cfg(), out_dir=tmp_path, steps=10, progress=False).train(resume=True)
    assert done.steps == 10 and len(done.history) == 10


def test_resume_refuses_a_checkpoint_of_another_stage_or_none(tmp_path):
    system, source = _system()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(system, "1", source, _cfg(), out_dir=tmp_path, steps=2, progress=False).train(resume=True)
    Trainer(system, "1", source, _cfg(), out_dir=tmp_path, steps=2, progress=False).train()
    state_file = tmp_path / "checkpoint" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["stage"] = "2"
    state_file.write_text(json.dumps(state))
    with pytest.raises(ValueError, match="from stage 2"):
        Trainer(system, "1", source, _cfg(), out_dir=tmp_path, steps=4, progress=False).train(resume=True)


def test_the_stage_table_covers_every_stage_and_matches_what_the_model_can_train():
    from nextgpt_mini.constants import STAGES
    from nextgpt_mini.models.nextgpt import NextGPT
    from nextgpt_mini.training.stages import STAGE_TABLE, STAGE_TRAINS

    assert tuple(STAGE_TABLE) == STAGES and {k: s.trains for k, s in STAGE_TABLE.items()} == STAGE_TRAINS
    model = NextGPT.from_profile("tiny")
    model.enable_lora()
    groups = model.trainable_groups()
    assert all(g in groups for s in STAGE_TABLE.values() for g in s.trains), (sorted(groups), STAGE_TRAINS)


def test_gradient_checkpointing_is_switched_on_by_the_config_and_gives_the_same_gradients(tmp_path):
    # train.gradient_checkpointing (the colab profile's) reached nothing before: NextGPT had no
    # enable_gradient_checkpointing, and the Trainer only calls it where it exists (issue 18)
    def gradients(checkpointing: bool):
        system, source = _system()
        trainer = Trainer(system, "1", source, _cfg(gradient_checkpointing=checkpointing), out_dir=tmp_path, steps=1,
                          progress=False)
        base = system.llm.get_base_model() if hasattr(system.llm, "get_base_model") else system.llm
        assert base.is_activation_checkpointing == checkpointing
        system.train()
        system.stage_loss(source.batch(0), "1")["loss"].backward()
        return [p.grad.clone() for p in trainer.named.values()]

    for a, b in zip(gradients(False), gradients(True)):
        torch.testing.assert_close(a, b)
