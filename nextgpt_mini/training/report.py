"""Chapters 02, 04 and 06: the stages' numbers in words, as the CLI and the demo print them.

One place for the phrasing, so `nextgpt-mini train` and `nextgpt-mini demo` cannot drift apart.
"""

from __future__ import annotations

from nextgpt_mini.constants import MODALITIES

NAN = float("nan")


def format_attributes(ev: dict) -> str:
    """Held-out attribute naming next to chance: whole answers (every attribute right) and per
    attribute. `ev` holds attr_acc/attr_chance/exact_acc/exact_chance."""
    exact, exact_chance = ev.get("exact_acc", NAN), ev.get("exact_chance", NAN)
    return (f"every attribute right {exact:.1%} (chance {exact_chance:.2%}, {exact / exact_chance:.1f}x); "
            f"per attribute {ev.get('attr_acc', NAN):.1%} (chance {ev.get('attr_chance', NAN):.1%})")


def stage_lines(stage: str, result, out_dir, distance: str = "l2") -> list[str]:
    """What `nextgpt-mini train` prints after a stage (`result`: its TrainResult)."""
    first, last = result.first_eval, result.last_eval
    lines = [f"stage {stage}: {result.steps} steps in {result.seconds:.1f} s; checkpoint in {out_dir}/checkpoint"]
    if not last:
        lines.append("no held-out evaluation (train.eval_every=0)")
    elif stage == "1":
        lines.append(f"held-out caption loss: {first.get('heldout_loss', NAN):.3f} -> {last['heldout_loss']:.3f}")
        if "attr_acc" in last:
            lines.append(f"held-out captions: {format_attributes(last)}; per attribute before training {first.get('attr_acc', NAN):.1%}")
    elif stage == "2":
        lines.append(f"held-out alignment distance ({distance}): {first.get('distance', NAN):.3f} -> "
                     f"{last['distance']:.3f} ({1 - last['distance'] / first['distance']:.0%} lower)")
        lines.append(f"held-out captions whose projection is nearest their own target: {last['retrieval']:.1%} "
                     f"(chance {last['retrieval_chance']:.1%}); per modality: "
                     + ", ".join(f"{m} {last[f'{m}_retrieval']:.0%}" for m in MODALITIES if f"{m}_retrieval" in last))
    else:
        lines.append(f"held-out dialogue NLL: {first.get('heldout_nll', NAN):.3f} -> {last['heldout_nll']:.3f}")
        lines.append(f"held-out first replies with the right signal tokens (the complete run of the asked modality, none "
                     f"when no media is asked): {first.get('signal_accuracy', NAN):.1%} -> {last['signal_accuracy']:.1%}")
        if "attr_acc" in last:
            lines.append(f"held-out media->text answers: {format_attributes(last)}")
    return lines


def summary_lines(numbers: dict) -> list[str]:
    """The demo's one line per stage; `numbers[stage]` = (steps, seconds, first eval, last eval)."""
    lines = []
    if "1" in numbers:
        steps, secs, first, last = numbers["1"]
        lines.append(f"stage 1: {steps} steps in {secs:.0f} s; held-out caption loss {first['heldout_loss']:.3f} -> "
                     f"{last['heldout_loss']:.3f}; {format_attributes(last)}")
    if "2" in numbers:
        steps, secs, first, last = numbers["2"]
        lines.append(f"stage 2: {steps} steps in {secs:.0f} s; held-out alignment distance {first['distance']:.3f} -> "
                     f"{last['distance']:.3f}; own target nearest {last['retrieval']:.1%} (chance {last['retrieval_chance']:.1%})")
    if "3" in numbers:
        steps, secs, first, last = numbers["3"]
        lines.append(f"stage 3: {steps} steps in {secs:.0f} s; held-out dialogue NLL {first['heldout_nll']:.3f} -> "
                     f"{last['heldout_nll']:.3f}; right signal tokens in first replies {first['signal_accuracy']:.1%} -> "
                     f"{last['signal_accuracy']:.1%}")
    if "reading" in numbers:
        lines.append(f"media->text, 90 held-out questions about images, videos and sounds: {format_attributes(numbers['reading'])}")
    return lines
