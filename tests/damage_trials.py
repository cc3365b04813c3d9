"""Damage trials: break copies of a real store's ``data.mdb`` and see what ``pinrun fsck`` says.

Each trial copies a pristine store, damages its ``data.mdb`` one way (a bit
flip at a random offset, a page of zeros, or a truncation), runs
``pinrun fsck`` on the copy as a child process, and sorts the outcome:

- **crashed**: fsck died of a signal, timed out, printed a traceback, or
  exited with a code other than 0 or 3;
- **detected**: fsck exited 3 (it found damage);
- **harmless**: fsck exited 0 and, read back in another child process, every
  object and ref of the pristine store is still there, identical, and nothing
  else is;
- **silent**: fsck exited 0 but the store does not read back identical.

The test suite runs a few dozen trials (tests/artifacts/test_damage.py); run
more from the repository root and print the table::

    python -m tests.damage_trials --trials 400 --seed 1
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Final

SRC: Final = Path(__file__).resolve().parents[1] / "src"
OUTCOMES: Final = ("detected", "harmless", "silent", "crashed")
DAMAGES: Final = ("bitflip", "zero-page", "truncate")
PAGE: Final = 4096

#: Reads back everything a store holds and prints one fingerprint line.
_READ_BACK: Final = textwrap.dedent("""
    import hashlib, sys
    from pinrun.artifacts.digest import Digest
    from pinrun.artifacts.store import Store
    expected = [Digest.from_hex(h) for h in open(sys.argv[2]).read().split()]
    out = hashlib.sha256()
    with Store.open(sys.argv[1], readonly=True) as store:
        for digest in expected:
            kind, payload = store.load(digest)
            out.update(digest.raw + kind.value.encode() + payload)
        out.update(b"".join(key for key, _ in store.iter_records()))
        for name, target in store.refs().items():
            out.update(name.encode() + target.raw)
    print(out.hexdigest())
""")

#: The flow the trial store records (written to a module: steps need their source).
_FLOW: Final = textwrap.dedent("""
    import pinrun

    @pinrun.step
    def load(order_id: str) -> dict:
        return {"items": [{"qty": i, "price": i * 1.5, "name": "x" * (i % 40)}
                          for i in range(150)]}

    @pinrun.step
    def price(items: list, ctx: pinrun.Context) -> dict:
        return {"total": sum(i["qty"] * i["price"] for i in items),
                "draw": ctx.random().random(), "at": ctx.now().isoformat()}

    flow = pinrun.Flow("damage-trials", [load, price])
""")

_BUILD: Final = textwrap.dedent("""
    import sys
    from pathlib import Path
    import pinrun
    from pinrun.artifacts.store import Store
    from damage_trial_flow import flow

    runs = int(sys.argv[2])
    with Store.open(Path(sys.argv[1]), create=True) as store:
        for n in range(runs):
            pinrun.record(flow, {"order_id": f"A{n}"}, store=store)
        for n in range(runs * 12):
            store.set_ref(f"tags/t{n}", store.put_value({"n": n, "pad": "y" * (n % 300)}))
        print("\\n".join(key.hex() for key, _ in store.iter_records()))
