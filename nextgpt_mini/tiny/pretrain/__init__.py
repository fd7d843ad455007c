"""Chapters 01, 03 and 04: pretraining the tiny profile's frozen parts on the toy world: the encoder, the LLM and AudioLDM's
CLAP text encoder, on one loop (`loop`)."""
