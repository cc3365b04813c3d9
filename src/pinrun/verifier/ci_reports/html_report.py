"""The HTML report (``--html FILE``): one self-contained page, readable without a server.

Verdict counts, every run's verdict and time, and for each run that did not
reproduce: its first divergence, the state diff, the causes, the source diff
when the code drifted, and the whole explanation. Styles are inline; nothing
is fetched; the page reads the same without JavaScript (a few lines of it add a
filter box). Every stored string is HTML-escaped, and the page's
Content-Security-Policy lets only its own script run, so a run id or message
holding ``<script>`` shows as text, and would not run even if it were not.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from pinrun.safe_text import printable
from pinrun.verifier.ci_reports.results import (
    Result,
    Totals,
    code_diffs,
    failing,
    first_step,
    ordered,
    seconds,
)

__all__ = ["html_report"]

#: A diff or explanation shown in the page is cut to this many characters.
TEXT = 256 * 1024

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;
color:#1f2328;background:#fff}
h1{font-size:1.6em}h2{font-size:1.3em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
.counts{display:flex;gap:1em;flex-wrap:wrap;padding:0;list-style:none}
.counts li{border:1px solid #d0d7de;border-radius:6px;padding:.5em 1em}
.counts b{display:block;font-size:1.6em}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #d0d7de;padding:.3em .5em;
text-align:left;vertical-align:top;overflow-wrap:anywhere}
.reproduced{color:#1a7f37}.diverged,.error{color:#cf222e;font-weight:600}
pre{background:#f6f8fa;padding:.6em;overflow-x:auto;white-space:pre-wrap;
overflow-wrap:anywhere}
.add{color:#1a7f37;background:#e6ffec}
.del{color:#cf222e;background:#ffebe9}
.hunk{color:#8250df}
section.run{border:1px solid #d0d7de;border-radius:6px;padding:0 1em 1em;margin:1em 0}
code{overflow-wrap:anywhere}
"""

# Optional: a filter box over the table of runs. The page is whole without it.
_SCRIPT = """
document.documentElement.setAttribute("data-script", "ran");
var box = document.getElementById("filter");
box.hidden = false;
box.addEventListener("input", function () {
  var wanted = box.value.toLowerCase();
  document.querySelectorAll("#runs tbody tr").forEach(function (row) {
    row.hidden = wanted && row.textContent.toLowerCase().indexOf(wanted) < 0;
  });
});
"""


def _text(value: object, *, limit: int | None = 2000, newlines: bool = False) -> str:
    """Stored text as HTML text: control characters escaped, then HTML-escaped."""
    return escape(printable(value, limit=limit, newlines=newlines))


def _cut(text: str) -> str:
    return text if len(text) <= TEXT else text[:TEXT] + f"\n... ({len(text) - TEXT} cut)"


def _diff(diff: str) -> str:
    """A unified diff in a <pre>, its lines colored by kind (no script needed)."""
    lines = []
    for line in _cut(printable(diff, newlines=True)).splitlines():
        kind = ("hunk" if line.startswith("@@") else
                "add" if line.startswith("+") and not line.startswith("+++") else
                "del" if line.startswith("-") and not line.startswith("---") else "")
        body = escape(line)
        lines.append(f'<span class="{kind}">{body}</span>' if kind else body)
    return "<pre>" + "\n".join(lines) + "</pre>"


def _changes(step: Mapping[str, Any]) -> str:
    changes = step.get("changes") or []
    if not changes:
        return ""
    rows = []
    for change in changes:
        detail = "".join(f"<br>{_text(line)}" for line in change.get("detail") or [])
        rows.append(f"<tr><td><code>{_text(change['path'])}</code></td>"
                    f"<td>{_text(change['kind'])}</td>"
                    f"<td><code>{_text(change.get('recorded') or '')}</code></td>"
                    f"<td><code>{_text(change.get('replayed') or '')}</code>{detail}</td></tr>")
    more = step.get("changes_left_out") or 0
    left = f"<p>... and {int(more)} more changes</p>" if more else ""
    return ("<h4>State diff</h4><table><thead><tr><th>path</th><th>change</th>"
            "<th>recorded</th><th>replayed</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>" + left)


