"""Running the quick study examples of examples/studies/ from the command line, for the example tests
(split over two files so that two workers share them)."""

from __future__ import annotations

import json
from pathlib import Path

from compression.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "studies"


def run(kind: str, out: Path, *extra: str) -> dict:
    code = cli.main(["study", str(EXAMPLES / f"quick_{kind}.json"), "--out", str(out), "--quiet", *extra])
    record = json.loads((out / "study.json").read_text())
    assert code == 0, record.get("error")
    assert record["state"] == "succeeded" and record["progress"]["done"] == len(record["runs"])
    for e in record["runs"]:
        assert (out / e["run"] / "report.json").is_file()  # an ordinary run folder
    return record


def report(out: Path, record: dict, key: str) -> dict:
    run = next(e["run"] for e in record["runs"] if e["key"] == key)
    return json.loads((out / run / "report.json").read_text())
