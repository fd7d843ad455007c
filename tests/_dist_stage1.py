"""Stage 1 for a few steps on a small toy set, for tests/test_distributed.py: run as one process
(`python tests/_dist_stage1.py OUT STEPS CACHE`) or several (`torchrun --nproc_per_node 2 tests/_dist_stage1.py
OUT STEPS CACHE`); `--resume` continues from OUT's checkpoint; `--interrupt-at N` stops as Ctrl-C
would before step N (the trainer saves a checkpoint on the way out)."""

import sys

import torch

from nextgpt_mini import load_profile
from nextgpt_mini.models.nextgpt import NextGPT
from nextgpt_mini.tiny.data import stage1_data
from nextgpt_mini.training.stage1 import CaptionBatches
from nextgpt_mini.training.trainer import Trainer

out, steps = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(1)
profile = load_profile("tiny")
model = NextGPT.from_profile(profile)
train, _ = stage1_data(model, n_train=48, n_test=3, seed=0, cache_dir=sys.argv[3])
source = CaptionBatches(train, model.tokenizer, model.signal, profile.llm.template, 16, profile.llm.max_length, profile.seed)
if "--interrupt-at" in sys.argv:
    stop, batch = int(sys.argv[sys.argv.index("--interrupt-at") + 1]), source.batch

    def interrupting(step, rank=0, world=1):
        if step == stop:
            raise KeyboardInterrupt
        return batch(step, rank, world)

    source.batch = interrupting
try:
    Trainer(model, "1", source, profile.train, out_dir=out, steps=steps, progress=False).train(resume="--resume" in sys.argv)
except KeyboardInterrupt:
    print("interrupted")
