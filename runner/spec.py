"""The study file: a base run config, the grid of cells around it, and where and how to run them.

    name: mixer_vs_patch
    base: {model: {...}, data: {...}, recipe: convmixer_cifar10}
    grid: {model.mixer: [dwconv, attention], model.patch_size: [1, 2, 4]}   # the cartesian product
    zip: [{model.dim: [256, 512], model.depth: [8, 16]}]                      # axes that vary together
    exclude: [{model.mixer: attention, model.patch_size: 1}]                  # cells to drop (a list = any of)
    include: [{model.mixer: pool, model.patch_size: 2}]                       # extra cells beyond the grid
    seeds: [0, 1, 2]
    run: {executor: slurm, profile: slurm/profiles/mycluster.yaml, gpus_per_task: 1, timeout_min: 120}
    report: {table: {rows: model.mixer, columns: model.patch_size, metric: test_top1}, control: {model.mixer: dwconv}}
    select: {metric: val_top1, over: [recipe.lr]}                            # tuning on validation data only
    match: {params: 1.0e6, solve: model.dim}                                 # each cell's width solved to a size

A cell's identity leaves out what its model does not use (`harness.identity`): attention ignores model.kernel_size,
so a kernel-size axis gives it one cell per seed, listed with the axis in `ignored`.
Every error names the file and the key path, and says what would be valid.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.config import RunConfig, resolve
from harness.identity import normalise
from harness.schema import ConfigError, did_you_mean, get_dotted, parse, to_dict
from harness.yamlio import load_file

RUN_KEYS = [f.name for f in dataclasses.fields(RunConfig)]


@dataclass(frozen=True)
class SlurmResources:
    """SLURM resources of every cell; a cluster profile (run.profile) gives the defaults."""
    partition: str | None = None
    gpus_per_task: int = 0               # a cell of one process: its GPU (0 or 1)
    # A data-parallel cell trains on nodes x tasks_per_node processes, one per GPU where there are GPUs
    # (submitit's and SLURM's words); the local executor runs one on this machine (nodes 1).
    nodes: int = 1
    tasks_per_node: int = 1
    gpus_per_node: int = 0               # a data-parallel cell's GPUs per node: one per task
    cpus_per_task: int = 1
    mem_gb: float = 4.0
    timeout_min: int = 60
    array_parallelism: int = 64          # cells running at once (the %N throttle)
    max_array_size: int = 1000           # the cluster's MaxArraySize: bigger grids are split into several arrays
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    setup: list[str] = field(default_factory=list)       # shell lines before the job (module load, conda activate)
    sbatch: dict[str, Any] = field(default_factory=dict)  # any other sbatch option, e.g. {exclusive: true}
    signal_delay_s: int = 120            # warning before the time limit, to checkpoint and requeue
    max_num_timeout: int = 3             # requeues after hitting the time limit (preemptions are always requeued)
    snapshot: bool = True                # queued jobs run the code as it was at submission

    def __post_init__(self) -> None:
        from harness.schema import check
        for name in ("gpus_per_task", "gpus_per_node", "nodes", "tasks_per_node", "cpus_per_task", "timeout_min",
                     "array_parallelism", "max_array_size"):
            minimum = 0 if name.startswith("gpus_") else 1
            check(getattr(self, name) >= minimum, name, f"must be >= {minimum}, got {getattr(self, name)}")
        check(self.mem_gb > 0, "mem_gb", f"must be > 0, got {self.mem_gb}")
        check(self.gpus_per_task <= 1, "gpus_per_task", f"a process trains on one GPU, got {self.gpus_per_task}; for "
              f"a cell on several GPUs set run.tasks_per_node and run.gpus_per_node (one process per GPU)")
        check(not (self.gpus_per_task and self.gpus_per_node), "gpus_per_node",
              "give one of gpus_per_task (a cell of one process) and gpus_per_node (a data-parallel cell)")
        check(self.gpus_per_node in (0, self.tasks_per_node), "gpus_per_node",
              f"one process per GPU: must equal run.tasks_per_node ({self.tasks_per_node}) or be 0 (CPU processes), "
              f"got {self.gpus_per_node}")

    @property
    def world_size(self) -> int:
        """Processes each cell trains on."""
        return self.nodes * self.tasks_per_node

    @property
    def gpus_per_cell(self) -> int:
        return self.gpus_per_node * self.nodes or self.gpus_per_task


@dataclass(frozen=True)
class RunSpec(SlurmResources):
    executor: Literal["local", "slurm", "debug"] = "local"
    profile: str | None = None           # a cluster profile YAML
    parallel: int | None = None          # local: cells at once (None: one per GPU, or 1 on a CPU-only machine)
    cells_per_gpu: int = 1               # cells side by side on each GPU (or on the CPU); throughput measured alone
    max_retries: int = 2                 # failed cells are re-submitted at most this many times
    results: str = "results"             # the results root; the study writes <results>/<name>/
    tracking: list[Literal["tensorboard", "wandb"]] = field(default_factory=list)  # every cell's system.tracking

    def __post_init__(self) -> None:
        super().__post_init__()
        from harness.schema import check
        check(self.parallel is None or self.parallel >= 1, "parallel", "must be >= 1")
        check(self.cells_per_gpu >= 1, "cells_per_gpu", f"must be >= 1, got {self.cells_per_gpu}")
        check(self.parallel is None or self.cells_per_gpu == 1, "cells_per_gpu",
              f"set either run.parallel or run.cells_per_gpu, not both: cells_per_gpu {self.cells_per_gpu} runs "
              f"that many cells on each GPU (on the CPU-only machine, on the CPU) at once")
        check(self.cells_per_gpu == 1 or self.world_size == 1, "cells_per_gpu",
              f"small cells share a GPU, large ones take several: cells_per_gpu {self.cells_per_gpu} with "
              f"{self.world_size} processes per cell (run.nodes x run.tasks_per_node); valid: one of them above 1")
        check(self.max_retries >= 0, "max_retries", "must be >= 0")
        check(self.nodes == 1 or self.executor == "slurm", "nodes",
              f"the {self.executor} executor runs each cell on this machine: must be 1, got {self.nodes} (several "
              f"nodes per cell need executor: slurm)")
        check(self.world_size == 1 or self.executor != "debug", "tasks_per_node",
              "the debug executor runs cells in its own process: must be 1 (use executor: local for several "
              "processes)")


@dataclass(frozen=True)
class TableSpec:
    rows: str | None = None
    columns: str | None = None
    metric: str = "test_top1"


@dataclass(frozen=True)
class PlotSpec:
    x: str | None = None
    hue: str | None = None
    style: str | None = None


@dataclass(frozen=True)
class ReportSpec:
    table: TableSpec = field(default_factory=TableSpec)
    plots: PlotSpec = field(default_factory=PlotSpec)
    control: dict[str, Any] = field(default_factory=dict)  # {axis: level} every other level is compared with
    figures: bool = True  # false: summary, tables and report.md only (`study-report DIR --figures` draws them later)


@dataclass(frozen=True)
class SelectSpec:
    """Per combination of the other axes, the setting of `over` with the best mean `metric` (a validation one)."""
    over: list[str]
    metric: str = "val_top1"


@dataclass(frozen=True)
class MatchSpec:
    """Each cell's `solve` dimension set so that its parameters or forward FLOPs land within 3% of a target."""
    params: float | None = None
    flops: float | None = None
    solve: Literal["model.dim", "model.depth"] = "model.dim"

    def __post_init__(self) -> None:
        from harness.schema import check
        check((self.params is None) != (self.flops is None), "params",
              "give one target, `params: 1.0e6` or `flops: 3.0e8`")
        check((self.params or self.flops or 0) > 0, "params" if self.params else "flops", "must be > 0")

    @property
    def kind(self) -> str:
        return "params" if self.params is not None else "flops"

    @property
    def target(self) -> float:
        return float(self.params if self.params is not None else self.flops)  # type: ignore[arg-type]


