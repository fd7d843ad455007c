"""Memory of one training step at a full-size profile, measured on the CPU, held against the planner.

`nextgpt-mini memory --profile colab --stage 3` is computed from shapes (`scaling/memory.py`). This
runs the package's own code instead: the profile's LLM at full depth and width with random weights
(TinyLlama-1.1B for colab; nothing is downloaded) in 16 bits as on a GPU (bf16: a CPU has no fast
fp16), a 32000-entry stand-in tokenizer, `NextGPT` with its projectors, signal rows and (stage 3)
LoRA in fp32, gradient checkpointing as the profile sets it, and one `stage_loss` step on a batch
of the profile's size at its full sequence length (one media item per example, one signal run per
answer), then AdamW. A thread samples the process's resident memory every millisecond. Printed:

* the weights: resident memory after building minus before, against the planner's weight lines;
* the step: the peak during forward, backward and the optimizer step (after one step of each
  other modality, so that AdamW's moments exist for everything that trains, as in a real run)
  minus the memory after building, against the planner's AdamW moments (8 bytes per trained
  parameter; the fp32 values are in the weights), gradients and activations;
* the whole peak against the planner's total (without its CUDA context).

    python benchmarks/step_memory.py --profile colab --stage 3     # results: benchmarks/RESULTS.md

Resident memory counts what the allocator holds; with glibc's mmap threshold fixed at 64 KiB
(`release_freed_memory`) that is close to the live tensors. On a GPU,
`torch.cuda.max_memory_allocated` (benchmarks/gpu_bench.py) is the exact figure.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import torch

GB = 1024**3


def release_freed_memory() -> None:
    """Have glibc map every allocation over 64 KiB on its own and unmap it when freed (a fixed
    mmap threshold; by default it grows, and freed blocks then stay in the heap), so that resident
    memory follows the live tensors instead of the allocator's high-water mark."""
    import ctypes

    M_MMAP_THRESHOLD = -3
    ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 64 * 1024)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakSampler:
    """The largest resident memory seen while the block runs (sampled every millisecond)."""

    def __enter__(self):
        self.peak, self._stop = rss(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def stand_in_tokenizer(vocab_size: int):
    """A word-level tokenizer with the LLaMA vocabulary's size and special ids (<unk> 0, <s> 1, </s> 2)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i for i in range(3, vocab_size)}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
                                   unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<unk>")


def build_system(profile, stage: str, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    from nextgpt_mini.models.llm import FULL_SIZE_CONFIGS, tiny_llama_config
    from nextgpt_mini.models.nextgpt import NextGPT
    from nextgpt_mini.models.signal_tokens import add_signal_tokens

    cfg = profile.llm
    config = LlamaConfig(**FULL_SIZE_CONFIGS[cfg.name_or_path]) if cfg.name_or_path in FULL_SIZE_CONFIGS \
        else tiny_llama_config(cfg, cfg.vocab_size)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in 16 bits directly: no fp32 copy of the LLM on the way
    try:
        llm = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    llm.requires_grad_(False)
    tokenizer = stand_in_tokenizer(config.vocab_size)
    signal = add_signal_tokens(llm, tokenizer, profile.signal_tokens)
    system = NextGPT(profile, llm, tokenizer, signal)
    if stage == "3":
        system.enable_lora()
    return system


def stage_batch(system, modality: str, batch: int, seq: int) -> dict:
    """`batch` examples of `seq` tokens: a soft-token slot near the start, the second half an answer
    that ends in the modality's signal run, and its decoder target (random, of the real shape)."""
    from nextgpt_mini.prompts import IGNORE, MEDIA_PLACEHOLDER

    p, g = system.profile, torch.Generator().manual_seed(0)
    ids = torch.randint(3, p.llm.vocab_size, (batch, seq), generator=g)
    ids[:, 4] = MEDIA_PLACEHOLDER
    run = system.signal.ids[modality]
    ids[:, seq - 1 - len(run): seq - 1] = torch.tensor(run)
    labels = ids.clone()
    labels[:, : seq // 2] = IGNORE
    proj = p.projector(modality)
    shape = (proj.out_dim,) if proj.num_queries == 1 else (proj.num_queries, proj.out_dim)
    return {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids),
            "media": [torch.nn.functional.normalize(torch.randn(1, p.encoder.out_embed_dim, generator=g), dim=-1)
                      for _ in range(batch)],
            "signal_spans": [[(modality, seq - 1 - len(run), seq - 1)] for _ in range(batch)],
            "signal_targets": [[torch.randn(shape, generator=g)] for _ in range(batch)]}


def measure(profile_name: str, stage: str, batch: int | None, seq: int | None, modality: str, overrides=None) -> dict:
    import peft  # noqa: F401  (imported before the first reading: libraries are not weights)
    from transformers import LlamaForCausalLM  # noqa: F401

    from nextgpt_mini.profiles import load_profile
    from nextgpt_mini.scaling.memory import plan
    from nextgpt_mini.training.trainer import select_trainable

    profile = load_profile(profile_name, overrides)
    cfg = profile.train.for_stage(stage)
    batch = batch or cfg.batch_size
    if seq:
        profile.llm.max_length = seq
    before = rss()
    system = build_system(profile, stage, torch.bfloat16)
    named = select_trainable(system, stage)
    if cfg.gradient_checkpointing:
        system.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(list(named.values()), lr=1e-4)
    batches = {m: stage_batch(system, m, batch, profile.llm.max_length) for m in ("image", "audio", "video")}
    built = rss()
    system.train()

    def step(data) -> float:
        out = system.stage_loss(data, stage)
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return out["loss"].item()

    # A stage-3 batch holds one modality, so the other output projectors get no gradient in it; after
    # one step of each, AdamW holds moments for everything that trains, as in a real run.
    for m in batches:
        if m != modality:
            step(batches[m])
    start = time.perf_counter()
    with PeakSampler() as sampler:
        loss = step(batches[modality])
    seconds = time.perf_counter() - start
    # the planner for the same profile, LLM in 16 bits, this batch
    p = plan(profile, stage=stage, dtype="bf16", batch_size=batch)
    items = {i.component.split(" (")[0]: i.gpu for i in p.items}
    trained = sum(t.numel() for t in named.values())
    planned_weights = sum(v for k, v in items.items() if k in ("LLM weights", "other projectors")) + 4 * trained
    activations = next(v for k, v in items.items() if k.startswith("LLM activations"))
    optimizer_and_grads = items["trained parameters"] - 4 * trained + items["their gradients"]
    return {"profile": profile_name, "stage": stage, "batch": batch, "seq": profile.llm.max_length,
            "checkpointing": cfg.gradient_checkpointing, "layers": profile.llm.num_layers, "trained": trained,
            "weights": built - before, "planned_weights": planned_weights,
            "total": sampler.peak - before, "planned_total": planned_weights + optimizer_and_grads + activations,
            "step": sampler.peak - built, "planned_step": optimizer_and_grads + activations, "planned_activations": activations,
            "seconds": seconds, "loss": loss}


def report(r: dict) -> str:
    rows = [("weights (LLM 16-bit, what trains fp32)", r["weights"], r["planned_weights"]),
            ("+ AdamW moments, gradients, activations", r["step"], r["planned_step"]),
            ("peak of a step, all told", r["total"], r["planned_total"])]
    lines = [f"profile {r['profile']}, stage {r['stage']}: batch {r['batch']} x {r['seq']} tokens, {r['layers']} LLM layers, "
             f"gradient checkpointing {'on' if r['checkpointing'] else 'off'}, {r['trained']:,} trained parameters; "
             f"one step {r['seconds']:.0f} s on the CPU (loss {r['loss']:.2f})",
             f"  {'':44s} {'measured GB':>12s} {'planner GB':>11s} {'measured/planner':>17s}"]
    for name, measured, planned in rows:
        lines.append(f"  {name:44s} {measured / GB:12.2f} {planned / GB:11.2f} {measured / planned:17.2f}")
    lines.append(f"  (of the planned step, activations {r['planned_activations'] / GB:.2f} GB)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="colab")
    parser.add_argument("--stage", default="3", choices=["1", "2", "3"])
    parser.add_argument("--batch-size", type=int, default=None, help="default: the profile's")
    parser.add_argument("--seq", type=int, default=None, help="default: the profile's llm.max_length")
    parser.add_argument("--modality", default="video", choices=["image", "video", "audio"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    release_freed_memory()
    torch.manual_seed(0)
    print(report(measure(args.profile, args.stage, args.batch_size, args.seq, args.modality, args.overrides)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
