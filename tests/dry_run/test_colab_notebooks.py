"""Issue 18, point 3: chapters run top to bottom at PROFILE = "colab" on the CPU from the dry-run
cache, papermill-style: a cell setting the chapter's parameters is put after its cell tagged
"parameters" (PROFILE, SETTINGS for the profile, and the chapter's own sizes where it has them).

SETTINGS cut what the cache cuts (ImageBind's depth), the clips per item (a count, no interface:
ImageBind-huge reads 5 x 3 pieces of every video, which on a CPU takes seconds each) and the
decoders' denoising steps (a count: 2 instead of 50), pixels and frames (the UNets and VAEs are
convolutional: 256 x 256 images and 8 frames of 128 x 256 cost a CPU a quarter of 512 x 512 and a
third of 24 frames; the conditioning and latent channels are the real ones).
Chapter 08 has no profile cell (it plans all three profiles); chapter 09 measures the tiny
world on purpose (its real suites, section 5, need their data and a GPU) and is not run here."""

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import REPO

CPU_SETTINGS = {"encoder.video_clips": 1, "encoder.video_spatial_crops": 1, "encoder.audio_clips": 1,
                "image_decoder.steps": 2, "video_decoder.steps": 2, "audio_decoder.steps": 2,
                "image_decoder.height": 256, "image_decoder.width": 256, "video_decoder.height": 128,
                "video_decoder.width": 256, "video_decoder.num_frames": 8}
# what each chapter must print at the colab profile (08 plans every profile whatever PROFILE says)
SHOWS = {"00_setup_and_tour": ["profile 'colab'"], "01_imagebind_encoding": ["profile 'colab' on", "trunk (1 blocks)           (1, 257, 1280)"],
         "02_input_projection_alignment": ["encoder dim 1024 -> LLM hidden 2048", "<|assistant|>",
                                           "largest loss difference < 1e-4: True", "same weights: True"],
         "03_llm_lora_signal_tokens": ["hidden 2048, vocabulary 32000"],
         "04_output_projection_decoder_alignment": ["colab target (77, 768)", "<|assistant|>",
                                                    "by hand == package: ok", "largest loss difference < 1e-4: True",
                                                    "same output projectors: True", "pretrained (cvssp/audioldm-s-full-v2)"],
         "05_diffusion_decoders": ["profile 'colab': decoders on cpu in torch.float32", "the UNet predicts epsilon",
                                   "by hand == scheduler.step: True", "by hand == the pipeline's one step: True",
                                   "negative (empty prompt) conditioning: (77, 768)", "projected (1, 77, 768) == target shape (1, 77, 768)"],
         "06_mosit_instruction_tuning": ["300 steps: by hand == package: ok", "LoRA switched on: True",
                                         "NLL + image and audio distances, by hand == package: ok",
                                         "your system after stage 3 is saved"],
         "07_any_to_any_inference": ["starting from your system after stage 3", "<|assistant|>",
                                     "completed: ['.', '[IMG0]', '[IMG1]', '[IMG2]', '[IMG3]'] ['image']",
                                     "signal states -> conditioning (1, 77, 768)", "['config.json', 'trained.safetensors']"],
         "08_scaling_up": ["memory plan: profile paper"],
         "10_ablations": ["baseline (4 tokens, L2) ", "a linear path would add 484 M parameters", "closest two of 36 sound captions"]}
# what only the tiny profile prints: a chapter that prints it at colab has a cell that did not switch
TINY_ONLY = ("profile 'tiny'", "tiny target", "pretrained, shipped", "the shipped tiny system")
# the chapters' own sizes, smaller than a T4 run's (each chapter says what a T4 run uses)
PARAMETERS = {"05_diffusion_decoders": {"STEP_COUNTS": (1, 1, 2)},
              "06_mosit_instruction_tuning": {"N_TRAIN": 14, "N_TEST": 14, "STEPS": 4},
              "07_any_to_any_inference": {"N_DIALOGUES": 14, "N_QUESTIONS": 6, "N_ITEMS": 4},
              "10_ablations": {"STEPS": 2, "N_TRAIN": 6, "N_TEST": 4, "JUDGE": 2},
              "02_input_projection_alignment": {"N_TRAIN": 12, "N_TEST": 6, "CHECK_STEPS": 3, "STEPS": 4},
              "04_output_projection_decoder_alignment": {"N_TRAIN": 12, "N_TEST": 6, "CHECK_STEPS": 3, "STEPS": 4}}


def with_parameters(nb, values: dict) -> None:
    """Insert `NAME = value` lines after the cell tagged "parameters" (papermill's injected cell)."""
    (k,) = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    nb.cells.insert(k + 1, nbformat.v4.new_code_cell("\n".join(f"{name} = {value!r}" for name, value in values.items())))


@pytest.mark.parametrize("name", list(SHOWS))
def test_chapter_runs_at_the_colab_profile(name, dry_cache):
    nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:  # Colab's own setup cell would clone and pip install
        if cell.cell_type == "code" and cell.source.startswith("# NBVAL_SKIP"):
            cell.source = "pass"
    if name != "08_scaling_up":  # 08 has no profile cell: it plans all three
        with_parameters(nb, {"PROFILE": "colab", "SETTINGS": {**dry_cache.DEPTH, **CPU_SETTINGS}, **PARAMETERS.get(name, {})})
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    printed = "\n".join("".join(o.get("text", "")) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    missing = [text for text in SHOWS[name] if text not in printed]
    assert not missing, f"{name} at the colab profile did not print {missing}: {printed[:1500]}"
    tiny = [text for text in TINY_ONLY if text in printed]
    assert not tiny, f"{name} at the colab profile printed the tiny profile's {tiny}"
