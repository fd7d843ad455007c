"""nextgpt_mini: a readable, full-size re-implementation of NExT-GPT, built chapter by chapter."""

from nextgpt_mini.config import HUB, PROFILES, ProfileConfig, load_profile

__version__ = "0.1.0"
__all__ = ["HUB", "PROFILES", "ProfileConfig", "load_profile", "__version__"]
