"""Reports CI renders, from a real verify in a throw-away project: JUnit times and code
diffs, the Markdown summary, GitHub annotations at the changed line, the HTML report
in a real headless Chromium, and shards merged into the report one machine gives."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import pytest

from pinrun.artifacts.store import Store
from pinrun.engine.run import record
from tests.helpers import SRC, Project

pytestmark = pytest.mark.slow

FLOWS = """\
import pinrun


@pinrun.step
def double(n: int) -> dict:
    return {"doubled": n * 2}


@pinrun.step
def name(doubled: int) -> dict:
    return {"label": f"order-{doubled}"}


orders = pinrun.Flow("orders", [double, name])


@pinrun.step
def price(n: int) -> dict:
    total = n * 10
    return {"price": total}


pricing = pinrun.Flow("pricing", [price])
"""
#: The line of ``total = n * 10``, which the test changes on disk.
CHANGED_LINE = FLOWS.splitlines().index("    total = n * 10") + 1
HOSTILE = "<script>document.documentElement.setAttribute('data-pwned','1')</script>"
ORDERS = 12
PRICING = 3


def pinrun_cli(root: Path, *args: str, env: dict[str, str] | None = None,
               ) -> subprocess.CompletedProcess[str]:
    """``python -m pinrun ARGS`` in ``root``, outside any CI unless ``env`` says so."""
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("PINRUN_STORE", "GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY")}
    environment["PYTHONPATH"] = os.pathsep.join([str(SRC), str(root)])
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "pinrun", *args], cwd=root, env=environment,
                          capture_output=True, text=True, timeout=180, check=False)


@dataclass
class Verified:
    """A project whose pricing runs drifted, verified once with every report."""

    project: Project
    out: Path
    done: subprocess.CompletedProcess[str]
    orders: list[str]
    pricing: list[str]


@pytest.fixture(scope="module")
def verified(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Verified]:
    """12 runs that reproduce and 3 whose step's code changed on disk since, verified with
    --junit-xml, --summary and --html, as on GitHub Actions."""
    base = tmp_path_factory.mktemp("reports")
    project = Project(base / "project", "proj_ci_reports")
    try:
        project.write("flows", FLOWS)
        with Store.open(project.root / ".pinrun", create=True, durable=False) as store:
            orders = [record(project.load("flows", "orders"), {"n": n}, store=store,
                             durability="none").id for n in range(ORDERS)]
            pricing = [record(project.load("flows", "pricing"), {"n": n}, store=store,
                              durability="none").id for n in range(1, PRICING + 1)]
        project.edit("flows", "    total = n * 10",
                     f"    total = n * 11  # {HOSTILE} ``` | `tick`")
        out = base / "out"
        out.mkdir()
        step_summary = out / "step_summary.md"
        step_summary.write_text("earlier step output\n")
        done = pinrun_cli(project.root, "verify", "--junit-xml", str(out / "one.xml"),
                          "--summary", str(out / "summary.md"), "--html", str(out / "one.html"),
                          "--json", str(out / "all.json"),
                          env={"GITHUB_ACTIONS": "true",
                               "GITHUB_STEP_SUMMARY": str(step_summary)})
        yield Verified(project, out, done, orders, pricing)
    finally:
        project.close()


def test_junit_has_times_and_the_code_diff(verified: Verified) -> None:
    """Each test case and the suite carry a time; a code drift's failure holds the diff."""
    assert verified.done.returncode == 1, verified.done.stderr
    suite = ElementTree.parse(verified.out / "one.xml").getroot()
    cases = list(suite.iter("testcase"))
    assert len(cases) == ORDERS + PRICING
    times = [float(case.get("time") or "nan") for case in cases]
    assert all(time > 0 for time in times)
    assert float(suite.get("time") or "nan") == pytest.approx(sum(times), abs=0.01)
    assert [case.get("name") for case in cases] == sorted([*verified.orders,
                                                            *verified.pricing])
    failure = next(case for case in cases if case.get("name") == verified.pricing[0]
                   ).find("failure")
    assert failure is not None
    text = failure.text or ""
    assert "code diff of step 'price' (pinned -> disk):" in text
    assert "-    total = n * 10\n" in text
    assert "+    total = n * 11  # <script>" in text


def test_annotations_point_at_the_changed_line(verified: Verified) -> None:
    """On GitHub Actions a code drift's ::error names the workdir file and changed line."""
    annotations = [line for line in verified.done.stdout.splitlines()
                   if line.startswith("::error")]
    assert len(annotations) == PRICING
    where = f"::error file={verified.project.package}/flows.py,line={CHANGED_LINE}::"
    assert all(line.startswith(where) for line in annotations), annotations
    assert "code drift" in annotations[0]