@dataclass(frozen=True)
class StudySpec:
    name: str
    description: str = ""
    base: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    zip: list[dict[str, list[Any]]] = field(default_factory=list)
    include: list[dict[str, Any]] = field(default_factory=list)
    exclude: list[dict[str, Any]] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    run: RunSpec = field(default_factory=RunSpec)
    report: ReportSpec = field(default_factory=ReportSpec)
    select: SelectSpec | None = None
    match: MatchSpec | None = None
    imports: list[str] = field(default_factory=list)  # modules that register extra mixers or datasets
    # Set by load_spec, never in the file: the study file, its folder (which relative paths in it are relative to) and
    # the command line's overrides.
    file: str = ""
    folder: str = "."
    overrides: list[str] = field(default_factory=list)  # key=value from the command line, applied to the file

    @property
    def axes(self) -> list[str]:
        """The varied keys in grid order, zipped ones after (seed is not an axis)."""
        return list(self.grid) + [k for group in self.zip for k in group]


@dataclass(frozen=True)
class Cell:
    params: dict[str, Any]    # dotted key -> value, the seed included as "seed"; None for an ignored axis
    config: RunConfig
    ignored: tuple[str, ...] = ()            # axes the cell's model does not use (shown as n/a)
    matched: dict[str, Any] = field(default_factory=dict)  # a match study: {solved key: value, params|flops: achieved}

    @property
    def run_id(self) -> str:
        return self.config.run_id


