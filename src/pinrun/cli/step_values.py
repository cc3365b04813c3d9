"""What ``pinrun show RUN --values`` (and ``show RUN STEP``) shows of a step: the values.

A step record names its inputs, outputs and context events by digest; this
module loads them and renders each as a Python user reads it, bounded: a long
value is cut with a note, a large one is never decoded (its size and digest
say where to find it), repeated effects collapse, and a traceback keeps its
last lines. Everything rendered is stored data, so every line goes through
:func:`pinrun.safe_text.printable` before it is returned.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from pinrun.engine.call_values import describe_call
from pinrun.safe_text import printable
from pinrun.verifier.value_diff import short

if TYPE_CHECKING:
    from pinrun.artifacts.digest import Digest
    from pinrun.artifacts.store import Store
    from pinrun.engine.context import Event
    from pinrun.engine.records import StepRecord

__all__ = ["TRACEBACK_LINES", "collapsed_names", "step_lines", "step_values",
           "traceback_lines"]

#: A traceback is shown by its last this many lines (the failing frames are last).
TRACEBACK_LINES: Final = 40
#: A value is shown in at most this many characters.
VALUE_WIDTH: Final = 200
#: A stored value larger than this is named by size and digest, never decoded for display.
LARGE_VALUE: Final = 1 << 20
#: Keys of one snapshot shown, and context events of one step listed in --json.
MAX_KEYS: Final = 50
MAX_EVENTS: Final = 1000
#: Calls of one effect in a row shown one by one before the rest are counted.
SHOWN_REPEATS: Final = 3


def traceback_lines(text: str, limit: int = TRACEBACK_LINES) -> list[str]:
    """A recorded traceback as printable lines: its last ``limit``, saying how many were cut."""
    lines = [printable(line) for line in text.rstrip("\n").splitlines()]
    if len(lines) <= limit:
        return lines
    return [f"... ({len(lines) - limit} earlier lines left out)", *lines[-limit:]]


def collapsed_names(names: list[str], limit: int = 3) -> str:
    """Effect names, each once with its count (``fetch x300, fx_rate``), at most ``limit``."""
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    shown = [name if count == 1 else f"{name} x{count}"
             for name, count in list(counts.items())[:limit]]
    if len(counts) > limit:
        shown.append(f"+{len(counts) - limit} more")
    return ", ".join(shown)


def _entry(store: Store, digest: Digest) -> dict[str, Any]:
    """One stored value, rendered: ``value`` (text), or a ``note`` saying why not."""
    from pinrun.artifacts.digest import Kind
    from pinrun.artifacts.trees import bytes_head

    info = store.info(digest)
    found: dict[str, Any] = {"digest": digest.hex, "size": info.raw_size}
    if info.kind is Kind.BLOB or info.kind is Kind.TREE:
        head = bytes_head(store, digest, VALUE_WIDTH)
        if head is not None:  # bytes, stored as a blob or chunks: shown by their start
            size, first = head
            found["size"] = size
            found["value"] = short(first, VALUE_WIDTH)
            if size > len(first) or len(found["value"]) >= VALUE_WIDTH:
                found["note"] = (f"bytes of {size:,} bytes, cut: pinrun cat "
                                 f"{digest.hex[:12]} shows how they are stored")
            return found
    if info.kind is Kind.TREE or info.raw_size > LARGE_VALUE:
        found["value"] = None
        found["note"] = (f"a large value ({info.raw_size:,} bytes stored"
                         f"{' as a tree' if info.kind is Kind.TREE else ''}): "
                         f"pinrun cat {digest.hex[:12]}")
        return found
    value = store.get_value(digest)
    text = short(value, VALUE_WIDTH)
    found["value"] = text
    # A long string or bytes is cut inside its repr, short of the width: said too.
    cut_inside = isinstance(value, str | bytes) and len(text) < len(value) + 2
    if len(text) >= VALUE_WIDTH or cut_inside:
        found["note"] = f"cut: pinrun cat {digest.hex[:12]} shows it whole"
    return found


def _snapshot(store: Store, digest: Digest) -> dict[str, Any]:
    """A snapshot's keys (the first :data:`MAX_KEYS`), each rendered, and how many were left.

    A small value of a paged snapshot has no object of its own: it is named by
    the page that holds it (``digest``, with ``"in_page": true``)."""
    from pinrun.artifacts.trees import Inline, snapshot_pages

    entries: dict[str, Any] = {}
    pages: dict[str, Digest] = {}
    for page, found in snapshot_pages(store, digest):
        entries.update(found)
        if page is not None:
            pages.update(dict.fromkeys(found, page))
    keys = sorted(entries)
    shown = {}
    for key in keys[:MAX_KEYS]:
        entry = entries[key]
        shown[key] = _entry(store, entry) if not isinstance(entry, Inline) else \
            _inline(pages[key], entry.payload)
    return {"digest": digest.hex, "keys_left_out": max(len(keys) - MAX_KEYS, 0),
            "entries": shown}


def _inline(page: Digest, payload: bytes) -> dict[str, Any]:
    """A small value held inside a page of its snapshot, rendered like :func:`_entry`."""
    from pinrun.artifacts import codec

    value = codec.decode(payload)
    found: dict[str, Any] = {"digest": page.hex, "in_page": True, "size": len(payload),
                             "value": short(value, VALUE_WIDTH)}
    if len(found["value"]) >= VALUE_WIDTH:
        found["note"] = f"cut: pinrun cat {page.hex[:12]} shows its page whole"
    return found


def _event(event: Event) -> dict[str, Any]:
    """One context event as JSON-ready text: what was asked and what it answered."""
    if event.kind == "effect":
        name = event.name or "?"
        asked = describe_call(name, event.call, event.arguments)
        if not kept_call_matches(event):
            asked += (" (damaged record: these kept arguments are not the ones the call "
                      "was matched on)")
    else:
        name, asked = event.kind, f"ctx.{event.kind}()"
    value = event.value
    if event.kind == "uuid4" and isinstance(value, bytes) and len(value) == 16:
        value = uuid.UUID(bytes=value)  # what ctx.uuid4() returned, not its entropy
    answer = (f"raised {event.error[0]}: {event.error[1]}" if event.error is not None
              else short(value, VALUE_WIDTH))
    return {"kind": event.kind, "name": name, "call": asked, "arguments": event.arguments,
            "result": answer, "error": list(event.error) if event.error is not None else None}


#: A step's context events larger than this (decompressed) are not read to be shown:
#: a few kilobytes stored may hold millions of events.
EVENTS_SHOWN_LIMIT: Final = 16 * 1024 * 1024


def events_too_large(store: Store, digest: Digest) -> int | None:
    """The decompressed size of a step's events when too large to show, else None."""
    size = store.info(digest).raw_size
    return size if size > EVENTS_SHOWN_LIMIT else None


