"""Run a command and keep its raw output as evidence for a figure the README quotes, with where and when it ran.

    python benchmarks/record.py NAME -- COMMAND [ARG ...]

writes `results/reference/NAME.txt`: a header of `# key: value` lines (the command, the git commit and whether the
tree was dirty, the machine, torch's version, the date in UTC, the load average at the start, the command's wall time
and exit status), a `# ---` line, then everything the command wrote to stdout and stderr, in the order it wrote it.
The output is also passed through to this terminal. Exits with the command's status, so a benchmark that misses its
target fails here too (its record is kept, saying so). `read_record` is the one parser of this format
(`tests/test_readme_figures.py` matches the README's figures against it).
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "results" / "reference"
SEPARATOR = "# ---"
REQUIRED = ("command", "commit", "machine", "torch", "date", "exit")
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")
# what a figure can depend on: "dirty" means it differs from the commit (README, tests and records do not count)
CODE = ("mixers", "harness", "runner", "analysis", "benchmarks", "studies", "pyproject.toml")


@dataclass(frozen=True)
class Record:
    header: dict[str, str]
    output: str

    @property
    def text(self) -> str:
        """Header and output together: where a quoted figure may be found (wall time is in the header)."""
        return "\n".join(f"{k}: {v}" for k, v in self.header.items()) + "\n" + self.output


class RecordError(ValueError):
    """A file under results/reference/ that is not in the record format."""


def read_record(path: Path) -> Record:
    """Parse a record written by this script; raise RecordError naming the file and what is wrong."""
    lines = path.read_text().splitlines(keepends=True)
    header: dict[str, str] = {}
    for i, line in enumerate(lines):
        if line.rstrip("\n") == SEPARATOR:
            missing = [k for k in REQUIRED if k not in header]
            if missing:
                raise RecordError(f"{path}: header lacks {', '.join(missing)}")
            return Record(header, "".join(lines[i + 1:]))
        match = re.fullmatch(r"# ([a-z_]+): (.*)\n?", line)
        if not match:
            raise RecordError(f"{path}:{i + 1}: expected '# key: value' or '{SEPARATOR}', got {line.strip()!r}")
        header[match[1]] = match[2]
    raise RecordError(f"{path}: no '{SEPARATOR}' line after the header")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def _meminfo_gib() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 2**20:.0f} GiB RAM"
    return "RAM unknown"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _gpus() -> str:
    if shutil.which("nvidia-smi") is None:
        return "none"
    done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
    return ", ".join(done.stdout.split("\n")).strip(", ") if done.returncode == 0 and done.stdout.strip() else "none"


def machine() -> str:
    """The machine in one line; torch is not imported (it would cost seconds and is not needed for its version)."""
    return f"{_cpu_model()}, {os.cpu_count()} cores, {_meminfo_gib()}; GPU: {_gpus()}"


def header(command: list[str]) -> dict[str, str]:
    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "not installed"
    dirty = _git("status", "--porcelain", "--", *CODE)
    return {"command": shlex.join(command), "commit": f"{_git('rev-parse', 'HEAD')} ({'dirty' if dirty else 'clean'})",
            "machine": machine(), "torch": torch_version,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1, 5, 15 min, at the start)"}


def record(name: str, command: list[str], folder: Path = REFERENCE) -> int:
    fields = header(command)
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    for line in process.stdout:
        sys.stdout.write(line)
        output.append(line)
    status = process.wait()
    fields |= {"wall_s": f"{time.perf_counter() - start:.3f}", "exit": str(status)}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.txt"
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"# {k}: {v}\n" for k, v in fields.items()) + SEPARATOR + "\n" + "".join(output))
    os.replace(tmp, path)
    print(f"record: {path} (exit {status}, {fields['wall_s']} s)", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the record's name: results/reference/NAME.txt")
    parser.add_argument("--folder", type=Path, default=REFERENCE, help="where NAME.txt goes (default: %(default)s)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command and its arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not NAME.fullmatch(args.name):
        parser.error(f"NAME {args.name!r}: use lower-case letters, digits, '_', '-' and '.'")
    if not command:
        parser.error("no command: write it after '--', e.g. record.py digits -- mixer-train studies/runs/x.yaml")
    if shutil.which(command[0]) is None and not Path(command[0]).exists():
        parser.error(f"command {command[0]!r} not found on PATH")
    return record(args.name, command, args.folder)


if __name__ == "__main__":
    sys.exit(main())
