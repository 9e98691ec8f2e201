"""A plugin mixer, the worked example of a study's `imports:` (studies/plugin_example.yaml): parameter-free token
shifting (ShiftViT, Wang et al. 2022). A quarter of the channels moves one token left, right, up and down each; the
rest stay. It registers with the toolkit's mixer registry like the built-in mixers, and the toolkit's checks (meta
build, FLOPs, timm contract) apply to it unchanged.

A study names the module as a dotted path relative to the study file's folder (`plugins.shift_mixer` from
studies/); on SLURM the module is copied into the code snapshot with the toolkit.
"""
import torch
from torch import nn

from mixers.base import register_mixer


@register_mixer("shift")
class ShiftMixer(nn.Module):
    def __init__(self, dim: int, shift: int = 1):
        super().__init__()
        if shift < 1:
            raise ValueError(f"mixer 'shift': shift must be >= 1, got {shift}")
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.shape[1] // 4
        s = self.shift
        out = x.clone()
        out[:, 0 * g:1 * g] = torch.roll(x[:, 0 * g:1 * g], s, dims=3)
        out[:, 1 * g:2 * g] = torch.roll(x[:, 1 * g:2 * g], -s, dims=3)
        out[:, 2 * g:3 * g] = torch.roll(x[:, 2 * g:3 * g], s, dims=2)
        out[:, 3 * g:4 * g] = torch.roll(x[:, 3 * g:4 * g], -s, dims=2)
        return out
