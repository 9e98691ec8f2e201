"""What makes two runs the same: a run's identity ignores the settings its model does not use.

`model.kernel_size` matters only to a mixer whose constructor takes `kernel_size` (dwconv, pool), and a key of
`model.mixer_kwargs` or `model.block_kwargs` only to a mixer or block whose constructor declares it. `normalise`
replaces an unused kernel size by the default and drops kwargs keys that another registered mixer (or block) takes
but this one does not (a key no plug-in takes stays, so that validation reports the typo). The run id hashes the
normalised config, so attention at k=3 and at k=7 is one run, and the study runner lists it once.

The constructors' signatures are read from the registries (which import torch) once per version of `mixers/`, and
cached under the toolkit's cache folder, so `run-study --dry-run` and `--status` stay torch-free.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import sys
from typing import Any

from .datasets import cache_dir
from .records import PACKAGE_ROOT, atomic_write_json

KINDS = {"mixer": "mixer_kwargs", "block": "block_kwargs"}  # model.<kind> names the plug-in; its kwargs key


@functools.cache
def _live_signatures(*registered: int) -> dict[str, dict[str, list[str]]]:
    """{kind: {name: [hyper-parameters its constructor declares]}} from the registries, plug-ins included; cached by
    the registries' sizes (`registered`), so a plug-in registered later is seen."""
    from mixers import BLOCKS, MIXERS
    from mixers.base import hyperparameters
    return {"mixer": {n: sorted(hyperparameters(MIXERS.get(n))) for n in MIXERS},
            "block": {n: sorted(hyperparameters(BLOCKS.get(n))) for n in BLOCKS}}


@functools.cache
def mixers_digest() -> str:
    """A hash of the `mixers` package's source: what cached facts about its models are keyed by."""
    digest = hashlib.sha256()
    for path in sorted((PACKAGE_ROOT / "mixers").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


@functools.cache
def _builtin_signatures() -> dict[str, dict[str, list[str]]]:
    """The built-in plug-ins' signatures, cached per version of the `mixers` package's source."""
    cached = cache_dir() / "signatures" / f"{mixers_digest()[:32]}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    table = _live_signatures(*_registered())
    atomic_write_json(cached, table)
    return table


def _registered() -> tuple[int, int]:
    from mixers import BLOCKS, MIXERS
    return len(MIXERS), len(BLOCKS)


def signatures() -> dict[str, dict[str, list[str]]]:
    """Every known plug-in's hyper-parameters: the cached built-ins, plus plug-ins registered in this process (a
    study's `imports`), which are only looked up when torch is already loaded (a plug-in import loads it)."""
    table = _builtin_signatures()
    if "mixers.base" in sys.modules:
        live = _live_signatures(*_registered())
        table = {kind: {**table[kind], **live[kind]} for kind in table}
    return table


def normalise(config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the config with the settings its model does not use reset, the dotted keys that were reset). A config of an
    unknown mixer or block comes back unchanged (validation reports the name)."""
    out = copy.deepcopy(config)
    model = out.get("model") or {}
    table = signatures()
    ignored: list[str] = []
    for kind, kwargs_key in KINDS.items():
        takes = table[kind].get(str(model.get(kind)))
        if takes is None:
            continue
        anyone = {p for params in table[kind].values() for p in params}
        kwargs = model.get(kwargs_key) or {}
        for key in sorted(kwargs):
            if key in anyone and key not in takes:
                del kwargs[key]
                ignored.append(f"model.{kwargs_key}.{key}")
        if kind == "mixer" and "kernel_size" not in takes:
            from .config import ModelConfig  # (config imports this module)
            model["kernel_size"] = ModelConfig.kernel_size
            ignored.append("model.kernel_size")
    return out, ignored


def run_id(resolved: dict[str, Any]) -> str:
    """A stable 12-hex-digit id of a resolved config's identity (key order and unused settings do not matter)."""
    blob = json.dumps(normalise(resolved)[0], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]