def test_markdown_summary_is_written_and_appended(verified: Verified) -> None:
    """--summary writes the Markdown; $GITHUB_STEP_SUMMARY gets it appended after what was
    there; stored text cannot break the table or the fences."""
    summary = (verified.out / "summary.md").read_text()
    assert "## pinrun verify: 3 of 15 runs did not reproduce" in summary
    assert "| 15 | 12 | 3 | 0 | 0 |" in summary
    rows = [line for line in summary.splitlines() if line.startswith("| 2")]
    assert len(rows) == PRICING
    assert all(row.count(" | ") == 4 for row in rows)
    assert "code drift" in rows[0]
    assert summary.count("<details>") == PRICING == summary.count("</details>")
    # The diff holds ``` and | : its fence is longer, and nothing in it is HTML.
    assert "````diff\n" in summary
    assert HOSTILE not in summary.split("````diff")[0]
    appended = (verified.out / "step_summary.md").read_text()
    assert appended == "earlier step output\n" + summary


def chromium_dom(page: Path, profile: Path) -> str:
    """What headless Chromium shows of ``page``: its DOM after the page's script ran."""
    binary = shutil.which("chromium")
    assert binary is not None, "install Debian's chromium: apt-get install chromium"
    done = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_html_report_in_headless_chromium(verified: Verified, tmp_path: Path) -> None:
    """Chromium shows the counts, every run, the failed runs' divergence, causes and source
    diff; the page's own script ran; the stored <script> is text, never run."""
    page = verified.out / "one.html"
    source = page.read_text()
    assert "http://" not in source
    assert "https://" not in source
    dom = chromium_dom(page, tmp_path / "profile")
    assert 'data-script="ran"' in dom  # the page's script ran without an error before
    assert "data-pwned" not in dom.split("<body")[0]
    assert 'id="count-diverged"><b>3</b>diverged' in dom
    assert "verified 15 runs: 12 reproduced, 3 diverged, 0 could not replay" in dom
    for run in [*verified.orders, *verified.pricing]:
        assert run in dom
    assert dom.count('<section class="run"') == PRICING
    assert "First divergence: step <code>price</code>" in dom
    assert "<b>code drift</b>" in dom
    assert '<span class="add">+    total = n * 11  # &lt;script&gt;' in dom
    assert '<span class="del">-    total = n * 10</span>' in dom
    assert "<td><code>price</code></td><td>changed</td>" in dom  # the state diff


def _cases(path: Path) -> list[str]:
    """A JUnit file's test cases, each as XML without its time (which it must have)."""
    cases = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        assert float(case.attrib.pop("time")) >= 0
        cases.append(ElementTree.tostring(case, encoding="unicode"))
    return cases


def test_shards_merge_into_one_machines_report(verified: Verified) -> None:
    """Three shards verified apart, merged: the same JUnit cases, summary and exit code as
    one machine's verify of every run."""
    root, out = verified.project.root, verified.out
    shards = []
    for index in (1, 2, 3):
        shard = out / f"shard-{index}.json"
        # A shard may hold no run (ids are random): as in a CI matrix, that one passes.
        done = pinrun_cli(root, "verify", "--shard", f"{index}/3", "--allow-empty", "--json",
                          str(shard))
        assert done.returncode in (0, 1), done.stderr
        shards.append(shard)
    merged = pinrun_cli(root, "report", "merge", *map(str, shards),
                        "--junit-xml", str(out / "merged.xml"),
                        "--summary", str(out / "merged.md"), "--html", str(out / "merged.html"),
                        "--json", str(out / "merged.json"))
    assert merged.returncode == verified.done.returncode == 1, merged.stderr
    assert _cases(out / "merged.xml") == _cases(out / "one.xml")
    one, many = (ElementTree.parse(out / name).getroot() for name in ("one.xml", "merged.xml"))
    assert [one.get(key) for key in ("tests", "failures", "errors")] == \
        [many.get(key) for key in ("tests", "failures", "errors")]
    assert (out / "merged.md").read_text() == (out / "summary.md").read_text()
    untimed = re.compile(r"<td>\d+\.\d{3}</td>")
    assert untimed.sub("", (out / "merged.html").read_text()) == \
        untimed.sub("", (out / "one.html").read_text())
    assert "verified 15 runs: 12 reproduced, 3 diverged" in merged.stdout
    whole = json.loads((out / "merged.json").read_text())
    assert (whole["shard"], whole["selected"], len(whole["results"])) == (None, 15, 15)


def _write(path: Path, value: object) -> str:
    path.write_text(json.dumps(value) if not isinstance(value, str) else value)
    return str(path)


