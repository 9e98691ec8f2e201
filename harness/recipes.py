"""Named training recipes: the published settings a run config can start from and override field by field."""
from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    # The embedded default: small images on a CPU in seconds (sklearn digits, Fashion-MNIST).
    "small": dict(
        epochs=15, batch_size=64, optimizer="adamw", lr=5e-3, weight_decay=0.01, schedule="onecycle",
        label_smoothing=0.0, crop="translate", translate=1, hflip=0.0,
    ),
    # locuslab/convmixer-cifar10, the README's 25-epoch command (92.5% on the original CIFAR-10 pixels):
    # --lr-max=0.05 --ra-n=2 --ra-m=12 --wd=0.005 --scale=1.0 --jitter=0 --reprob=0, batch 512, AdamW,
    # piecewise-linear one-cycle, horizontal flip, no label smoothing, no clipping, mixed precision; its
    # transforms.RandAugment(num_ops=2, magnitude=12) is torchvision's op set at bin 12 of 0..30, every op applied.
    "convmixer_cifar10": dict(
        epochs=25, batch_size=512, optimizer="adamw", lr=0.05, weight_decay=0.005, schedule="onecycle",
        label_smoothing=0.0, crop="rrc", scale=(1.0, 1.0), hflip=0.5, randaugment_ops="torchvision",
        randaugment_n=2, randaugment_m=12, randaugment_mstd=0.0, randaugment_prob=1.0, color_jitter=0.0, reprob=0.0,
    ),
    # locuslab/convmixer ImageNet command (timm train.py): "exactly the settings we used", 10 GPUs x `-b 64`, so the
    # global batch is 640 (batch_size is the global batch; data-parallel ranks take a slice each). `--lr .01` is the
    # peak learning rate as given: the timm train.py of that command used --lr unscaled (scaling by batch size came
    # later, as --lr-base), so 0.01 belongs to the global batch of 640; 150 epochs for 1536/20, 300 for 768/32.
    "convmixer_imagenet": dict(
        epochs=150, batch_size=640, optimizer="adamw", lr=0.01, opt_eps=1e-3, weight_decay=2e-5,
        schedule="onecycle", label_smoothing=0.1, clip_grad=1.0, crop="rrc", scale=(0.08, 1.0), hflip=0.5,
        randaugment_ops="timm", randaugment_n=2, randaugment_m=9.0, randaugment_mstd=0.5, randaugment_prob=0.5,
        reprob=0.25, mixup=0.5, cutmix=0.5,
    ),
}
# The same command with timm's RandAugment instead (rand-m4-n2-mstd0-p0.5: each of 15 ops applied with probability
# 0.5, magnitude 12 / 30 of timm's scale): convmixer_cifar10 as it was before it matched the script's augmentation.
RECIPES["convmixer_cifar10_timm"] = {**RECIPES["convmixer_cifar10"], "randaugment_ops": "timm", "randaugment_m": 4.0,
                                     "randaugment_prob": 0.5}
