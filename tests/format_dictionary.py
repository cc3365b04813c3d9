"""Writes ``src/pinrun/artifacts/_format_dictionary.py``: pinrun's own zstd dictionary.

``python -m tests.format_dictionary`` records runs of generated flows (step names and
state keys drawn from the NATO alphabet, values made from the inputs, some steps asking
the context for the time, a uuid or an effect) into a throw-away store, then trains a
2 KiB zstd dictionary on the small records pinrun itself defines there: trees, run
records, steps, flows and environments. What it learns is pinrun's formats (their keys,
``{"$digest":"``, and the statistics of hexadecimal digests), nothing of any one project:
a store that has not trained its own dictionary compresses its small records with it
(see :func:`pinrun.artifacts.dictionary.format_dictionary`).

Recorded runs carry times and run ids, so each run of this script writes another
dictionary. That is harmless: a record names its dictionary by digest and the store
keeps that dictionary's blob, so records written with an earlier one stay readable.
Regenerate only with a reason (measure the bytes and instructions of a recorded run).
"""

from __future__ import annotations

import base64
import importlib
import random
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import zstandard

MODULE = Path(__file__).resolve().parents[1] / "src" / "pinrun" / "artifacts" / \
    "_format_dictionary.py"
#: The dictionary's size: measured on the recording benchmark's runs, 2 KiB stored fewer
#: bytes a run than 1 KiB (whose content holds too little) or 4 and 8 KiB.
SIZE = 2048
#: zstd's own id for it (records do not write it: they name the dictionary by digest).
DICT_ID = 0x70696E72  # "pinr"
_KINDS = frozenset({"tree", "run", "step", "flow", "env"})

_WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
          "juliett", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
          "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu"]
# Step bodies: (the return statement, whether it takes the context).
_BODIES = [
    ('return {{"{out}": [{{"id": n, "name": f"{{{arg}}}-{{n}}", '
     '"weight": round(n * 1.25 + len(str({arg})), 2)}} for n in range(3)]}}', False),
    ('return {{"{out}": len(str({arg})) * 3 + 1}}', False),
    ('return {{"{out}": {{"label": str({arg})[:12], "ok": True, '
     '"count": len(str({arg}))}}}}', False),
    ('return {{"{out}": round(len(str({arg})) / 7, 4)}}', False),
    ('return {{"{out}": f"{{{arg}}} at {{ctx.now().isoformat()}}"}}', True),
    ('return {{"{out}": str(ctx.uuid4())}}', True),
    ('return {{"{out}": ctx.effect("lookup", _lookup, str({arg}))}}', True),
    ('return {{"{out}": sorted(str({arg}))[:8]}}', False),
]
_FLOWS = 12
_RUNS = 25


def _flows_module(rng: random.Random) -> str:
    """The source of a module of ``_FLOWS`` generated flows (``flow_N``, ``input_N``)."""
    lines = ["import pinrun", "", "def _lookup(key):",
             "    return {'key': key, 'rate': len(key) / 3}", ""]
    for f in range(_FLOWS):
        keys = ["input_" + rng.choice(_WORDS)]
        names = []
        for s in range(rng.choice([2, 3, 4, 5, 6, 8, 10])):
            name = f"{rng.choice(_WORDS)}_{rng.choice(_WORDS)}_{f}_{s}"
            out, arg = f"{rng.choice(_WORDS)}_{s}", rng.choice(keys)
            body, ctx = rng.choice(_BODIES)
            lines += ["@pinrun.step", f"def {name}({arg}{', ctx' if ctx else ''}):",
                      "    " + body.format(out=out, arg=arg), ""]
            names.append(name)
            keys.append(out)
        lines += [f"flow_{f} = pinrun.Flow('{rng.choice(_WORDS)}-{f}', [{', '.join(names)}], "
                  "on_collision='overwrite')", f"input_{f} = {keys[0]!r}", ""]
    return "\n".join(lines)


def samples(seed: int = 7) -> list[bytes]:
    """The payloads of pinrun's own small records after recording the generated flows."""
    import pinrun
    from pinrun.artifacts.digest import Digest

    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "generated_flows.py").write_text(_flows_module(rng))
        sys.path.insert(0, str(root))
        try:
            module = importlib.import_module("generated_flows")
            with warnings.catch_warnings(), \
                    pinrun.open_store(root / ".pinrun", create=True, durable=False) as store:
                warnings.simplefilter("ignore")
                for f in range(_FLOWS):
                    flow, key = getattr(module, f"flow_{f}"), getattr(module, f"input_{f}")
                    for r in range(_RUNS):
                        value = rng.choice([f"{rng.choice(_WORDS)}-{r}", r * 17, [r, r + 1]])
                        pinrun.record(flow, {key: value}, store=store, project_root=root,
                                      durability=rng.choice(["none", "run", "step"]))
                out = []
                for key, _ in store.iter_records():
                    if len(key) == 32:
                        kind, payload = store.load(Digest(bytes(key)))
                        if kind.value in _KINDS and 64 <= len(payload) <= 16 * 1024:
                            out.append(payload)
                return out
        finally:
            sys.path.remove(str(root))
            sys.modules.pop("generated_flows", None)


def main() -> None:
    """Train the dictionary and write the module."""
    data = zstandard.train_dictionary(SIZE, list(samples()), dict_id=DICT_ID, level=3).as_bytes()
    text = base64.b64encode(data).decode()
    lines = textwrap.wrap(text, 88)
    MODULE.write_text(
        "# Generated by tests/format_dictionary.py (python -m tests.format_dictionary): "
        "do not edit.\n"
        '"""pinrun\'s own zstd dictionary (base64), trained on the small records of\n'
        "generated flows: see :func:`pinrun.artifacts.dictionary.format_dictionary`.\"\"\"\n\n"
        "DATA = (\n" + "".join(f'    "{line}"\n' for line in lines) + ")\n")
    print(f"wrote {MODULE} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
