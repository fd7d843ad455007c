"""Chapter 08: how much `nextgpt-mini download` fetches, estimated without the network.

Each component's parameters (the configs built on the meta device, as `params` counts them) times
the bytes per parameter its repository stores (`hub.STORED_BYTES`) is its weight file's size to
within the file header: the hub-configs reading checked every count against the published file
sizes. Configs and tokenizer files add kilobytes. Online, `hub.repo_plan` reads the real sizes.
"""

from __future__ import annotations

import torch

from nextgpt_mini.config import HUB, ProfileConfig
from nextgpt_mini.constants import MODALITIES
from nextgpt_mini.hub import STORED_BYTES, Source, sources
from nextgpt_mini.models.decoders import NOT_LOADED, decoder_parameter_counts
from nextgpt_mini.models.llm import build_empty_llm

# imagebind_huge.pth holds all six branches (the package builds the three NExT-GPT uses)
IMAGEBIND_HUGE_PARAMETERS = 1_200_781_057


def evaluation_model_parameters(ref: str) -> int:
    """CLIP ViT-B/32 and CLAP HTSAT-unfused are transformers' default configurations of their classes."""
    from transformers import ClapConfig, ClapModel, CLIPConfig, CLIPModel

    cls, config = (CLIPModel, CLIPConfig) if ref == HUB["clip_vit_b32"] else (ClapModel, ClapConfig)
    with torch.device("meta"):
        return sum(p.numel() for p in cls(config()).parameters())


def component_parameters(profile: ProfileConfig, source: Source) -> dict[str, int]:
    """{weight file's component: parameters} of one download source."""
    if source.what == "ImageBind":
        return {"imagebind_huge.pth": IMAGEBIND_HUGE_PARAMETERS}
    if source.what == "LLM":
        return {"LLM weights": sum(p.numel() for p in build_empty_llm(profile.llm).parameters())}
    for m in MODALITIES:
        if source.what == f"{m} decoder":
            return {f"{name}/ weights": n for name, n in decoder_parameter_counts(profile, m).items() if name not in NOT_LOADED}
    return {"model weights": evaluation_model_parameters(source.ref)}


def estimate(profile: ProfileConfig, evaluation: bool = True) -> list[tuple[Source, list[tuple[str, int]]]]:
    """(source, [(component, bytes)]) for everything `download` would fetch, offline."""
    plan = []
    for s in sources(profile, evaluation):
        per_parameter = STORED_BYTES.get(s.ref, 4)  # an unknown repository: fp32, the largest common case
        plan.append((s, [(name, n * per_parameter) for name, n in component_parameters(profile, s).items()]))
    return plan