class StudyError(ConfigError):
    """A study file that cannot run; nothing was submitted and no result was touched."""


def _check_key(key: str, where: str) -> None:
    """A dotted key must start with a run-config section (model, data, ...) or be the seed."""
    head = key.split(".")[0]
    if head not in RUN_KEYS:
        raise StudyError(f"{where}: {key!r} does not name a run-config key{did_you_mean(head, RUN_KEYS)}; "
                         f"keys start with one of {', '.join(RUN_KEYS)} (e.g. model.mixer)")
    if head == "seed":
        raise StudyError(f"{where}: the seed is set by the study's `seeds` list, not as an axis")


DERIVED_KEYS = ("file", "folder", "overrides")


def _absolute(value: Any, folder: Path) -> Any:
    """A path written in a study file, made absolute from the study file's folder (`~` expanded)."""
    if not isinstance(value, str) or not value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (folder / path).resolve())


def _absolute_roots(spec: StudySpec, folder: Path) -> StudySpec:
    """Every data.root of the study (base, grid, zip, include) absolute, so a run id names the data it reads."""
    base = json.loads(json.dumps(spec.base))
    if isinstance(base.get("data"), dict) and "root" in base["data"]:
        base["data"]["root"] = _absolute(base["data"]["root"], folder)
    fix = lambda axes: {k: ([_absolute(v, folder) for v in vs] if k == "data.root" else vs) for k, vs in axes.items()}
    rules = lambda rules: [{k: (_absolute(v, folder) if k == "data.root" else v) for k, v in r.items()} for r in rules]
    return dataclasses.replace(spec, base=base, grid=fix(spec.grid), zip=[fix(g) for g in spec.zip],
                               include=rules(spec.include), exclude=rules(spec.exclude))


def _with_world_size(spec: StudySpec, where: str) -> StudySpec:
    """Every cell's system.world_size, from run.nodes x run.tasks_per_node (the one place it is set in a study)."""
    system = spec.base.get("system")
    system = system if isinstance(system, dict) else {}
    given = system.get("world_size")
    if given is not None and given != spec.run.world_size:
        raise StudyError(f"{where}.base.system.world_size: a study sets it from run.nodes x run.tasks_per_node "
                         f"({spec.run.world_size}), got {given!r}; remove it and set run.tasks_per_node instead")
    if spec.run.world_size == 1:
        return spec
    return dataclasses.replace(spec, base={**spec.base, "system": {**system, "world_size": spec.run.world_size}})


