"""``loss.png`` in a run folder: the training and validation curves, in bits per token."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def plot_loss(
    train: Sequence[dict[str, float]], validation: Sequence[dict[str, float]], path: Path
) -> None:
    """Draw both curves against the optimiser step into ``path`` (matplotlib, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    if train:
        ax.plot([p["step"] for p in train], [p["bits_per_token"] for p in train], label="train")
    if validation:
        ax.plot(
            [p["step"] for p in validation],
            [p["bits_per_token"] for p in validation],
            "o-",
            label="validation",
        )
    ax.set_xlabel("step")
    ax.set_ylabel("bits per token")
    ax.set_title("Antiphon note LSTM")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
