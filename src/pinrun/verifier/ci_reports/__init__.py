"""Reports of a verification that CI systems render, from the runs' results.

- :mod:`~pinrun.verifier.ci_reports.results`: reading a result (counts, first
  divergence, causes, code diffs and where the code on disk changed);
- :mod:`~pinrun.verifier.ci_reports.junit`: JUnit XML;
- :mod:`~pinrun.verifier.ci_reports.annotations`: GitHub Actions ``::error`` lines;
- :mod:`~pinrun.verifier.ci_reports.markdown`: the Markdown step summary;
- :mod:`~pinrun.verifier.ci_reports.html_report`: one self-contained HTML page;
- :mod:`~pinrun.verifier.ci_reports.shard_file`: the ``--json`` results file, read
  as untrusted data, and the merge of a CI matrix's shards.

Every writer takes the results in any order and lists them by run id, so one
machine's report and the merge of its shards' are the same.
"""

from __future__ import annotations

from pinrun.verifier.ci_reports.annotations import annotation_lines
from pinrun.verifier.ci_reports.html_report import html_report
from pinrun.verifier.ci_reports.junit import junit_xml
from pinrun.verifier.ci_reports.markdown import markdown_summary
from pinrun.verifier.ci_reports.results import Totals, first_problem
from pinrun.verifier.ci_reports.shard_file import (
    ResultsWriter,
    merge,
    read_results_file,
)

__all__ = ["ResultsWriter", "Totals", "annotation_lines", "first_problem",
           "html_report", "junit_xml", "markdown_summary", "merge", "read_results_file"]
