"""Which processor this is: its name and the feature flags that decide training speed.

Kept apart from :mod:`.train` so that reading them costs no TensorFlow import (the grading
benchmark names the processor in processes that must stay light).
"""

from __future__ import annotations

import platform
from pathlib import Path

# The flags that decide how fast TensorFlow trains here: vector width, bf16 and AMX.
FLAGS_THAT_MATTER = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")


def _cpuinfo_value(keys: tuple[str, ...], cpuinfo: str | None) -> str | None:
    """The value of the first line of a ``/proc/cpuinfo`` text (default: this machine's) whose key
    is one of ``keys`` (every core repeats the same lines); None where there is none."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in keys:
            return value.strip()
    return None


def read_cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags of a ``/proc/cpuinfo`` text (default: this machine's; x86 ``flags``,
    ARM ``Features``); an empty set where there is none (macOS, Windows)."""
    return set((_cpuinfo_value(("flags", "Features"), cpuinfo) or "").split())


def cpu_name(cpuinfo: str | None = None) -> str:
    """``model name`` of /proc/cpuinfo (or of the text given), else what ``platform`` knows."""
    return (_cpuinfo_value(("model name",), cpuinfo)
            or platform.processor() or platform.machine() or "unknown")


def cpu_flags() -> list[str]:
    """The flags of :data:`FLAGS_THAT_MATTER` this CPU has, in that order."""
    have = read_cpu_flags()
    return [flag for flag in FLAGS_THAT_MATTER if flag in have]