def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> StudySpec:
    """Read and check a study file, with command-line `overrides` (runner/overrides.py) applied first. Relative paths
    in it (run.results, run.profile, data roots, plugin modules, the working directory of setup lines) are relative
    to the study file's folder, wherever the command runs."""
    from .overrides import apply_overrides
    path = Path(path)
    try:
        raw = load_file(path, "study file")
    except ConfigError as e:
        raise StudyError(str(e)) from None
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: a study file is a mapping with at least `name` and `grid`; got {raw!r}")
    raw = apply_overrides(raw, list(overrides), str(path))
    for key in DERIVED_KEYS:
        if key in raw:
            raise StudyError(f"{path}.{key}: not a study-file key (the runner sets it)")
    folder = path.resolve().parent
    run = dict(raw.get("run") or {})
    if run.get("profile"):
        run = {**_load_profile(path, run["profile"], folder), **run}
    raw["run"] = run
    if run.get("tracking") and isinstance(raw.get("base") or {}, dict):  # every cell's system.tracking (no run id)
        base = raw["base"] = dict(raw.get("base") or {})
        base["system"] = {**(base.get("system") or {}), "tracking": run["tracking"]}
    if isinstance(raw.get("seeds"), int) and not isinstance(raw.get("seeds"), bool):
        raw["seeds"] = list(range(raw["seeds"]))  # `seeds: 3` means 0, 1, 2
    try:
        spec = parse(StudySpec, raw, str(path))
    except ConfigError as e:
        raise StudyError(str(e)) from None
    _check_structure(spec, str(path))
    spec = _with_world_size(spec, str(path))
    spec = _absolute_roots(spec, folder)
    return dataclasses.replace(spec, file=str(path.resolve()), folder=str(folder), overrides=list(overrides),
                               run=dataclasses.replace(spec.run, results=_absolute(spec.run.results, folder)))


def _load_profile(study: Path, profile: str, folder: Path) -> dict[str, Any]:
    candidate = Path(_absolute(profile, folder))
    if not candidate.is_file():
        raise StudyError(f"{study}.run.profile: no profile file {profile!r} (a relative path is relative to the "
                         f"study file's folder)")
    try:
        data = load_file(candidate, "cluster profile") or {}
    except ConfigError as e:
        raise StudyError(str(e)) from None
    if not isinstance(data, dict):
        raise StudyError(f"{candidate}: a cluster profile is a mapping of run settings, got {data!r}")
    unknown = [k for k in data if k not in {f.name for f in dataclasses.fields(SlurmResources)}]
    if unknown:
        valid = [f.name for f in dataclasses.fields(SlurmResources)]
        raise StudyError(f"{candidate}.{unknown[0]}: unknown key{did_you_mean(unknown[0], valid)}; "
                         f"valid: {', '.join(valid)}")
    return data


def _check_structure(spec: StudySpec, where: str) -> None:
    if not spec.name.replace("-", "_").replace(".", "_").isidentifier():
        raise StudyError(f"{where}.name: {spec.name!r} must be a plain name (letters, digits, _ - .): it names "
                         f"the results folder")
    for key, values in spec.grid.items():
        _check_key(key, f"{where}.grid")
        if not values:
            raise StudyError(f"{where}.grid.{key}: an axis needs at least one value, got an empty list")
    for i, group in enumerate(spec.zip):
        lengths = {k: len(v) for k, v in group.items()}
        for key in group:
            _check_key(key, f"{where}.zip[{i}]")
            if key in spec.grid:
                raise StudyError(f"{where}.zip[{i}].{key}: already a grid axis; an axis is either in grid or zip")
        if len(set(lengths.values())) > 1:
            raise StudyError(f"{where}.zip[{i}]: zipped axes vary together and need equal lengths, got {lengths}")
    for name, rules in (("include", spec.include), ("exclude", spec.exclude)):
        for i, rule in enumerate(rules):
            for key in rule:
                _check_key(key, f"{where}.{name}[{i}]")
    if not spec.seeds:
        raise StudyError(f"{where}.seeds: needs at least one seed")
    if len(set(spec.seeds)) != len(spec.seeds):
        raise StudyError(f"{where}.seeds: repeated seeds {spec.seeds}")
    if "seed" in spec.base:
        raise StudyError(f"{where}.base.seed: the seed is set by the study's `seeds` list")
    if spec.match is not None and spec.match.solve in spec.axes:
        raise StudyError(f"{where}.match.solve: {spec.match.solve} is a grid axis; a matched study solves it per "
                         f"cell, so it cannot also be varied")