def kept_call_matches(event: Event) -> bool:
    """Whether an effect's kept arguments encode to the digest its call was matched on
    (a record may not show one call and have replayed another)."""
    from pinrun.engine.events import argument_digest

    call = event.call
    if call is None or "args" not in call or event.arguments is None:
        return True
    try:
        return argument_digest(event.name or "", tuple(call["args"]),
                               call["kwargs"]) == event.arguments
    except Exception:  # arguments that do not even encode: not the ones matched on
        return False


def step_values(store: Store, step: StepRecord) -> dict[str, Any]:
    """What ``show --values --json`` gives for a step: its inputs, outputs and events."""
    from pinrun.engine.context import recorded_events

    values: dict[str, Any] = {
        "inputs": _snapshot(store, step.inputs),
        "outputs": _snapshot(store, step.outputs) if step.outputs is not None else None}
    too_large = events_too_large(store, step.events)
    if too_large is not None:
        return {**values, "events": [], "events_left_out": 0, "calls": {},
                "events_not_read": {"bytes": too_large, "digest": step.events.hex}}
    events = recorded_events(store, step.events)
    calls = Counter(f"{event.name}" if event.kind == "effect" else f"ctx.{event.kind}()"
                    for event in events)
    return {**values, "events": [_event(event) for event in events[:MAX_EVENTS]],
            "events_left_out": max(len(events) - MAX_EVENTS, 0), "calls": dict(calls)}


