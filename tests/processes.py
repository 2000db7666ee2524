"""The processes under a process, read from /proc (Linux): what the grading tests check is left."""

from __future__ import annotations

import os
from pathlib import Path


def _state_and_parent(pid) -> tuple[str, int] | None:
    """A process's state letter and parent pid from /proc (None once it has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := _state_and_parent(entry.name)):
            state, parent = found
            if state != "Z":  # an ended process its parent has not reaped yet is not running
                children.setdefault(parent, []).append(int(entry.name))
    return children


def descendants(pid: int | None = None) -> dict[int, list[bytes]]:
    """{pid: argv} of every running process under ``pid`` (default: this one)."""
    children, found = _children(), {}
    todo = list(children.get(os.getpid() if pid is None else pid, []))
    while todo:
        child = todo.pop()
        try:
            found[child] = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        todo += children.get(child, [])
    return found


def parent_of(pid: int) -> int | None:
    """The parent's pid (None once ``pid`` has ended)."""
    found = _state_and_parent(pid)
    return found[1] if found else None


def alive(pid: int) -> bool:
    """Running (not ended, not an unreaped zombie)."""
    found = _state_and_parent(pid)
    return found is not None and found[0] not in "ZX"


def working_in(mark: str) -> dict[int, tuple[str, list[bytes]]]:
    """Processes anywhere whose working directory or command line contains ``mark`` (a folder, or
    part of a folder's name): what an interrupted grading must not leave running."""
    found = {}
    for pid, argv in descendants(1).items():
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        if mark in cwd or any(mark.encode() in part for part in argv):
            found[pid] = (cwd, argv[:3])
    return found
