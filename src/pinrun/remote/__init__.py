"""Sharing runs through a remote: S3-compatible object stores or a shared folder.

Production workers push the runs they record; CI and laptops pull the runs
they replay. Packs carry records, index entries publish runs, signatures say
who published them. See :mod:`pinrun.remote.transfer` for push and pull,
:mod:`pinrun.remote.index` for the remote's layout, and
:mod:`pinrun.remote.origin` for what a pulled run may execute.
"""

from pinrun.remote.index import Catalog, RemoteRun
from pinrun.remote.keys import PublicKey, SigningKey
from pinrun.remote.origin import check_trusted
from pinrun.remote.remotes import Remote, RemoteSettings, open_remote
from pinrun.remote.transfer import PullReport, PushReport, pull_runs, push_runs

__all__ = ["Catalog", "PublicKey", "PullReport", "PushReport", "Remote", "RemoteRun",
           "RemoteSettings", "SigningKey", "check_trusted", "open_remote", "pull_runs",
           "push_runs"]
