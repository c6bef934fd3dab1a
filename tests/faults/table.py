"""Turn a fault-table run into docs/reliability.md's table rows.

    pytest tests/faults -m slow -n 0 --junitxml=/tmp/faults.xml
    python tests/faults/table.py /tmp/faults.xml /tmp/optibridge-faults.jsonl

Outcomes come from the JUnit XML (a scenario that failed before its figures has none); figures
from the results file (the last line recorded for each test).
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

# The stated duplicate bound of each scenario (docs/reliability.md, "Duplicate bound").
BOUNDS = {
    "test_sigkill_worker_mid_send[no-lookup]": "3 kills x lanes 1 x chunk 16 = 48",
    "test_smtp_accepts_but_the_answer_is_lost[no-lookup]": "1 per lost answer",
}


def _lookup(test_id: str) -> str:
    if "[no-lookup]" in test_id:
        return "no"
    if "[lookup]" in test_id:
        return "yes"
    return "no" if "children" in test_id else "yes"


def main(xml_path: str, results_path: str) -> None:
    figures: dict[str, dict[str, Any]] = {}
    for line in Path(results_path).read_text().splitlines():
        record = json.loads(line)
        if record.get("test"):
            figures[record["test"]] = record
    root = ET.parse(xml_path).getroot()
    for case in root.iter("testcase"):
        path = case.get("classname", "").replace(".", "/") + ".py"
        test_id = f"{path}::{case.get('name')}"
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        outcome = "F" if failure is not None else ("skip" if case.find("skipped") is not None else "P")
        fig = figures.get(test_id)
        if fig is None:
            reason = (failure.get("message", "") if failure is not None else "")[:160].replace("|", "/")
            name = test_id.split("::")[1]
            bound = BOUNDS.get(name, "0")
            seconds = float(case.get("time", 0))
            print(f"| {name} | {_lookup(test_id)} | {bound} | {outcome} | | | | {seconds:.0f} s | "
                  f"`pytest '{test_id}' -m slow -n 0` {reason} |")  # fmt: skip
            continue
        bound = BOUNDS.get(test_id.split("::")[1], "0")
        print(
            f"| {fig['scenario']} | {_lookup(test_id)} | {bound} | {outcome} | {fig['duplicates']} "
            f"| {fig['lost']} | {fig['claimed']} | {fig['seconds']:.0f} s "
            f"| `pytest '{test_id}' -m slow -n 0` |"
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
