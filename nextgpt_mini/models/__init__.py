"""Chapters 01-07: the parts of NExT-GPT, one file each.

`imagebind` (the frozen encoder) and `imagebind_weights` (its checkpoints), `llm` (the frozen LLM,
LoRA) and `signal_tokens` (the new vocabulary rows and the runs that ask for media), `projectors`
(input and output), `decoders` (the frozen diffusion pipelines) and `decoder_configs` (their
full-size shapes), and `nextgpt`, the system that holds them.
"""