""")


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(SRC), PYTHONHASHSEED="0")


def build_store(folder: Path, runs: int = 15) -> Path:
    """Record ``runs`` runs and a few hundred tagged values in a new store at ``folder``.

    Writes ``folder.with_suffix('.digests')``: every object digest, for reading back.
    """
    (folder.parent / "damage_trial_flow.py").write_text(_FLOW)
    result = subprocess.run([sys.executable, "-c", _BUILD, str(folder), str(runs)],
                            capture_output=True, text=True, env=_env(), check=False,
                            timeout=300, cwd=folder.parent)
    if result.returncode != 0:
        raise RuntimeError(f"could not build the store:\n{result.stderr}")
    digests = folder.with_suffix(".digests")
    digests.write_text(result.stdout)
    return digests


def read_back(store: Path, digests: Path, timeout: float = 60) -> str | None:
    """The store's fingerprint, read in a child process; ``None`` if it could not be read."""
    try:
        result = subprocess.run([sys.executable, "-c", _READ_BACK, str(store), str(digests)],
                                capture_output=True, text=True, env=_env(), check=False,
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def damage(data_file: Path, how: str, rng: random.Random) -> str:
    """Damage ``data_file`` in place; returns a description of what was done."""
    size = data_file.stat().st_size
    if how == "truncate":
        keep = rng.randrange(0, size)
        os.truncate(data_file, keep)
        return f"truncated to {keep} of {size} bytes"
    with data_file.open("r+b") as f:
        if how == "bitflip":
            offset = rng.randrange(size)
            f.seek(offset)
            byte = f.read(1)[0]
            bit = rng.randrange(8)
            f.seek(offset)
            f.write(bytes([byte ^ (1 << bit)]))
            return f"flipped bit {bit} at offset {offset}"
        page = rng.randrange(size // PAGE)
        f.seek(page * PAGE)
        f.write(bytes(PAGE))
        return f"zeroed page {page}"


@dataclass(frozen=True)
class Trial:
    """One damaged copy and what came of it."""

    damage: str
    outcome: str
    exit_code: int | None
    detail: str


def run_fsck(store: Path, timeout: float = 120) -> tuple[int | None, str]:
    """``pinrun fsck`` on ``store`` in a child process: exit code (None on timeout), output."""
    try:
        result = subprocess.run([sys.executable, "-m", "pinrun", "--store", str(store), "fsck"],
                                capture_output=True, text=True, env=_env(), check=False,
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timed out"
    return result.returncode, result.stdout + result.stderr


def one_trial(pristine: Path, digests: Path, expected: str, work: Path, *, how: str,
              rng: random.Random) -> Trial:
    """Copy, damage, check, classify."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(pristine, work)
    done = damage(work / "data.mdb", how, rng)
    code, output = run_fsck(work)
    if code is None or code < 0 or code not in (0, 3) or "Traceback" in output:
        outcome = "crashed"
    elif code == 3:
        outcome = "detected"
    else:
        outcome = "harmless" if read_back(work, digests) == expected else "silent"
    last = output.strip().splitlines()[-1] if output.strip() else ""
    return Trial(f"{how}: {done}", outcome, code, last)


def run_trials(trials: int, seed: int, workdir: Path, runs: int = 15) -> list[Trial]:
    """Build a store under ``workdir`` and run ``trials`` damage trials on copies of it."""
    pristine = workdir / "pristine"
    digests = build_store(pristine, runs)
    expected = read_back(pristine, digests)
    if expected is None:
        raise RuntimeError("the pristine store does not read back")
    rng = random.Random(seed)
    out = []
    for index in range(trials):
        how = DAMAGES[index % len(DAMAGES)]
        out.append(one_trial(pristine, digests, expected, workdir / "copy", how=how, rng=rng))
    return out


def table(trials: list[Trial]) -> str:
    """The audit's table: trials, detected, harmless, silent, crashed (overall and per damage)."""
    rows: list[tuple[str, ...]] = [("damage", "trials", *OUTCOMES)]
    for how in (*DAMAGES, "all"):
        picked = [t for t in trials if how == "all" or t.damage.startswith(how)]
        counts = Counter(t.outcome for t in picked)
        rows.append((how, str(len(picked)), *(str(counts[o]) for o in OUTCOMES)))
    return "\n".join("  ".join(cell.rjust(9) for cell in row) for row in rows)


def main() -> None:
    """Run trials from the command line and print the table (and every bad outcome)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=15, help="runs recorded in the store")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pinrun-damage-") as tmp:
        trials = run_trials(args.trials, args.seed, Path(tmp), args.runs)
    for trial in trials:
        if trial.outcome in ("silent", "crashed"):
            print(f"{trial.outcome}: {trial.damage} -> exit {trial.exit_code}: {trial.detail}")
    print(table(trials))


if __name__ == "__main__":
    main()
