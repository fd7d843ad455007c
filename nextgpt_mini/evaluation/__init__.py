"""Chapter 09: evaluation, the harness NExT-GPT did not release.

* `metrics`: FID / FD, CLIP score, CLIPSIM, CLAP score, BLEU-4, CIDEr, METEOR (glue around
  torchmetrics and pycocoevalcap);
* `features`: the feature extractors the metrics read (real ones, or the tiny encoder);
* `toy`: the toy suite's held-out requests and its decoder;
* `suites`: protocols (`protocols.json`), running a suite on one or two systems, the report.

`nextgpt-mini evaluate --suite toy` runs it from the command line.
"""
