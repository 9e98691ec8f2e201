"""Optional experiment trackers fed once per epoch: `system.tracking: [tensorboard, wandb]` (a study sets it for
every cell with `run.tracking`). Off by default; each needs its extra (`pip install -e '.[tensorboard]'`, `[wandb]`).

- tensorboard: event files in <run dir>/tensorboard/, one scalar per metric of the epoch record.
- wandb: one W&B run per run directory (id = run id, so a resumed run continues it), grouped by study, with the
  cell's parameters as its config. `WANDB_MODE=offline` keeps it on disk under <run dir>/wandb/.

Where the metrics go does not change what is computed: `system.tracking` is not part of the run id.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mixers.registry import Registry

SINKS: Registry[Any] = Registry("tracking sink")


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and k != "epoch"}


@SINKS.register("tensorboard")
class TensorBoard:
    def __init__(self, run_dir: Path, info: dict[str, Any]):
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, epoch: int, record: dict[str, Any]) -> None:
        for key, value in _scalars(record).items():
            self.writer.add_scalar(key, value, epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


@SINKS.register("wandb")
class WandB:
    def __init__(self, run_dir: Path, info: dict[str, Any]):
        import wandb
        self.run = wandb.init(project="tokenmix", group=info.get("study"), id=info["run_id"], name=info["run_id"],
                              config={**info.get("cell", {}), **info["config"]}, dir=str(run_dir), resume="allow",
                              reinit="create_new")

    def log(self, epoch: int, record: dict[str, Any]) -> None:
        self.run.log({**_scalars(record), "epoch": epoch}, step=epoch)

    def close(self) -> None:
        self.run.finish()


class Trackers:
    """The run's sinks as one: `log` after every epoch, `close` at the end."""

    def __init__(self, sinks: list[str], run_dir: Path, run_id: str, config: dict[str, Any]):
        info: dict[str, Any] = {"run_id": run_id, "config": config}
        config_json = run_dir / "config.json"  # the runner's cell record: study name and cell parameters
        if config_json.is_file():
            recorded = json.loads(config_json.read_text())
            info.update(study=recorded.get("study"), cell=recorded.get("cell") or {})
        self.sinks = [SINKS.get(name)(run_dir, info) for name in sinks]

    def log(self, epoch: int, record: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.log(epoch, record)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
