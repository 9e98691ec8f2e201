"""One colour-blind-safe palette for every figure: each token mixer keeps its colour in every figure and study.

The registered mixers take Okabe & Ito's colours (with a neutral grey for identity, the no-mixing control, so that
it never resembles attention, vermillion); any other mixer name takes one of Paul Tol's "muted" colours, picked by
a hash of the name, so that it is stable too. Axes other than the mixer take the same colours in level order.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence

MIXER = "model.mixer"
MIXER_COLOURS = {
    "dwconv": "#0072B2",     # blue
    "attention": "#D55E00",  # vermillion
    "mlp": "#009E73",        # bluish green
    "identity": "#666666",   # grey
    "pool": "#E69F00",       # orange
    "random": "#CC79A7",     # reddish purple
    "fourier": "#56B4E9",    # sky blue
}
EXTRA_COLOURS = ("#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499")
LEVEL_COLOURS = (*MIXER_COLOURS.values(), *EXTRA_COLOURS)


def colour(mixer: str) -> str:
    """The colour of a mixer in every figure."""
    return MIXER_COLOURS.get(mixer) or EXTRA_COLOURS[zlib.crc32(mixer.encode()) % len(EXTRA_COLOURS)]


def palette(labels: Sequence[str], hue: str | None) -> dict[str, str]:
    """label -> colour for the values of the `hue` axis: fixed per mixer, else in level order."""
    if hue == MIXER:
        return {label: colour(label) for label in labels}
    return {label: LEVEL_COLOURS[i % len(LEVEL_COLOURS)] for i, label in enumerate(labels)}
