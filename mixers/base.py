"""The token-mixer contract and its registry.

A token mixer is an `nn.Module` built from `(dim, **its own hyper-parameters)` that maps (B, C, H, W) to the
same shape and only mixes tokens: no norm, residual or channel MLP inside. Mixers that work on tokens set
`layout = "NLC"` and take `forward(x, grid)` with x of shape (B, N, C); `create_mixer` wraps them in `ToTokens`,
so every built mixer honours the (B, C, H, W) contract and the layout is converted in one place.

Hyper-parameters that depend on the model rather than the mixer are filled in by the builder when the mixer's
signature names them: `kernel_size` (the model's k) and `grid_size` (the token grid, image size // patch size).
A token-layout mixer tied to one token grid sets `fixed_grid = True` and `grid_size`; `ToTokens` then raises
`TokenGridError` on any other grid.
"""
import inspect
from importlib import import_module
from typing import Any

import torch
from torch import nn

from .registry import Registry, did_you_mean

# The modules that register a mixer: a new mixer is one file plus its name here.
MIXER_MODULES = ("attention", "conv", "fourier", "identity", "mlp", "pooling", "random_mixing")


def _import_mixers() -> None:
    for module in MIXER_MODULES:
        import_module(f"{__package__}.{module}")


MIXERS: Registry[type[nn.Module]] = Registry("mixer", plugins=_import_mixers)
register_mixer = MIXERS.register

# filled in by the model builder, never by the user's mixer_kwargs
MODEL_PROVIDED = ("kernel_size", "grid_size")


class TokenGridError(ValueError):
    """A mixer tied to one token grid got another (a different image size or patch size)."""


@torch.fx.wrap  # a leaf of FX graphs: the traced model keeps the check (control flow on shapes cannot be traced)
def check_token_grid(x: torch.Tensor, grid_size: tuple[int, int], name: str) -> torch.Tensor:
    """`x` unchanged if its (H, W) is `grid_size`, else a `TokenGridError` (TorchScript keeps the message)."""
    H, W = x.shape[-2], x.shape[-1]
    if H != grid_size[0] or W != grid_size[1]:
        raise TokenGridError(
            f"mixer '{name}' was built for a {grid_size[0]}x{grid_size[1]} token grid but got {H}x{W}; its weights "
            f"are sized by the token count, so build the model for this image size (img_size // patch_size must match)")
    return x


class TokenGridCheck(nn.Module):
    """Lets only one token grid through (a mixer whose weights are sized by the token count)."""

    def __init__(self, grid_size: tuple[int, int], name: str):
        super().__init__()
        self.grid_size = (int(grid_size[0]), int(grid_size[1]))
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return check_token_grid(x, self.grid_size, self.name)


class ToTokens(nn.Module):
    """Runs a token-layout mixer inside the (B, C, H, W) contract; a `fixed_grid` mixer gets only its own grid."""

    def __init__(self, mixer: nn.Module, name: str):
        super().__init__()
        self.check = TokenGridCheck(mixer.grid_size, name) if getattr(mixer, "fixed_grid", False) else nn.Identity()
        self.mixer = mixer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.check(x)
        B, C, H, W = x.shape
        t = x.flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, N, C)
        t = self.mixer(t, (H, W))
        return t.transpose(1, 2).reshape(B, C, H, W)  # (B, N, C) -> (B, C, H, W)


def hyperparameters(fn: Any, skip: tuple[str, ...] = ("self", "dim")) -> dict[str, inspect.Parameter]:
    """The keyword hyper-parameters a mixer or block constructor declares (its signature, minus `skip`)."""
    return {n: p for n, p in inspect.signature(fn).parameters.items() if n not in skip}


def check_kwargs(fn: Any, kwargs: dict[str, Any], what: str, reserved: tuple[str, ...] = ()) -> None:
    """Raise a ValueError naming any key of `kwargs` that `fn` does not declare, or a value of the wrong type."""
    params = hyperparameters(fn)
    valid = [n for n in params if n not in reserved]
    for key, value in kwargs.items():
        if key not in valid:
            raise ValueError(
                f"{what} has no hyper-parameter {key!r}{did_you_mean(key, valid)}; "
                f"valid: {', '.join(valid) or '(none)'}")
        default = params[key].default
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"{what}: {key} must be true or false, got {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{what}: {key} must be a number, got {value!r}")
            if isinstance(default, int) and not isinstance(value, int):
                raise ValueError(f"{what}: {key} must be an integer, got {value!r}")


def create_mixer(name: str, dim: int, **kwargs: Any) -> nn.Module:
    """Build a registered mixer as a (B, C, H, W) -> (B, C, H, W) module."""
    cls = MIXERS.get(name)
    check_kwargs(cls, kwargs, f"mixer {name!r}")
    mixer = cls(dim, **kwargs)
    return ToTokens(mixer, name) if getattr(cls, "layout", "NCHW") == "NLC" else mixer