def test_merge_refuses_files_that_are_not_one_verifications_shards(
        verified: Verified, tmp_path: Path) -> None:
    """Junk, old-format, mistyped and oversized files, a shard missing or given twice, other
    splits or selections, a run in two shards: exit 2 naming what is wrong, no traceback."""
    root = verified.project.root
    if not (verified.out / "shard-1.json").exists():
        for index in (1, 2, 3):
            pinrun_cli(root, "verify", "--shard", f"{index}/3", "--allow-empty", "--json",
                       str(verified.out / f"shard-{index}.json"))
    shard = [json.loads((verified.out / f"shard-{i}.json").read_text()) for i in (1, 2, 3)]
    files = [str(verified.out / f"shard-{i}.json") for i in (1, 2, 3)]
    two = {**shard[1], "shard": {"index": 2, "count": 2}}
    other = {**shard[1], "selection": {**shard[1]["selection"], "flow": "pricing"}}
    # Runs fall into shards by their ids, so any one shard may be empty: take a result from
    # one that has some (``source``) and move it into the next (``target``).
    source = next(index for index in range(3) if shard[index]["results"])
    target = (source + 1) % 3
    taken = shard[source]["results"][0]
    moved = {**shard[target], "results": [*shard[target]["results"], taken],
             "selected": shard[target]["selected"] + 1}
    mistyped = {**shard[source], "results": [{**taken, "seconds": "soon"}]}

    def instead(index: int, path: str) -> list[str]:
        return [path if at == index else name for at, name in enumerate(files)]

    big = tmp_path / "big.json"
    with big.open("wb") as handle:  # sparse: the size is refused without reading it
        handle.truncate(512 * 1024 * 1024 + 1)
    cases = [
        ([_write(tmp_path / "junk.json", "{not json")], "not JSON"),
        ([_write(tmp_path / "list.json", [])], "format 1"),
        ([_write(tmp_path / "nan.json", '{"format": 1, "seconds": NaN}')], "NaN"),
        ([_write(tmp_path / "deep.json", "[" * 100_000 + "]" * 100_000)], "not JSON"),
        ([str(big)], "larger than 512 MiB"),
        ([str(tmp_path / "absent.json")], "cannot be read"),
        (instead(source, _write(tmp_path / "typed.json", mistyped)),
         "results[0].seconds should be a number"),
        (files[:2], "shard 3/3 missing"),
        ([*files, files[0]], "shard 1/3 is given twice"),
        ([files[0], _write(tmp_path / "two.json", two), files[2]], "different splits"),
        ([files[0], _write(tmp_path / "other.json", other), files[2]],
         "verified another selection"),
        (instead(target, _write(tmp_path / "moved.json", moved)), f"run {taken['run']} is in"),
    ]
    for arguments, expected in cases:
        done = pinrun_cli(root, "report", "merge", *arguments)
        assert done.returncode == 2, (expected, done.stdout, done.stderr)
        assert expected in " ".join(done.stderr.split()), (expected, done.stderr)
        assert "Traceback" not in done.stderr


def _result(run: str, verdict: str, **fields: object) -> dict[str, object]:
    return {"run": run, "flow": "f", "verdict": verdict, "seconds": 0.5, **fields}


def _results_file(path: Path, *results: dict[str, object], selected: int | None = None) -> str:
    return _write(path, {"format": 1, "shard": None, "selection": {}, "code": "workdir",
                         "selected": len(results) if selected is None else selected,
                         "results": list(results)})


def test_merge_exit_codes_and_hostile_text_in_chromium(verified: Verified,
                                                        tmp_path: Path) -> None:
    """A merge exits 0 when all reproduced, 1 when one was not run, 3 on a store error; a
    crafted run id and message holding <script> are shown as text by Chromium, never run."""
    root = verified.project.root
    good = _results_file(tmp_path / "good.json", _result("a", "reproduced"))
    assert pinrun_cli(root, "report", "merge", good).returncode == 0
    short = _results_file(tmp_path / "short.json", _result("a", "reproduced"), selected=2)
    assert pinrun_cli(root, "report", "merge", short).returncode == 1
    broken = _results_file(tmp_path / "broken.json", _result(
        "b", "error", error="object 1f2e... is missing", store_error=True))
    assert pinrun_cli(root, "report", "merge", broken).returncode == 3
    hostile = _results_file(tmp_path / "hostile.json", _result(
        HOSTILE, "diverged", explanation=HOSTILE, steps=[{
            "name": "<img src=x onerror=alert(1)>", "status": "diverged",
            "divergence": "outputs", "message": HOSTILE,
            "changes": [{"path": "x", "kind": "changed", "recorded": HOSTILE,
                         "replayed": "</code></td>", "detail": [HOSTILE]}],
            "causes": [{"kind": "code drift", "message": HOSTILE, "file": None,
                        "line": None, "detail": f"+++ disk/a.py\n@@ -1 +1 @@\n+{HOSTILE}\n"}],
        }]))
    page = tmp_path / "hostile.html"
    done = pinrun_cli(root, "report", "merge", hostile, "--html", str(page),
                      "--summary", str(tmp_path / "hostile.md"))
    assert done.returncode == 1, done.stderr
    dom = chromium_dom(page, tmp_path / "profile")
    assert 'data-script="ran"' in dom
    assert "data-pwned" not in dom.split("<body")[0]
    assert "&lt;script&gt;document.documentElement.setAttribute" in dom
    assert "<img" not in dom
    summary = (tmp_path / "hostile.md").read_text()
    assert "<script>" not in summary.replace(f"\n+{HOSTILE}\n", "").replace(
        f"\n{HOSTILE}\n", "")  # only inside code fences
