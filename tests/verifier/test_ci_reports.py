"""The report writers on crafted results: the Markdown budget and escaping, the changed
line a source diff names, JUnit's XML-safe text."""

from __future__ import annotations

from xml.etree import ElementTree

from pinrun.verifier.ci_reports import Totals, junit_xml, markdown_summary
from pinrun.verifier.ci_reports.markdown import GITHUB_LIMIT, LIMIT
from pinrun.verifier.ci_reports.results import Location, code_location

# A context line of a unified diff starts with a space, blank lines included.
DIFF = "".join(f"{line}\n" for line in [
    "--- pinned/pkg/flows.py", "+++ disk/pkg/flows.py", "@@ -3,5 +3,5 @@", " import pinrun",
    " ", " ", "-def price(n):", "+def price(n):  # changed", "     return n"])


def _failed(run: str, diff: str) -> dict[str, object]:
    return {"run": run, "flow": "f|low", "verdict": "diverged", "seconds": 0.25,
            "explanation": "run diverged", "steps": [{
                "name": "price", "status": "diverged", "divergence": "outputs",
                "message": "its outputs differ", "changes": [], "hazards": [],
                "causes": [{"kind": "code drift", "message": "the code changed", "file": None,
                            "line": None, "detail": diff}]}]}


def test_code_location_is_the_first_changed_line_on_disk() -> None:
    """The path after the disk/ label and the first added or removed line's number now."""
    assert code_location(DIFF) == Location("pkg/flows.py", 6)
    removed = DIFF.replace("+def price(n):  # changed\n", "")
    assert code_location(removed) == Location("pkg/flows.py", 6)
    assert code_location("") is None


def test_markdown_summary_stays_under_githubs_limit() -> None:
    """3,000 failed runs with 2 KB diffs: the summary is cut under 1 MiB and says how many
    runs it left out."""
    results = [_failed(f"run-{index:05d}", DIFF * 20) for index in range(3000)]
    text = markdown_summary(results, Totals.of(results, 3000))
    assert len(text.encode()) <= LIMIT < GITHUB_LIMIT
    assert text.rstrip().endswith("them all.*")
    shown = text.count("<details>")
    assert 0 < shown < 3000
    assert f"{3000 - shown} of 3000 runs that did not reproduce were left out" in text


def test_markdown_escapes_stored_text() -> None:
    """Pipes, backticks and HTML in a run id cannot end a cell or open a tag; a diff with
    a fence inside gets a longer fence."""
    crafted = "x|`y`<b>*z*"
    text = markdown_summary([_failed(crafted, DIFF + "+```\n")],
                            Totals(selected=1, diverged=1))
    row = next(line for line in text.splitlines() if line.startswith("| x"))
    assert row.startswith(r"| x\|\`y\`\<b\>\*z\* | f\|low | diverged | price |")
    assert row.count(" | ") == 4
    assert "<summary>x|`y`&lt;b&gt;*z* (f|low): diverged at step price</summary>" in text
    assert "````diff\n" in text


def test_junit_text_holds_no_control_characters() -> None:
    """A control character in a run id or a diff is escaped, and the file parses."""
    data = junit_xml([_failed("run\x1b[2J", DIFF + "+\x00\x07\n")])
    suite = ElementTree.fromstring(data)
    case = next(suite.iter("testcase"))
    assert case.get("name") == "run\\x1b[2J"
    assert case.get("time") == "0.250000"
    failure = case.find("failure")
    assert failure is not None
    assert "+\\x00\\x07" in (failure.text or "")
