"""Chapters 02, 04 and 06: real-data formats: NExT-GPT's pair files, our MosIT dialogues, and the
NExT-GPT / LLaVA / Alpaca instruction formats. The toy world's data is in `tiny/`."""
