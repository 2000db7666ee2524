"""The sandbox's shared limits (cgroups) really apply, or the grader says that they do not.

cgroup v2 and v1 are tried against fake trees in a temporary folder (the cgroup root and the text
of /proc/self/cgroup are parameters of :class:`Cgroups`); the fake v2 kernel below refuses what
the real one refuses (controllers not enabled by the parent, the "no internal processes" rule).
One test makes real cgroups where this machine lets it (root, a writable memory hierarchy).
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from unet_grader import sandbox
from unet_grader.sandbox import Cgroups, Limits

LIMITS = Limits(memory_mb=100, processes=7)
MEMORY = str(100 * 2**20)
NAME = "unet-grading-test"


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch, caplog):
    """Each test is a new grading process: the stderr notice has not been given yet."""
    monkeypatch.setattr(Cgroups, "_stderr_told", False)
    caplog.set_level(logging.INFO, logger="unet_grader.sandbox")


def read(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


class FakeCgroup2(Cgroups):
    """cgroup v2 on plain files, refusing what the kernel refuses."""

    def _write_file(self, path: Path, value: str) -> None:
        cgroup = path.parent
        if path.name == "cgroup.subtree_control":
            requested = {word.lstrip("+") for word in value.split()}
            if not requested <= set(read(cgroup / "cgroup.controllers").split()):
                raise OSError(errno.EINVAL, "Invalid argument")
            if cgroup != self.root and read(cgroup / "cgroup.procs").split():
                raise OSError(errno.EBUSY, "Device or resource busy")  # no internal processes
            path.write_text(" ".join(sorted(set(read(path).split()) | requested)))
        elif path.name == "cgroup.procs":  # a process is in one cgroup at a time
            for procs in self.root.rglob("cgroup.procs"):
                procs.write_text("".join(f"{pid}\n" for pid in read(procs).split() if pid != value))
            path.write_text(read(path) + f"{value}\n")
        elif path.name.split(".")[0] not in read(cgroup.parent / "cgroup.subtree_control").split():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
        else:
            path.write_text(value)


def v2_tree(tmp_path: Path, processes: str = "", controllers: str = "cpu io memory pids") -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    parent = root / "grading.service"
    parent.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu io memory pids\n")
    (parent / "cgroup.controllers").write_text(controllers + "\n")
    (parent / "cgroup.subtree_control").write_text("")
    (parent / "cgroup.procs").write_text(processes)
    return root, parent


def test_v2_enables_the_controllers_and_writes_the_limits(tmp_path, caplog, capsys):
    root, parent = v2_tree(tmp_path)
    cgroups = FakeCgroup2(NAME, LIMITS, root=root, self_cgroup="0::/grading.service\n")
    assert set(read(parent / "cgroup.subtree_control").split()) == {"memory", "pids"}
    child = parent / NAME
    assert cgroups.paths == [child]
    assert read(child / "memory.max") == MEMORY
    assert read(child / "memory.swap.max") == "0"
    assert read(child / "pids.max") == "7"
    assert cgroups.failures == []
    assert not (parent / Cgroups.LEAF).exists()  # nothing to move: the parent had no processes
    line = cgroups.describe()
    assert "memory 100 MiB (cgroup v2 memory)" in line and "tasks 7 (cgroup v2 pids)" in line
    assert "per process (prlimit)" in line and "NOT applied" not in line
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.INFO, f"{NAME}: {line}")]
    assert capsys.readouterr().err == ""


def test_v2_busy_parent_moves_its_processes_into_a_leaf(tmp_path):
    """No internal processes: the grader's cgroup holds processes, so they move to a leaf child
    first; a later kernel of a grader already in the leaf makes its cgroup beside it, not in it."""
    root, parent = v2_tree(tmp_path, processes="101\n102\n")
    cgroups = FakeCgroup2(NAME, LIMITS, root=root, self_cgroup="0::/grading.service\n")
    leaf = parent / Cgroups.LEAF
    assert read(parent / "cgroup.procs").split() == []
    assert read(leaf / "cgroup.procs").split() == ["101", "102"]
    assert set(read(parent / "cgroup.subtree_control").split()) == {"memory", "pids"}
    assert read(parent / NAME / "memory.max") == MEMORY and read(parent / NAME / "pids.max") == "7"
    assert cgroups.failures == []

    later = FakeCgroup2(NAME + "-2", LIMITS, root=root, self_cgroup=f"0::/grading.service/{Cgroups.LEAF}\n")
    assert later.paths == [parent / (NAME + "-2")] and later.failures == []
    assert not (leaf / (NAME + "-2")).exists()


@pytest.mark.parametrize("blocked", ["directory", "read-only"])
def test_v2_subtree_control_not_writable_is_reported(tmp_path, caplog, capsys, blocked):
    root, parent = v2_tree(tmp_path)
    control = parent / "cgroup.subtree_control"
    cls = Cgroups
    if blocked == "directory":
        control.unlink()
        control.mkdir()
    else:  # what a grader that is not root meets (root ignores file modes, so the fake refuses)
        class ReadOnly(FakeCgroup2):
            def _write_file(self, path, value):
                if path == control:
                    raise PermissionError(errno.EACCES, "Permission denied", str(path))
                super()._write_file(path, value)
        cls = ReadOnly
    cgroups = cls(NAME, LIMITS, root=root, self_cgroup="0::/grading.service\n")
    assert cgroups.in_force == {}
    assert [f.split(" (")[0] for f in cgroups.failures] == ["memory limit NOT applied", "swap limit NOT applied",
                                                           "tasks limit NOT applied"]
    assert all(str(control) in f for f in cgroups.failures)
    assert not (parent / NAME).exists() and cgroups.wrap(["true"]) == ["true"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "memory limit NOT applied" in warnings[0] and "tasks limit NOT applied" in warnings[0]
    err = capsys.readouterr().err
    assert err.count("WARNING") == 1 and "memory limit NOT applied" in err and "prlimit" in err


def test_v2_controller_not_delegated_is_reported(tmp_path, caplog):
    root, parent = v2_tree(tmp_path, controllers="cpu memory")
    cgroups = FakeCgroup2(NAME, LIMITS, root=root, self_cgroup="0::/grading.service\n")
    assert read(parent / NAME / "memory.max") == MEMORY  # what can be applied still is
    assert not (parent / NAME / "pids.max").exists()
    assert set(cgroups.in_force) == {"memory", "swap"}
    [failure] = cgroups.failures
    assert failure.startswith("tasks limit NOT applied") and "no pids controller: not delegated" in failure
    assert any(r.levelno == logging.WARNING and "tasks limit NOT applied" in r.getMessage() for r in caplog.records)


def test_the_stderr_notice_comes_once_per_grading_process_the_warning_once_per_kernel(tmp_path, caplog, capsys):
    for index in range(3):
        Cgroups(f"{NAME}-{index}", LIMITS, root=tmp_path, self_cgroup="0::/\n")
    assert capsys.readouterr().err.count("NOT all applied") == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and all("memory limit NOT applied (no cgroup memory hierarchy" in w for w in warnings)


def v1_tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    root = tmp_path / "cgroup"
    memory, pids = root / "memory" / "docker" / "abc", root / "pids"
    memory.mkdir(parents=True)
    pids.mkdir()
    return root, memory, pids


V1_SELF = "9:name=systemd:/\n8:pids:/\n4:memory:/docker/abc\n0::/\n"


def test_v1_writes_memory_and_process_limits(tmp_path, caplog, capsys):
    root, memory, pids = v1_tree(tmp_path)
    cgroups = Cgroups(NAME, LIMITS, root=root, self_cgroup=V1_SELF)
    assert cgroups.paths == [pids / NAME, memory / NAME]
    assert read(memory / NAME / "memory.limit_in_bytes") == MEMORY
    assert read(memory / NAME / "memory.memsw.limit_in_bytes") == MEMORY
    assert read(pids / NAME / "pids.max") == "7"
    assert cgroups.failures == []
    assert cgroups.in_force == {"tasks": "7 (cgroup v1 pids)", "memory": "100 MiB (cgroup v1 memory)",
                                "memory+swap": "100 MiB (cgroup v1 memory)"}
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert capsys.readouterr().err == ""
    wrapped = cgroups.wrap(["python", "-V"])
    assert wrapped[-2:] == ["python", "-V"] and str(pids / NAME / "cgroup.procs") in wrapped[2]


def test_v1_failures_are_reported_and_the_rest_applied(tmp_path, caplog, capsys):
    """No swap accounting (memory.memsw files absent) and a pids cgroup that cannot be made."""
    root, memory, pids = v1_tree(tmp_path)
    (pids / NAME).write_text("in the way")

    class NoSwapAccounting(Cgroups):
        def _write_file(self, path, value):
            if path.name.startswith("memory.memsw."):
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
            path.write_text(value)

    cgroups = NoSwapAccounting(NAME, LIMITS, root=root, self_cgroup=V1_SELF)
    assert cgroups.in_force == {"memory": "100 MiB (cgroup v1 memory)"}
    assert read(memory / NAME / "memory.limit_in_bytes") == MEMORY
    [tasks, swap] = cgroups.failures
    assert tasks.startswith("tasks limit NOT applied (cannot create") and str(pids / NAME) in tasks
    assert swap.startswith("memory+swap limit NOT applied") and "memory.memsw.limit_in_bytes" in swap
    [record] = caplog.records
    assert record.levelno == logging.WARNING and tasks in record.getMessage() and swap in record.getMessage()
    err = capsys.readouterr().err
    assert tasks in err and swap in err


def test_no_cgroup_hierarchy_at_all_is_reported(tmp_path, capsys):
    cgroups = Cgroups(NAME, LIMITS, root=tmp_path, self_cgroup="")
    assert cgroups.paths == [] and cgroups.wrap(["true"]) == ["true"]
    assert [f.split(" (")[0] for f in cgroups.failures] == ["memory limit NOT applied", "tasks limit NOT applied"]
    assert "no cgroup limits" in cgroups.describe()
    assert "NOT all applied" in capsys.readouterr().err


def _writable_memory_cgroup() -> str | None:
    """None when this machine lets us make a memory cgroup beside ours; otherwise why not."""
    if os.geteuid() != 0:
        return "not root: cgroups cannot be made"
    probe = Cgroups(f"unet-grading-probe-{uuid.uuid4().hex[:8]}", LIMITS, self_cgroup=None)
    made, missing = list(probe.paths), [f for f in probe.failures if f.startswith("memory limit")]
    probe.remove()
    if missing or not made:
        return f"no writable cgroup memory hierarchy: {'; '.join(probe.failures) or 'none found'}"
    return None


def test_real_cgroups_hold_the_limits_and_are_removed(caplog):
    reason = _writable_memory_cgroup()
    if reason:
        pytest.skip(reason)
    cgroups = Cgroups(f"unet-grading-test-{uuid.uuid4().hex[:8]}", Limits(memory_mb=100, processes=6))
    paths = list(cgroups.paths)
    try:
        assert paths and all(p.is_dir() for p in paths)
        files = {f.name: f.read_text().strip() for p in paths for f in p.iterdir()
                 if f.name in ("memory.limit_in_bytes", "memory.max", "pids.max")}
        assert files.get("memory.limit_in_bytes", files.get("memory.max")) == MEMORY
        if "tasks" in cgroups.in_force:
            assert files["pids.max"] == "6"
        # what runs through wrap() is inside, and bounded
        seen = subprocess.run(cgroups.wrap(["cat", "/proc/self/cgroup"]), check=False, capture_output=True,
                              text=True).stdout
        assert cgroups.name in seen
        if "tasks" in cgroups.in_force:
            bomb = "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.3 & done; wait"
            forks = subprocess.run(cgroups.wrap(["sh", "-c", bomb]), check=False, capture_output=True, text=True, timeout=30)
            assert "fork" in forks.stderr.lower()
        no_swap = "SwapTotal:              0 kB" in Path("/proc/meminfo").read_text()
        if {"memory+swap", "swap"} & set(cgroups.in_force) or no_swap:
            big = subprocess.run(cgroups.wrap([sys.executable, "-c", "b = b'x' * (300 * 2**20); print(len(b))"]),
                                 check=False, capture_output=True, text=True, timeout=60)
            assert big.returncode == -9 and big.stdout == ""  # killed by the cgroup's OOM killer
        assert f"{cgroups.name}: sandbox limits: " in caplog.text
    finally:
        cgroups.remove()
    assert not any(p.exists() for p in paths)


def test_limits_are_read_when_called_not_when_imported(monkeypatch):
    monkeypatch.delenv("UNET_COURSE_SANDBOX_MEMORY_MB", raising=False)
    monkeypatch.delenv("UNET_COURSE_SANDBOX_WALL_SECONDS", raising=False)
    assert Limits.from_environment() == Limits()
    monkeypatch.setenv("UNET_COURSE_SANDBOX_MEMORY_MB", "2048")
    monkeypatch.setenv("UNET_COURSE_SANDBOX_WALL_SECONDS", "77")
    limits = Limits.from_environment()
    assert (limits.memory_mb, limits.wall_seconds) == (2048, 77)
    assert limits.processes == Limits.processes  # the others keep their defaults
    cmd = sandbox.sandbox_command(["true"], Path.cwd(), Path.cwd(), {})
    wall = cmd.index("--signal=KILL")
    assert cmd[wall - 1].endswith("timeout") and cmd[wall + 1] == "77" and f"--as={2048 * 2**20}" in cmd
    monkeypatch.setenv("UNET_COURSE_SANDBOX_MEMORY_MB", "")
    assert Limits.from_environment().memory_mb == Limits.memory_mb


@pytest.mark.parametrize("value", ["lots", "0", "-5", "1.5"])
def test_a_wrong_limit_names_its_variable(monkeypatch, value):
    monkeypatch.setenv("UNET_COURSE_SANDBOX_WALL_SECONDS", value)
    with pytest.raises(ValueError, match="UNET_COURSE_SANDBOX_WALL_SECONDS"):
        Limits.from_environment()
