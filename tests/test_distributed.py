"""Data-parallel cells on the CPU (gloo): one cell trained by several processes gives the single process's result,
whatever the world size it starts or resumes at; only rank 0 writes; the other ranks end with it."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml
from conftest import ROOT, TINY_BASE, run_study, wait_until, write_study
from test_ledger import check_ledger, epochs_done, runs, start_runner, state

from harness.config import RunConfig, resolve
from harness.data import DeviceLoader
from harness.records import RunDir
from harness.schema import ConfigError
from harness.train import in_world, train
from harness.world import World
from runner.spec import expand, load_spec

# deterministic, with augmentation (translate crops, RandAugment of the small recipe) and BatchNorm in every block
DP_BASE = {**TINY_BASE, "model": {**TINY_BASE["model"], "dim": 24, "depth": 2},
           "recipe": {**TINY_BASE["recipe"], "epochs": 3, "batch_size": 64},
           "system": {**TINY_BASE["system"], "deterministic": True}, "bench": {"enabled": False}}
# metrics are sums over ranks in another order, and BatchNorm statistics are summed across ranks: equal to rounding
CLOSE = {"rel": 1e-5, "abs": 1e-6}


def curves(run: Path) -> list[dict[str, float]]:
    return [{k: v for k, v in m.items() if not k.endswith("_s")} for m in RunDir(run).read_metrics()]


def assert_same_training(run: Path, reference: Path) -> None:
    ours, theirs = curves(run), curves(reference)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], **CLOSE) for k in a), (a, b)
    mine, ref = (json.loads((d / "result.json").read_text())["metrics"] for d in (run, reference))
    assert mine.keys() == ref.keys()
    assert all(mine[k] == pytest.approx(ref[k], **CLOSE) if isinstance(ref[k], float) else mine[k] == ref[k]
               for k in ref), (mine, ref)


def rank_processes(run: Path) -> list[int]:
    """Live processes that train `run` as a rank other than 0 (runner/ranks.py)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"runner.ranks" in cmdline and str(run).encode() in cmdline:
            found.append(int(proc.name))
    return found


# --- the parts -----------------------------------------------------------------------------------------------------

def test_world_size_is_in_the_run_id_only_where_it_changes_the_result():
    one = resolve(DP_BASE)
    synced = resolve(DP_BASE, {"system.world_size": 4})
    own_bn = resolve(DP_BASE, {"system.world_size": 4, "system.sync_bn": False})
    assert synced.run_id == one.run_id  # BatchNorm over the global batch: any world size computes the same
    assert own_bn.run_id != one.run_id  # each rank's BatchNorm sees 16 images, not 64: another computation
    assert resolve(DP_BASE, {"system.world_size": 2, "system.sync_bn": False}).run_id != own_bn.run_id
    assert in_world(synced, World(0, 2, 0, "127.0.0.1", 1)).system.world_size == 2
    with pytest.raises(ConfigError, match=r"system.world_size: run .* trains on 4 processes, each with its own "
                                          r"BatchNorm batch \(system.sync_bn false\), so it cannot run on 2"):
        in_world(own_bn, World(0, 2, 0, "127.0.0.1", 1))
    with pytest.raises(ConfigError, match="recipe.batch_size: 64 is the global batch, split evenly over "
                                          "system.world_size 3 processes: it must be a multiple of 3"):
        resolve(DP_BASE, {"system.world_size": 3})


