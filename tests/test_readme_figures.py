"""Every figure in the README's measured tables is in the stored output of the command that produced it.

The link, stated in the README's "Measured" section: every table there has an `evidence` column naming the record(s)
of its row, `results/reference/NAME.txt` files written by `benchmarks/record.py` (command, commit, machine, date, then
the raw output), or exactly NOT_REGENERATED where no output was stored. Every number in the row's figure cells (the
cells other than LABEL_COLUMNS, code spans excluded) must appear verbatim, as a whole number, in one of those records.
"""
from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT))  # benchmarks/ holds scripts, not an installed package
from benchmarks.record import RecordError, read_record  # noqa: E402

README = ROOT / "README.md"
REFERENCE = ROOT / "results" / "reference"
NOT_REGENERATED = "(not regenerated on this machine; no stored output)"
LABEL_COLUMNS = {"what", "command", "block", "mixer", "evidence"}  # what a row is about, not what was measured
EVIDENCE = re.compile(r"`(results/reference/[^`]+\.txt)`")
NUMBER = re.compile(r"(?<![\w-])\d[\d,]*(?:\.\d+)?")  # a figure, not part of a name (top-1, CIFAR-10, k5)


@dataclass(frozen=True)
class Row:
    line: int
    cells: dict[str, str]

    @property
    def label(self) -> str:
        return f"README.md:{self.line}"

    @property
    def figures(self) -> list[str]:
        text = " ".join(v for k, v in self.cells.items() if k not in LABEL_COLUMNS)
        return NUMBER.findall(re.sub(r"`[^`]*`", "", text))


def measured_rows(readme: str) -> list[Row]:
    """The rows of every table in the README's "## Measured" section (up to the next "## " heading)."""
    lines = readme.splitlines()
    start = lines.index("## Measured")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    rows, header = [], None
    for i in range(start, end):
        line = lines[i]
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            assert "evidence" in header, f"README.md:{i + 1}: a measured table without an evidence column"
        elif not set(line) <= set("|-: "):  # not the separator line
            rows.append(Row(i + 1, dict(zip(header, cells))))
    return rows


def appears(figure: str, text: str) -> bool:
    """`figure` in `text` as a whole number: 1.3 is not found in 11.31 or in 1.35."""
    return re.search(rf"(?<![\d.,]){re.escape(figure)}(?![\d]|[.,]\d)", text) is not None


ROWS = measured_rows(README.read_text())


def test_the_measured_section_has_tables():
    assert len(ROWS) >= 10, "the README's Measured section was not found or holds no tables"


@pytest.mark.parametrize("row", ROWS, ids=[r.label for r in ROWS])
def test_every_measured_figure_is_in_its_evidence(row):
    evidence = row.cells["evidence"]
    if evidence == NOT_REGENERATED:
        return
    files = EVIDENCE.findall(evidence)
    assert files and EVIDENCE.sub("", evidence).strip(" ,;") == "", (
        f"{row.label}: the evidence cell must name results/reference/NAME.txt files or say {NOT_REGENERATED!r}; "
        f"got {evidence!r}")
    records = [read_record(ROOT / f) for f in files]
    assert all(r.header["exit"].split()[0] == "0" for r in records), f"{row.label}: a record of a failed command"
    assert row.figures, f"{row.label}: no figure in the row"
    missing = [f for f in row.figures if not any(appears(f, r.text) for r in records)]
    assert not missing, f"{row.label}: {missing} not found in {', '.join(files)}"


@pytest.mark.parametrize("path", sorted(REFERENCE.glob("*.txt")), ids=lambda p: p.name)
def test_every_record_names_its_command_commit_machine_and_date(path):
    """A record names the commit it ran; only one copied from an older source (its `source` says which) may say the
    commit was not recorded."""
    header = read_record(path).header
    assert re.fullmatch(r"[0-9a-f]{7,40}( .*)?", header["commit"]) or (
        "source" in header and header["commit"].startswith("not recorded")), header["commit"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d.*", header["date"]) and header["machine"] and header["command"]


def test_figures_are_matched_as_whole_numbers():
    assert appears("1.3", "took 1.3 s") and appears("1,317", "| 1,317 |") and appears("99.2", "top-1 99.2%")
    assert not appears("1.3", "11.31") and not appears("1.3", "1.35") and not appears("17", "1,317")


def test_record_stores_the_output_with_its_header_and_passes_the_exit_status_on(tmp_path):
    command = [sys.executable, "-c", "import sys; print('42.5 img/s'); print('oops', file=sys.stderr); sys.exit(3)"]
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "record.py"), "--folder", str(tmp_path), "demo",
                           "--", *command], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 3 and "42.5 img/s" in done.stdout
    record = read_record(tmp_path / "demo.txt")
    assert record.output == "42.5 img/s\noops\n" and record.header["exit"] == "3"
    assert record.header["commit"].split()[0] == subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert record.header["command"].endswith("sys.exit(3)'") and float(record.header["wall_s"]) > 0
    assert "cores" in record.header["machine"] and appears("42.5", record.text)


def test_a_file_that_is_not_a_record_is_refused_with_its_name(tmp_path):
    (tmp_path / "bad.txt").write_text("# command: x\nno separator\n")
    with pytest.raises(RecordError, match=r"bad.txt:2: expected '# key: value'"):
        read_record(tmp_path / "bad.txt")
    (tmp_path / "short.txt").write_text("# command: x\n# ---\n")
    with pytest.raises(RecordError, match=r"short.txt: header lacks commit, machine, torch, date, exit"):
        read_record(tmp_path / "short.txt")
