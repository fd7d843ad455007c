"""Chapters 00-09: everything only the tiny profile needs: the toy world and its pretrained frozen parts.

The toy world (`world`, `dialogues`, `render`) generates shapes, colours, motions, tones, captions
and dialogues; `data` gives the three stages their toy data. The frozen parts are small models
pretrained on that world and shipped in `nextgpt_mini/assets/` (`registry` names them,
`pretrain/` trains them, `build` rebuilds them: `nextgpt-mini build-tiny`), as NExT-GPT's frozen
parts are pretrained models. The core imports nothing from here except the tiny decoders'
pipelines (`models.decoders.load_pipeline`); `demo` runs the whole system end to end.
"""
