"""Writing report files atomically, so that a reader (or a second report build) never sees a half-written one, and
a manifest of what a build wrote, so that the next build removes exactly the files it no longer writes."""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

MANIFEST = "report-files.json"  # in the study folder: the files (relative to it) the last report build wrote


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
    return path


def replace_manifest(out: Path, written: Iterable[Path]) -> list[Path]:
    """Remove the files the previous build listed and this one did not write (a table of a control since removed, a
    figure of an axis since dropped), then list this build's; the removed files are returned."""
    manifest = out / MANIFEST
    try:
        previous = json.loads(manifest.read_text()) if manifest.is_file() else []
    except (OSError, ValueError):
        previous = []  # unreadable: nothing is removed on its word
    names = sorted({str(Path(p).resolve().relative_to(out.resolve())) for p in written})
    removed = [out / name for name in previous if name not in names and ".." not in Path(name).parts]
    for path in removed:
        path.unlink(missing_ok=True)
    write_atomic(manifest, json.dumps(names, indent=1) + "\n")
    return removed