def _causes(causes: Sequence[Mapping[str, Any]]) -> str:
    if not causes:
        return ""
    items = []
    for cause in causes:
        place = ""
        if cause.get("file"):
            line = cause.get("line")
            place = f" <code>{_text(cause['file'])}{'' if line is None else f':{int(line)}'}</code>"
        items.append(f"<li><b>{_text(cause['kind'])}</b>: {_text(cause['message'])}{place}</li>")
    return "<h4>Causes</h4><ul>" + "".join(items) + "</ul>"


def _run_section(result: Result, anchor: str) -> str:
    parts = [f'<section class="run" id="{anchor}"><h3><code>{_text(result["run"])}</code> '
             f'({_text(result.get("flow") or "-")}): '
             f'<span class="{escape(result["verdict"])}">{escape(result["verdict"])}</span>'
             "</h3>"]
    if result.get("error"):
        parts.append(f"<p>Could not replay: {_text(result['error'], limit=None)}</p>")
    step = first_step(result)
    if step is not None:
        parts.append(f"<p>First divergence: step <code>{_text(step['name'])}</code> "
                     f"({_text(step.get('divergence') or '-')})</p>")
        if step.get("message"):
            parts.append(f"<p>{_text(step['message'], limit=None)}</p>")
        parts.append(_changes(step))
    parts.append(_causes([*(step["causes"] if step is not None else []),
                          *(result.get("causes") or [])]))
    for name, diff in code_diffs(result):
        parts.append(f"<h4>Source diff of step <code>{_text(name)}</code> "
                     "(pinned &rarr; disk)</h4>" + _diff(diff))
    if result.get("explanation"):
        parts.append("<details><summary>Full explanation</summary><pre>"
                     f"{escape(_cut(printable(result['explanation'], newlines=True)))}"
                     "</pre></details>")
    parts.append("</section>")
    return "".join(parts)


def html_report(results: Sequence[Result], totals: Totals, *,
                title: str = "pinrun verify") -> str:
    """The whole page as text."""
    runs = ordered(results)
    bad = failing(runs)
    anchors = {id(result): f"run-{index}" for index, result in enumerate(bad, 1)}
    script_hash = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    counts = [("selected", totals.selected), ("reproduced", totals.reproduced),
              ("diverged", totals.diverged), ("could not replay", totals.error),
              ("not run", totals.skipped)]
    rows = []
    for result in runs:
        anchor = anchors.get(id(result))
        run = f"<code>{_text(result['run'])}</code>"
        if anchor:
            run = f'<a href="#{anchor}">{run}</a>'
        verdict = escape(result["verdict"])
        rows.append(f'<tr><td>{run}</td><td>{_text(result.get("flow") or "-")}</td>'
                    f'<td class="{verdict}">{verdict}</td>'
                    f"<td>{seconds(result):.3f}</td></tr>")
    page = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        # Only this page's own style and script: nothing fetched, nothing injected runs.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        f"style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'\">",
        f"<title>{_text(title)}: {totals.verified - totals.reproduced} of "
        f"{totals.verified} runs did not reproduce</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{_text(title)}</h1>",
        f'<p id="verdict">{escape(totals.line())}</p>',
        '<ul class="counts">' + "".join(
            f'<li id="count-{name.replace(" ", "-")}"><b>{count}</b>{name}</li>'
            for name, count in counts) + "</ul>",
    ]
    if bad:
        page.append(f"<h2>Runs that did not reproduce ({len(bad)})</h2>")
        page += [_run_section(result, anchors[id(result)]) for result in bad]
    page += [
        f"<h2>All runs ({len(runs)})</h2>",
        '<input id="filter" type="search" placeholder="filter runs" hidden>',
        '<table id="runs"><thead><tr><th>run</th><th>flow</th><th>verdict</th>'
        "<th>seconds</th></tr></thead><tbody>", *rows, "</tbody></table>",
        f"<script>{_SCRIPT}</script></body></html>\n",
    ]
    return "\n".join(page)
