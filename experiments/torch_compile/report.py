"""Results page of `torch.compile` against eager channels-last for the embedding step, rendered from
``results/*.json``."""

from __future__ import annotations

from pathlib import Path

import _pagekit as kit

RESULT = "conv4_mtl_forward_backward.json"
LABELS = {
    "eager": "eager (NCHW)",
    "eager_channels_last": "eager, channels-last weights",
    "compiled_channels_last": "`torch.compile` (inductor), channels-last",
}


def render(folder: Path) -> str:
    """The markdown of the results page, every figure from the JSON."""
    data = kit.load(folder, RESULT)
    base = data["median_s"]["eager"]
    rows = [[LABELS.get(k, k), f"{v:.3f}", f"{base / v:.2f}x"] for k, v in data["median_s"].items()]
    return (
        "\n\n".join(
            [
                "# `torch.compile` on CPU: measured and rejected",
                "Question: does compiling the embedding make a training step faster than eager execution with "
                "channels-last weights, and can second-order MAML run through a compiled model?",
                f"Protocol: {data['what']}, a batch of {data['images']} images, {data['threads']} threads, median of "
                f"{data['repeats']} repeats after the first (compiling) call.",
                kit.command("metabridge bench torch_compile --out runs/experiments/torch_compile"),
                kit.table(["configuration", "s per forward+backward", "speed-up over eager"], rows),
                f"Compiling took {data['compile_seconds_first_call']:.1f} s on the first call. Second-order MAML through "
                f"the compiled model: `{data['second_order_through_compiled'][:160]}...`",
                kit.machine(data.get("machine")),
                "What it says: channels-last eager is faster than the compiled model here, and the compiled backward "
                "refuses `create_graph=True`, which second-order MAML needs; the library therefore uses channels-last "
                "weights for the embedding methods and does not compile.",
            ]
        )
        + "\n"
    )
