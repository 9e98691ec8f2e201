"""The metric columns of a study's tidy table, and how each is labelled, scaled and ranked in tables and plots."""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Metric:
    key: str                # column in summary.csv (raw units: percent, counts, FLOPs, img/s, bytes, seconds)
    label: str
    short: str              # a narrow table header
    unit: str               # of the displayed value, after dividing by `scale`
    scale: float
    decimals: int
    higher_is_better: bool
    si: bool = False        # a count whose SI prefix (G, M, K) is picked per table by `fitted`
    split: str | None = None  # an accuracy on this split ("train", "val", "test"): printed to what its size resolves

    def fitted(self, raw: Iterable[float]) -> Metric:
        """For SI counts, the largest prefix in which the biggest of `raw` is at least 0.1: 0.59 M parameters, but
        a CPU-sized model's 1.2 K rather than 0.00 M."""
        if not self.si:
            return self
        top = max((abs(v) for v in raw if math.isfinite(v)), default=0.0)
        scale, prefix = next(((s, p) for s, p in ((1e9, "G"), (1e6, "M"), (1e3, "K")) if top >= 0.1 * s), (1, ""))
        return replace(self, scale=scale, unit=prefix)

    @property
    def title(self) -> str:
        """The label with its unit, for axis labels and table headers."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def resolved(self, size: float | None) -> Metric:
        """An accuracy printed with the decimals a split of `size` images resolves: one image is 100/size points,
        so 360 test images move in steps of 0.28 (1 decimal), 10,000 in steps of 0.01 (2 decimals)."""
        if self.split is None or size is None or not size > 0:
            return self
        return replace(self, decimals=max(0, math.ceil(-math.log10(100 / size))))

    def format(self, raw: float) -> str:
        return f"{raw / self.scale:.{self.decimals}f}"


METRICS: dict[str, Metric] = {m.key: m for m in (
    Metric("test_top1", "Top-1 accuracy", "Top-1", "%", 1, 2, True, split="test"),
    Metric("test_top5", "Top-5 accuracy", "Top-5", "%", 1, 2, True, split="test"),
    Metric("test_top1_selected", "Top-1 accuracy at the validation-selected epoch", "Top-1 (sel.)", "%", 1, 2,
           True, split="test"),
    Metric("test_top5_selected", "Top-5 accuracy at the validation-selected epoch", "Top-5 (sel.)", "%", 1, 2,
           True, split="test"),
    Metric("test_loss", "Test loss", "Test loss", "", 1, 3, False),
    Metric("val_top1", "Validation top-1 accuracy", "Val top-1", "%", 1, 2, True, split="val"),
    Metric("val_top5", "Validation top-5 accuracy", "Val top-5", "%", 1, 2, True, split="val"),
    Metric("val_top1_selected", "Best validation top-1 accuracy", "Best val top-1", "%", 1, 2, True, split="val"),
    Metric("val_loss", "Validation loss", "Val loss", "", 1, 3, False),
    Metric("train_top1", "Train top-1 accuracy", "Train top-1", "%", 1, 2, True, split="train"),
    Metric("train_loss", "Train loss", "Train loss", "", 1, 3, False),
    Metric("params", "Parameters", "Params", "M", 1e6, 2, False, si=True),
    Metric("flops", "FLOPs", "FLOPs", "G", 1e9, 3, False, si=True),  # forward FLOPs per image
    Metric("infer_img_s", "Inference throughput", "Inference", "img/s", 1, 0, True),
    Metric("train_img_s", "Training throughput", "Training", "img/s", 1, 0, True),
    Metric("peak_mem_bytes", "Peak memory", "Memory", "GiB", 2 ** 30, 2, False),
    Metric("wall_s", "Wall time", "Wall time", "min", 60, 1, False),
)}

# Shown beside the study's main metric, in this order: in the all-cells table, and each in a pivot table of its own.
TABLE_METRICS = ("params", "flops", "infer_img_s", "train_img_s")
# Only in pivot tables of their own: the all-cells table has to fit the width of a two-column paper.
PIVOT_ONLY_METRICS = ("peak_mem_bytes",)


# What `select.metric` may name: validation metrics only, so that nothing is ever chosen on the test set.
SELECT_METRICS = tuple(k for k in METRICS if k.startswith("val_"))


def metric(key: str) -> Metric:
    try:
        return METRICS[key]
    except KeyError:
        raise KeyError(f"unknown metric {key!r}; known: {', '.join(METRICS)}") from None


# Display names of the config keys studies usually vary; others are derived from the dotted key.
AXIS_LABELS: dict[str, str] = {
    "model.mixer": "Mixer",
    "model.block": "Block",
    "model.patch_size": "Patch size (px)",
    "model.kernel_size": "Kernel size (px)",
    "model.dim": "Width",
    "model.depth": "Depth",
    "model.act": "Activation",
    "data.dataset": "Dataset",
    "recipe.epochs": "Epochs",
    "seed": "Seed",
}


def axis_label(key: str) -> str:
    """`model.patch_size` -> `Patch size (px)`; unknown keys: the last dotted part, capitalised."""
    if key in AXIS_LABELS:
        return AXIS_LABELS[key]
    last = key.rsplit(".", 1)[-1].replace("_", " ")
    return last[:1].upper() + last[1:]


def axis_name(key: str) -> str:
    """The axis label without its unit, for table headers where the values speak for themselves."""
    return axis_label(key).split(" (")[0]
