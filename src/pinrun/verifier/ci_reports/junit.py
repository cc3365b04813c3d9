"""The JUnit XML report: one test case per run, with its replay time; a failure holds the
explanation and the source diff when the code drifted."""

from __future__ import annotations

import re
from collections.abc import Sequence
from xml.etree import ElementTree

from pinrun.safe_text import printable
from pinrun.verifier.ci_reports.results import Result, code_diffs, first_problem, ordered, seconds

__all__ = ["junit_xml", "xml_text"]

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: A failure's message attribute (one line a CI page shows) is cut to this.
MESSAGE = 500


def xml_text(text: object, *, newlines: bool = True) -> str:
    """Text XML 1.0 can hold, and a CI page can show: control characters are escaped.

    :func:`printable` writes escape codes and NUL as ``\\x1b``; what it leaves
    that XML still forbids (nothing, today) becomes '?'.
    """
    return _NOT_XML.sub("?", printable(text, newlines=newlines))


def _time(value: float) -> str:
    return f"{value:.6f}"


def failure_text(result: Result) -> str:
    """The explanation, then each diverged step's code diff when its code drifted."""
    text = str(result.get("explanation") or result.get("error") or "")
    for step, diff in code_diffs(result):
        text += f"\n\ncode diff of step '{step}' (pinned -> disk):\n{diff}"
    return text


def junit_xml(results: Sequence[Result]) -> bytes:
    """The report as UTF-8 XML bytes (the suite's time is the sum of the runs')."""
    cases = ordered(results)
    failures = sum(r["verdict"] == "diverged" for r in cases)
    errors = sum(r["verdict"] == "error" for r in cases)
    suite = ElementTree.Element("testsuite", name="pinrun verify", tests=str(len(cases)),
                                failures=str(failures), errors=str(errors),
                                time=_time(sum(seconds(r) for r in cases)))
    for result in cases:
        case = ElementTree.SubElement(
            suite, "testcase", classname=xml_text(result.get("flow") or "", newlines=False),
            name=xml_text(result["run"], newlines=False), time=_time(seconds(result)))
        if result["verdict"] == "diverged":
            failure = ElementTree.SubElement(
                case, "failure",
                message=xml_text(first_problem(result)[:MESSAGE], newlines=False))
            failure.text = xml_text(failure_text(result))
        elif result["verdict"] == "error":
            error = ElementTree.SubElement(
                case, "error", message=xml_text(str(result.get("error", ""))[:MESSAGE],
                                                newlines=False))
            error.text = xml_text(failure_text(result))
    data: bytes = ElementTree.tostring(suite, encoding="utf-8", xml_declaration=True)
    return data
