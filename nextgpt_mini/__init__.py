"""Chapters 00-09: nextgpt_mini, a readable, full-size re-implementation of NExT-GPT, built chapter by chapter.

Chapter 00: `load_profile("tiny" | "colab" | "paper")` gives a system's configuration, and
`NextGPT.from_profile(profile)` builds it.
"""

from nextgpt_mini.config import HUB, ProfileConfig
from nextgpt_mini.profiles import PROFILES, load_profile

__version__ = "0.1.0"
__all__ = ["HUB", "PROFILES", "NextGPT", "ProfileConfig", "load_profile", "__version__"]


def __getattr__(name: str):
    # NextGPT pulls in torch and the model code: imported on first use, so that `import
    # nextgpt_mini` (the CLI's start, config-only scripts) stays light.
    if name == "NextGPT":
        from nextgpt_mini.models.nextgpt import NextGPT

        return NextGPT
    raise AttributeError(f"module 'nextgpt_mini' has no attribute {name!r}")