@pytest.mark.parametrize("world", [2, 3])
def test_each_rank_gets_its_slice_of_the_single_process_batches(world):
    images = torch.randint(0, 256, (103, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(103)

    def batches(rank: int, size: int, train: bool) -> list[torch.Tensor]:
        from harness.augment import AugmentSpec, BatchAugment
        augment = BatchAugment(AugmentSpec(crop="translate", translate=1, hflip=0.5, mean=(0.5,) * 3,
                                           std=(0.25,) * 3), 8) if train else None
        loader = DeviceLoader(images, labels, 12 if train else 40, 8, (0.5,) * 3, (0.25,) * 3, augment, seed=3,
                              rank=rank, world=size)
        return [(x, y) for x, y, _ in loader]

    for train_split in (True, False):
        whole = batches(0, 1, train_split)
        shares = [batches(rank, world, train_split) for rank in range(world)]
        assert all(len(s) == len(whole) for s in shares)
        for step, (x, y) in enumerate(whole):  # the same images, augmented alike, in the same order
            assert torch.equal(torch.cat([s[step][1] for s in shares]), y)
            assert torch.equal(torch.cat([s[step][0] for s in shares]), x)
        if train_split:
            assert {len(s[0][1]) for s in shares} == {12 // world}  # equal shares of every training batch
        else:
            assert sorted(torch.cat([y for s in shares for _, y in s]).tolist()) == list(range(103))


def _global_batchnorm_rank(rank: int, port: int, x: torch.Tensor, out: dict) -> None:
    import torch.distributed as dist

    from harness.distributed import synchronise_batchnorm
    dist.init_process_group("gloo", rank=rank, world_size=2, init_method=f"tcp://127.0.0.1:{port}")
    torch.manual_seed(0)
    model = synchronise_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(3)), torch.device("cpu"))
    share = x[rank * 3:(rank + 1) * 3].clone().requires_grad_()
    (model(share) * torch.arange(3.0)[None, :, None, None]).pow(2).sum().backward()
    out[rank] = {"y": model(share).detach(), "grad": share.grad, "mean": model[0].running_mean.clone(),
                 "var": model[0].running_var.clone(), "wgrad": model[0].weight.grad.clone()}
    dist.destroy_process_group()


def test_global_batchnorm_is_batchnorm_over_the_batches_of_every_rank():
    from runner.ranks import free_port
    x = torch.randn(6, 3, 4, 4) * 3 + 1
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_global_batchnorm_rank, args=(free_port(), x, out), nprocs=2)
        ranks = dict(out)
    reference = torch.nn.Sequential(torch.nn.BatchNorm2d(3))
    whole = x.clone().requires_grad_()
    (reference(whole) * torch.arange(3.0)[None, :, None, None]).pow(2).sum().backward()
    assert torch.allclose(torch.cat([ranks[0]["y"], ranks[1]["y"]]), reference(whole).detach(), atol=1e-5)
    assert torch.allclose(torch.cat([ranks[0]["grad"], ranks[1]["grad"]]), whole.grad, atol=1e-4)
    for r in ranks.values():  # two training passes each; every rank holds the same running statistics
        assert torch.allclose(r["mean"], reference[0].running_mean, atol=1e-6)
        assert torch.allclose(r["var"], reference[0].running_var, atol=1e-5)
    # each rank's weight gradient is its share; DDP's all-reduce adds them up to the whole batch's
    assert torch.allclose(ranks[0]["wgrad"] + ranks[1]["wgrad"], reference[0].weight.grad, atol=1e-4)


# --- whole cells through the local executor --------------------------------------------------------------------------

def reference_run(run: Path, folder: Path) -> Path:
    """The same cell as one process, uninterrupted, trained here."""
    cfg = resolve(json.loads((run / "config.json").read_text())["config"], {"system.world_size": 1})
    train(cfg, folder, log=lambda line: None)
    return folder


@pytest.mark.slow
def test_a_two_process_cell_matches_one_process_and_only_rank_0_writes(tmp_path):
    path = write_study(tmp_path, base=DP_BASE, grid={"model.mixer": ["dwconv"]}, run={"tasks_per_node": 2})
    dry = run_study(str(path), "--dry-run")
    assert dry.returncode == 0 and "processes  GPUs  nodes" in dry.stdout, dry.stdout + dry.stderr
    assert dry.stdout.splitlines()[2].split()[3:6] == ["2", "0", "1"], dry.stdout
    p = run_study(str(path))
    assert p.returncode == 0, p.stdout + p.stderr
    (run,) = runs(tmp_path).values()
    check_ledger(tmp_path, 3)
    result = json.loads((run / "result.json").read_text())
    assert result["distributed"] == {"world_size": 2, "per_rank_batch": 32, "sync_bn": True, "backend": "gloo"}
    assert result["config"]["system"]["world_size"] == 2
    # one writer: one log line per epoch, one metrics line per epoch, one attempt
    log = (run / "log.txt").read_text()
    assert [line.split()[1] for line in log.splitlines() if line.startswith("epoch")] == ["0", "1", "2"], log
    assert "2 processes x 32 images" in log
    assert state(run)["attempts"] == 1
    assert_same_training(run, reference_run(run, tmp_path / "reference"))
    assert rank_processes(run) == []