def _matches(params: dict[str, Any], rule: dict[str, Any]) -> bool:
    return all((params.get(k) in v) if isinstance(v, list) else params.get(k) == v for k, v in rule.items())


def cell_label(where: str, params: dict[str, Any]) -> str:
    """How errors name a cell: `study.yaml cell [model.mixer=pool, seed=0]`."""
    return f"{where} cell [{', '.join(f'{k}={v}' for k, v in params.items())}]"


def expand(spec: StudySpec, where: str = "study") -> list[Cell]:
    """Every cell of the study, each with its resolved and validated run config, in a stable order."""
    resolve(spec.base, path=f"{where}.base")  # a mistake in the base is reported once, by its own key path
    grid_points = [dict(zip(spec.grid, values)) for values in itertools.product(*spec.grid.values())]
    for group in spec.zip:
        rows = [dict(zip(group, values)) for values in zip(*group.values())]
        grid_points = [{**p, **r} for p in grid_points for r in rows]
    points = [p for p in grid_points if not any(_matches(p, rule) for rule in spec.exclude)]
    points += [dict(rule) for rule in spec.include if rule not in points]
    if not spec.grid and not spec.zip and not spec.include:
        raise StudyError(f"{where}.grid: the study has no axes (grid, zip or include); a study varies at "
                         f"least one key, e.g. grid: {{model.mixer: [dwconv, identity]}}")
    if not points:
        raise StudyError(f"{where}.exclude: the rules exclude every cell of the grid; nothing would run")
    from .match import MatchSolver  # (it imports this module)
    solver = MatchSolver(spec.match) if spec.match is not None else None
    cells: list[Cell] = []
    seen: dict[str, str] = {}
    for point in points:
        for seed in spec.seeds:
            params = {**point, "seed": seed}
            label = cell_label(where, params)
            normalised, unused = normalise(resolve(spec.base, params, path=label).to_dict())
            ignored = tuple(axis for axis in spec.axes if axis in unused)
            config = resolve(normalised, path=label)
            matched: dict[str, Any] = {}
            if solver is not None:
                config, matched = solver.solve(config, label)
            cell = Cell({k: (None if k in ignored else v) for k, v in params.items()}, config, ignored, matched)
            if cell.run_id in seen:
                if ignored:  # the same model as a cell listed already: listed once
                    continue
                raise StudyError(f"{label} and{seen[cell.run_id]} resolve to the same run config")
            seen[cell.run_id] = cell_label("", params)
            cells.append(cell)
    return cells


def resolved_study(spec: StudySpec, cells: list[Cell], code: dict[str, Any]) -> dict[str, Any]:
    """study.yaml as written next to the results: the study as submitted, its cells and the code version."""
    base = resolve(spec.base, path="base").to_dict()
    study = {**to_dict(spec), "axes": spec.axes, "base": base, "code": code,
             "cells": [{"run_id": c.run_id, "params": c.params, **({"ignored": list(c.ignored)} if c.ignored else {}),
                        **({"matched": c.matched} if c.matched else {})} for c in cells]}
    if spec.match is not None:  # as the user gave it: the one target, and what is solved
        study["match"] = {spec.match.kind: spec.match.target, "solve": spec.match.solve}
    return {k: v for k, v in study.items() if v is not None}


def cell_value(cell: Cell, key: str) -> Any:
    return cell.params[key] if key in cell.params else get_dotted(cell.config, key)
