"""Who this process is in a data-parallel run: its rank among the processes that train one run, and where they
meet. Torch-free (the runner launches ranks). Ranks and the rendezvous come from the environment that torchrun and
submitit's `TorchDistributedEnvironment` both set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that holds the run's lock and writes its files."""
        return self.rank == 0

    @classmethod
    def from_env(cls) -> World:
        env = os.environ
        if int(env.get("WORLD_SIZE", "1")) <= 1:
            return SOLO
        return cls(rank=int(env["RANK"]), size=int(env["WORLD_SIZE"]), local_rank=int(env.get("LOCAL_RANK", "0")),
                   master_addr=env["MASTER_ADDR"], master_port=int(env["MASTER_PORT"]))

    def env(self) -> dict[str, str]:
        """This rank's environment variables (how a launcher tells a process who it is)."""
        return {"RANK": str(self.rank), "WORLD_SIZE": str(self.size), "LOCAL_RANK": str(self.local_rank),
                "MASTER_ADDR": self.master_addr, "MASTER_PORT": str(self.master_port)}


SOLO = World()