@pytest.mark.slow
def test_a_cell_stopped_at_two_processes_resumes_at_one_or_two_with_the_same_result(tmp_path):
    base = {**DP_BASE, "recipe": {**DP_BASE["recipe"], "epochs": 12}}
    first = tmp_path / "first"
    first.mkdir()
    path = write_study(first, base=base, grid={"model.mixer": ["dwconv"]}, run={"tasks_per_node": 2})
    runner = start_runner(path)
    wait_until(lambda: runs(first) and (next(iter(runs(first).values())) / "checkpoint.pt").exists()
               and (state(next(iter(runs(first).values()))).get("last_epoch") or 0) >= 1, 240,
               "the checkpoint after epoch 1", runner)
    (run,) = runs(first).values()
    followers = rank_processes(run)
    assert len(followers) == 1  # rank 1, started by the worker that is rank 0
    os.killpg(runner.pid, signal.SIGINT)
    out = runner.communicate(timeout=60)[0]
    assert runner.returncode == 130, out
    assert state(run)["status"] == "interrupted" and rank_processes(run) == []
    stopped_after = state(run)["last_epoch"]
    assert stopped_after < 11

    second = tmp_path / "second"  # the same stopped cell, twice: one resumes on 1 process, one on 2
    shutil.copytree(first, second)
    for folder, processes in ((first, 1), (second, 2)):
        study = yaml.safe_load(path.read_text())
        study["run"] = {**study["run"], "results": str(folder / "results"), "tasks_per_node": processes}
        (folder / "tiny.yaml").write_text(yaml.safe_dump(study))
        p = run_study(str(folder / "tiny.yaml"))
        assert p.returncode == 0, p.stdout + p.stderr
        check_ledger(folder, 12)
        (resumed,) = runs(folder).values()
        s = state(resumed)
        assert [a["why"] for a in s["attempts_log"]] == ["interrupted", "done"]
        assert s["attempts_log"][1]["first_epoch"] == stopped_after + 1
        assert json.loads((resumed / "result.json").read_text())["distributed"]["world_size"] == processes
    reference = reference_run(run, tmp_path / "reference")
    for folder in (first, second):
        assert_same_training(next(iter(runs(folder).values())), reference)


@pytest.mark.slow
def test_a_cell_without_synchronised_batchnorm_is_another_cell_per_world_size(tmp_path):
    base = {**DP_BASE, "system": {**DP_BASE["system"], "sync_bn": False}, "recipe": {**DP_BASE["recipe"], "epochs": 1}}
    path = write_study(tmp_path, base=base, grid={"model.mixer": ["dwconv"]}, run={"tasks_per_node": 2})
    p = run_study(str(path))
    assert p.returncode == 0, p.stdout + p.stderr
    (run,) = runs(tmp_path).values()
    cfg: RunConfig = resolve(json.loads((run / "config.json").read_text())["config"])
    assert cfg.system.world_size == 2 and cfg.run_id == run.name
    (tmp_path / "one").mkdir()
    one_process = write_study(tmp_path / "one", base=base, grid={"model.mixer": ["dwconv"]})
    assert expand(load_spec(one_process))[0].run_id != run.name  # each rank's BatchNorm saw 32 images, not 64
    result = json.loads((run / "result.json").read_text())
    assert result["distributed"]["per_rank_batch"] == 32 and result["distributed"]["sync_bn"] is False


@pytest.mark.slow
def test_mixer_train_runs_one_run_on_two_processes_under_torchrun(tmp_path):
    overrides = ["model.dim=16", "model.depth=1", "recipe.epochs=1", "recipe.batch_size=64", "bench.enabled=false",
                 "bench.erf=false", "system.device=cpu", "system.threads=1", "--no-progress", "--out",
                 str(tmp_path / "run")]
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "harness.cli",
                        *overrides], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("mixer-train: run ") == 1 and "on 2 processes" in p.stdout, p.stdout  # rank 0 reports
    assert p.stdout.count("done: test top-1") == 1, p.stdout
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["distributed"]["world_size"] == 2 and result["status"] == "done"


@pytest.mark.slow
def test_a_rank_killed_fails_its_cell_at_once_and_the_rerun_resumes_it(tmp_path):
    base = {**DP_BASE, "recipe": {**DP_BASE["recipe"], "epochs": 12}}
    path = write_study(tmp_path, base=base, grid={"model.mixer": ["dwconv"]}, run={"tasks_per_node": 2})
    runner = start_runner(path)
    # epochs_done reads 0 for a run folder whose state.json is not written yet
    wait_until(lambda: any(epochs_done(r) >= 2 for r in runs(tmp_path).values()), 240, "the checkpoint after epoch 1",
               runner)
    (run,) = runs(tmp_path).values()
    (follower,) = rank_processes(run)
    os.kill(follower, signal.SIGKILL)  # the kernel's OOM killer, say: rank 0 learns from gloo's broken connection
    out = runner.communicate(timeout=120)[0]
    assert runner.returncode == 1 and "1 cells failed" in out, out
    s = state(run)
    assert s["status"] == "failed" and s["attempts"] == 1 and s["failures"] == 1, s
    assert "Connection" in s["error"] or "connection" in s["error"], s["error"][-500:]
    assert rank_processes(run) == []
    again = run_study(str(path))
    assert again.returncode == 0, again.stdout + again.stderr
    check_ledger(tmp_path, 12)
    s = state(run)
    first, second = s["attempts_log"]
    assert first["why"] == "failed" and second["first_epoch"] == first["last_epoch"] + 1