def _snapshot_lines(title: str, snapshot: dict[str, Any] | None) -> Iterator[str]:
    if snapshot is None:
        yield f"  {title}: nothing (the step failed)"
        return
    if not snapshot["entries"]:
        yield f"  {title}: nothing"
        return
    yield f"  {title}:"
    for key, entry in snapshot["entries"].items():
        shown = entry["value"] if entry["value"] is not None else f"({entry['note']})"
        yield printable(f"    {key} = {shown}")
        if entry["value"] is not None and entry.get("note"):
            yield printable(f"      ({entry['note']})")
    if snapshot["keys_left_out"]:
        yield f"    ... and {snapshot['keys_left_out']} more keys (--json lists the first "\
              f"{MAX_KEYS}; pinrun cat {snapshot['digest'][:12]} has them all)"


def _event_lines(events: list[dict[str, Any]], left_out: int,
                 calls: dict[str, int]) -> Iterator[str]:
    if not events:
        yield "  context: no calls"
        return
    total = sum(calls.values())
    counted = ", ".join(f"{name} x{count}" if count > 1 else name
                        for name, count in calls.items())
    yield printable(f"  context: {total} call{'s' if total != 1 else ''} ({counted})", limit=400)
    index = 0
    while index < len(events):
        event = events[index]
        run = 1  # calls of the same effect in a row collapse after the first few
        while index + run < len(events) and events[index + run]["kind"] == event["kind"] \
                and events[index + run]["name"] == event["name"]:
            run += 1
        if run > SHOWN_REPEATS:
            cut = left_out and index + run == len(events)  # the run goes on past the cut
            yield printable(f"    {event['name']} x{run}{'+' if cut else ''}:")
        for item in events[index:index + min(run, SHOWN_REPEATS)]:
            yield printable(f"    {'  ' if run > SHOWN_REPEATS else ''}{item['call']} -> "
                            f"{item['result']}")
        if run > SHOWN_REPEATS:
            more = run - SHOWN_REPEATS
            yield printable(f"      ... and {more} more call{'s' if more != 1 else ''} of "
                            f"{event['name']} (--json lists each)")
        index += run
    if left_out:
        yield f"    ... and {left_out} more context calls"


def step_lines(label: str, row: dict[str, Any], values: dict[str, Any]) -> list[str]:
    """A step's values as printable text lines, under a heading naming it."""
    seconds = row.get("seconds")
    took = f", {seconds * 1000:.1f} ms" if seconds is not None else ""
    lines = [printable(f"step {label} ({row['status']}{took})")]
    lines += _snapshot_lines("read", values["inputs"])
    lines += _snapshot_lines("returned", values["outputs"]) if row["status"] == "succeeded" \
        else _snapshot_lines("returned", None)
    unread = values.get("events_not_read")
    if unread:
        lines.append(f"  context: {unread['bytes']:,} bytes of events, too many to show here "
                     f"(pinrun cat {unread['digest']})")
    else:
        lines += _event_lines(values["events"], values["events_left_out"], values["calls"])
    error = row.get("error")
    if error:
        lines.append(printable(f"  failed: {error['type']}: {error['message']}"))
        lines += [f"    {line}" for line in traceback_lines(error.get("traceback") or "")]
    return lines


def file_inputs(store: Store, step: StepRecord) -> dict[str, Any] | None:
    """A step's recorded file inputs as JSON-ready data (None: it read none), checked
    (:func:`~pinrun.world.file_inputs.load_inputs`: a crafted one is refused, whole)."""
    from pinrun.world.file_inputs import load_inputs

    if step.files is None:
        return None
    found = load_inputs(store, step.files)
    return {"files": [item.as_value() for item in found.files],
            "listings": [item.as_value() for item in found.listings], "more": found.more}


def file_input_lines(inputs: dict[str, Any] | None) -> list[str]:
    """One line per file a step read or folder it listed, printable."""
    lines: list[str] = []
    if inputs is None:
        return lines
    for item in inputs["files"]:
        digest = item["digest"][:8] if item["digest"] else "absent"
        where = f" (at {item['file']}:{item['line']})" if item["file"] else ""
        lines.append(printable(f"reads {item['path']}  {digest}{where}"))
    for item in inputs["listings"]:
        folder = item["path"] if item["path"].endswith("/") else f"{item['path']}/"
        where = f" (at {item['file']}:{item['line']})" if item["file"] else ""
        count = item["count"]
        found = f"{count} name{'' if count == 1 else 's'}" if item["digest"] else "absent"
        lines.append(printable(f"lists {folder}  {found}{where}"))
    if inputs["more"]:
        lines.append(f"... and {inputs['more']} more files and folders, not recorded")
    return lines
