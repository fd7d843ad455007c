"""Chapters 00, 01 and 05: figures the notebooks draw: the system map, media grids, spectrograms."""

from __future__ import annotations

import numpy as np

from nextgpt_mini.config import ProfileConfig


def system_shapes(profile: ProfileConfig) -> list[tuple[str, str]]:
    """(component, tensor shape) along the any-to-any path, for one media item of each kind."""
    e, llm, s = profile.encoder, profile.llm, profile.signal_tokens
    ip, vp, ap = profile.image_projector, profile.video_projector, profile.audio_projector
    crops = e.video_clips * e.video_spatial_crops
    return [
        ("image", f"[3, {e.image_size}, {e.image_size}]"),
        ("video", f"[{crops}, 3, {e.video_frames}, {e.image_size}, {e.image_size}]"),
        ("audio", f"[{e.audio_clips}, 1, {e.audio_num_mel_bins}, {e.audio_target_len}]"),
        ("ImageBind", f"[{e.out_embed_dim}] per item"),
        ("input projector", f"Linear({e.out_embed_dim} -> {llm.hidden_size}): 1 soft token"),
        ("LLM", f"hidden {llm.hidden_size}, {llm.num_layers} layers"),
        ("signal tokens", f"[IMG0..{s.image - 1}] [VID0..{s.video - 1}] [AUD0..{s.audio - 1}]"),
        ("image projector", f"[{s.image}, {llm.hidden_size}] -> [{ip.num_queries}, {ip.out_dim}]"),
        ("video projector", f"[{s.video}, {llm.hidden_size}] -> [{vp.num_queries}, {vp.out_dim}]"),
        ("audio projector", f"[{s.audio}, {llm.hidden_size}] -> [{ap.num_queries}, {ap.out_dim}]"),
    ]


def draw_system(profile: ProfileConfig, ax=None):
    """Boxes and arrows: encoder -> input projector -> LLM -> output projectors -> decoders."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(13, 4.6))
    shapes = dict(system_shapes(profile))
    ax.set_xlim(0, 13)
    ax.set_ylim(0, 4.6)
    ax.axis("off")

    def box(x, y, w, h, title, sub, colour):
        ax.add_patch(plt.Rectangle((x, y), w, h, facecolor=colour, edgecolor="#333", linewidth=1.2))
        ax.text(x + w / 2, y + h * 0.64, title, ha="center", va="center", fontsize=9.5, weight="bold")
        ax.text(x + w / 2, y + h * 0.28, sub, ha="center", va="center", fontsize=7.5)

    def arrow(x0, y0, x1, y1):
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="->", lw=1.2))

    rows = [("image", 3.5), ("video", 2.1), ("audio", 0.7)]
    decoders = {"image": profile.image_decoder, "video": profile.video_decoder, "audio": profile.audio_decoder}
    names = {"image": "Stable Diffusion", "video": "Zeroscope", "audio": "AudioLDM"}
    for name, y in rows:
        box(0.1, y, 1.7, 0.8, name, shapes[name], "#e8f1fb")
        arrow(1.8, y + 0.4, 2.3, 2.5)
    box(2.3, 1.7, 1.6, 1.6, "ImageBind\n(frozen)", shapes["ImageBind"], "#dfeedd")
    arrow(3.9, 2.5, 4.3, 2.5)
    box(4.3, 1.9, 1.5, 1.2, "input proj.", shapes["input projector"].split(":")[0], "#fde9c9")
    arrow(5.8, 2.5, 6.2, 2.5)
    box(6.2, 1.3, 1.9, 2.4, "LLM\n(frozen + LoRA)", shapes["LLM"] + "\n" + shapes["signal tokens"], "#f3dcf0")
    for name, y in rows:
        arrow(8.1, 2.5, 8.5, y + 0.4)
        box(8.5, y, 2.0, 0.8, f"{name} out. proj.", shapes[f"{name} projector"], "#fde9c9")
        arrow(10.5, y + 0.4, 10.9, y + 0.4)
        box(10.9, y, 2.0, 0.8, names[name], f"{decoders[name].name_or_path.split('/')[-1]}", "#dfeedd")
    ax.set_title(f"NExT-GPT, profile '{profile.name}': shapes for one item of each kind", fontsize=11)
    return ax


def image_grid(images: list[np.ndarray], titles: list[str] | None = None, cols: int = 6, size: float = 2.0):
    import matplotlib.pyplot as plt

    rows = (len(images) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size * 1.15), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, img in enumerate(images):
        ax = axes.flat[k]
        ax.imshow(img)
        if titles:
            ax.set_title(titles[k], fontsize=7)
    fig.tight_layout()
    return fig


def waveform_and_spectrogram(wave: np.ndarray, sample_rate: int, title: str = ""):
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 2.8))
    t = np.arange(len(wave)) / sample_rate
    a.plot(t, wave, lw=0.4)
    a.set_xlabel("seconds")
    a.set_title(f"waveform: {title}", fontsize=9)
    b.specgram(wave, NFFT=512, Fs=sample_rate, noverlap=384, cmap="magma")
    b.set_ylim(0, 2000)
    b.set_xlabel("seconds")
    b.set_ylabel("Hz")
    b.set_title("spectrogram (0-2 kHz)", fontsize=9)
    fig.tight_layout()
    return fig


def similarity_heatmap(sim, rows: list[str] | None = None, cols: list[str] | None = None, title: str = "",
                       ax=None, xlabel: str = "", ylabel: str = "", annotate: bool | None = None):
    """Cosine similarities [N, M] as a heatmap: the highest entry of each row is outlined, so a
    model that has learnt the pairing shows a diagonal of outlined cells. Returns the axes.

    rows / cols: tick labels (long captions are shortened); annotate: write each value in its
    cell (default: when the matrix is at most 12 x 12).
    """
    import matplotlib.pyplot as plt

    sim = np.asarray(sim.detach().cpu() if hasattr(sim, "detach") else sim, dtype=np.float32)
    if sim.ndim != 2:
        raise ValueError(f"expected a [rows, cols] matrix, got shape {sim.shape}")
    n, m = sim.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 + 0.42 * m, 1.0 + 0.36 * n))
    limit = float(np.abs(sim).max()) or 1.0
    im = ax.imshow(sim, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="cosine")

    def short(labels):
        return [s if len(s) <= 34 else s[:32] + "…" for s in labels]

    ax.set_yticks(range(n), short(rows) if rows else range(n), fontsize=7)
    ax.set_xticks(range(m), short(cols) if cols else range(m), fontsize=7, rotation=60 if cols else 0,
                  ha="right" if cols else "center")
    best = sim.argmax(axis=1)
    for i, j in enumerate(best):
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.6))
    if annotate if annotate is not None else max(n, m) <= 12:
        for i in range(n):
            for j in range(m):
                ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if abs(sim[i, j]) > 0.6 * limit else "black")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return ax
