"""Run students' notebooks in a bubblewrap sandbox while nbgrader autogrades them.

nbgrader runs student code as the instructor, with no isolation. Here every kernel nbgrader
starts runs under ``bwrap`` (Debian package ``bubblewrap``):

* no network (a new, empty network namespace; the kernel talks to nbgrader over Unix sockets);
* a file system built from read-only system and Python folders and the student package
  (``unet_course``), plus the student's own autograded folder (writable) and a private ``/tmp``:
  the source notebooks, the gradebook, other students' folders and this grading package (the
  reference, the hidden checks) are simply not there;
* an environment of named variables only (:data:`PASSED_ENV`): the grader's tokens, passwords
  and gradebook URL never reach the kernel;
* limits: address space, CPU seconds, processes, file size, open files, wall time; as root the
  kernel drops to an unprivileged user of its own so the process limit holds (root ignores it),
  and where cgroups can be made, the whole sandbox (forks included) shares one memory and one
  process budget; each kernel logs which limits are in force, and a warning (and once a line on
  stderr) names any that could not be set.

``UNET_COURSE_SANDBOX`` chooses: ``auto`` (default: sandbox when bubblewrap works, otherwise
grade unsandboxed with a loud warning), ``require`` (refuse to grade without it) or ``off``.
"""

from __future__ import annotations

import errno
import functools
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from jupyter_client.manager import AsyncKernelManager
from traitlets import Unicode

from unet_course.evidence import CASES_ENV, RECORD_ENV

log = logging.getLogger(__name__)

SANDBOX_ENV = "UNET_COURSE_SANDBOX"
BWRAP_ENV = "UNET_COURSE_BWRAP"  # another bubblewrap binary (the tests name a missing one)
# As root, each grading process runs its kernel as a user of its own (no login, no files), so the
# process limit of one submission (a fork bomb) never starves another worker's kernel.
UNPRIVILEGED_BASE = 200000


UNSANDBOXED_WARNING = (
    "WARNING: bubblewrap is not available ({reason}); student code runs UNSANDBOXED, with your user's"
    " permissions, network and files. Install it (Debian/Ubuntu: apt-get install bubblewrap) or set"
    f" {SANDBOX_ENV}=require to refuse grading without it."
)

# The only variables a grading kernel gets from the grader's environment, by name (nothing by
# prefix: a grader's gradebook URL, tokens and passwords must never reach student code).
PASSED_ENV = ("LANG", "LC_ALL", "LC_MESSAGES", "LANGUAGE", "TZ", "PYTHONHASHSEED", "TF_CPP_MIN_LOG_LEVEL", "OMP_NUM_THREADS",
              "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",  # a grading worker's share of the cores
              "ONEDNN_MAX_CPU_ISA",  # performance only: caps oneDNN's instruction set (e.g. as an AVX2 laptop)
              "NBGRADER_EXECUTION", "UNET_COURSE_SMALL",
              "UNET_COURSE_LANG")  # the course's language (unet_course.i18n; the Chinese edition sets it)

ETC_FILES = ["ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "nsswitch.conf",
             "passwd", "group", "ssl", "fonts", "mime.types"]


class SandboxUnavailable(RuntimeError):
    """bubblewrap is required (UNET_COURSE_SANDBOX=require) but cannot run here."""


@dataclass(frozen=True)
class Limits:
    """Per-kernel resource limits (generous for a U-Net exercise, fatal for bombs)."""

    memory_mb: int = 6144
    cpu_seconds: int = 900
    processes: int = 128  # threads count too: a kernel with TensorFlow runs ~20
    file_mb: int = 1024
    open_files: int = 1024
    wall_seconds: int = 1800

    @classmethod
    def from_environment(cls, environ: dict | None = None) -> Limits:
        """The limits for this grading run, read from the environment each time a kernel starts and
        never when this module is imported (so a grader, or a test, that sets
        UNET_COURSE_SANDBOX_MEMORY_MB or UNET_COURSE_SANDBOX_WALL_SECONDS after the import gets them)."""
        env = os.environ if environ is None else environ
        return cls(memory_mb=_positive_int(env, "UNET_COURSE_SANDBOX_MEMORY_MB", cls.memory_mb),
                   wall_seconds=_positive_int(env, "UNET_COURSE_SANDBOX_WALL_SECONDS", cls.wall_seconds))


def _positive_int(env, name: str, default: int) -> int:
    """``env[name]`` as a positive integer (``default`` when unset or empty); a wrong value stops
    grading with the variable's name rather than grading under a limit nobody chose."""
    value = str(env.get(name, "")).strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise ValueError(f"{name} must be a positive whole number, not {value!r}")
    return number


def mode() -> str:
    value = os.environ.get(SANDBOX_ENV, "auto").strip().lower() or "auto"
    if value not in {"auto", "require", "off"}:
        raise ValueError(f"{SANDBOX_ENV} must be auto, require or off, not {value!r}")
    return value


def _bwrap() -> str:
    return os.environ.get(BWRAP_ENV, "bwrap")


def unprivileged_uid() -> int:
    return UNPRIVILEGED_BASE + os.getpid() % 100000


def _as_root() -> bool:
    return os.geteuid() == 0


def unavailable_reason() -> str | None:
    """None when a sandbox like the grading one starts here; otherwise why not."""
    return _unavailable_reason(_bwrap())


@functools.lru_cache(maxsize=None)
def _unavailable_reason(bwrap: str) -> str | None:
    for tool in (bwrap, "prlimit", "setpriv"):
        if not shutil.which(tool):
            return f"`{tool}` not found"
    trial = _bwrap_prefix() + ["--ro-bind", "/usr", "/usr", *_usr_links(), "--proc", "/proc", "--dev", "/dev"]
    trial += _drop_privileges() + ["true"]
    try:
        result = subprocess.run(trial, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bwrap failed to start: {error}"
    if result.returncode != 0:
        return f"bwrap failed: {result.stderr.strip()[:200] or result.returncode}"
    return None


def active() -> bool:
    """Whether grading will run sandboxed; raises if it must and cannot."""
    chosen = mode()
    if chosen == "off":
        return False
    reason = unavailable_reason()
    if reason and chosen == "require":
        raise SandboxUnavailable(f"{SANDBOX_ENV}=require but bubblewrap cannot run: {reason}")
    return reason is None


def _bwrap_prefix() -> list[str]:
    namespaces = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    if not _as_root():
        namespaces.append("--unshare-user")
    else:  # keep just enough privilege to switch to the unprivileged user inside
        namespaces += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return [_bwrap(), "--die-with-parent", "--new-session", *namespaces]


def _drop_privileges() -> list[str]:
    if not _as_root():
        return []
    uid = unprivileged_uid()
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]


def _usr_links() -> list[str]:
    args = []
    for name in ("bin", "lib", "lib64", "sbin"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.origin).parent if spec and spec.origin else None


def readonly_paths() -> list[Path]:
    """Python, its environment and the student package; nothing else of the course folder."""
    paths = {Path(sys.base_prefix), Path(sys.prefix), Path(os.path.realpath(sys.executable)).parent.parent}
    student_package = _package_dir("unet_course")
    if student_package:
        paths.add(student_package)
    kept = sorted(p.resolve() for p in paths if p.exists() and not str(p.resolve()).startswith("/usr"))
    return [p for p in kept if not any(p != q and q in p.parents for q in kept)]


def _dirs_for(targets: list[Path]) -> list[str]:
    """Create every parent of a mount point with mode 0755 (bwrap's default is 0700 as root)."""
    args, made = [], set()
    for target in targets:
        for parent in reversed(target.parents):
            if str(parent) in ("/",) or parent in made:
                continue
            made.add(parent)
            args += ["--perms", "0755", "--dir", str(parent)]
    return args


def kernel_env(env: dict, home: str) -> dict:
    """The whole environment of a grading kernel: the named variables of :data:`PASSED_ENV`, what
    the kernel needs to run, and the grading protocol (record models; which configurations)."""
    from unet_grader.assignment import grading_cases_json

    kept = {k: env[k] for k in PASSED_ENV if k in env}
    kept.update(HOME=home, MPLCONFIGDIR=str(Path(home) / "matplotlib"), PYTHONNOUSERSITE="1",
                LANG=env.get("LANG", "C.UTF-8"),
                PATH=os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
                **{RECORD_ENV: "1", CASES_ENV: grading_cases_json()})
    return kept


def sandbox_env(env: dict) -> list[str]:
    args = ["--clearenv"]
    kept = dict(env, UNET_COURSE_SANDBOXED="1")
    for key, value in sorted(kept.items()):
        args += ["--setenv", key, value]
    return args


def sandbox_command(kernel_cmd: list[str], workdir: Path, private: Path, env: dict,
                    limits: Limits | None = None) -> list[str]:
    """The full command line: resource limits, then bwrap, then (as root) the switch to nobody.
    ``env`` is the kernel's whole environment (see :func:`kernel_env`)."""
    limits = limits or Limits.from_environment()
    workdir, private = Path(workdir).resolve(), Path(private).resolve()
    readonly = readonly_paths()
    etc = [Path("/etc") / name for name in ETC_FILES if (Path("/etc") / name).exists()]
    # RLIMIT_NPROC counts every task of the user: as root the kernel gets a uid of its own; as an
    # ordinary user, leave room for what that user already runs (a desktop has hundreds of threads).
    processes = limits.processes if _as_root() else limits.processes + _tasks_of(os.getuid())
    cmd = ["prlimit", f"--as={limits.memory_mb * 2**20}", f"--cpu={limits.cpu_seconds}",
           f"--nproc={processes}", f"--fsize={limits.file_mb * 2**20}",
           f"--nofile={limits.open_files}", "--"]
    cmd += _bwrap_prefix()
    cmd += ["--ro-bind", "/usr", "/usr", *_usr_links(), "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--tmpfs", "/tmp"]
    cmd += _dirs_for(readonly + [workdir, private])
    for path in etc:
        cmd += ["--ro-bind", str(path), str(path)]
    for path in readonly:
        cmd += ["--ro-bind", str(path), str(path)]
    cmd += ["--bind", str(workdir), str(workdir), "--bind", str(private), str(private), "--chdir", str(workdir)]
    cmd += sandbox_env(env)
    # The wall-time limit runs inside the sandbox, so that bwrap's parent is the grader itself and
    # the whole sandbox ends with it (--die-with-parent) when a grading is stopped or killed.
    cmd += [shutil.which("timeout") or "timeout", "--signal=KILL", str(limits.wall_seconds)]
    return cmd + _drop_privileges() + list(kernel_cmd)


def _tasks_of(uid: int) -> int:
    """Processes and threads that ``uid`` runs now (what RLIMIT_NPROC counts)."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                status = Path(entry.path, "status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if int(fields.get("Uid", "-1").split()[0]) == uid:
                count += int(fields.get("Threads", "1").strip() or 1)
    return count


class _Setting(NamedTuple):
    """One cgroup limit: what it bounds, the file that sets it, and how the report shows it."""

    label: str  # "memory", "memory+swap", "swap", "tasks"
    controller: str  # the cgroup controller that provides ``file``
    file: str
    value: str
    shown: str  # "6144 MiB"
    source: str  # "cgroup v1 memory"


class Cgroups:
    """Memory and process limits for the whole sandbox (every process in it, forks included), in
    a child of this process's cgroup, where the system lets us make one (root, cgroup v1 or v2).

    Per-process rlimits alone do not bound a fork bomb's total memory: 128 forked kernels each
    dirtying their copy of the interpreter exhaust the machine. Where a cgroup limit cannot be
    set, the per-process rlimits (prlimit) still apply, but that is never silent: each failure is
    kept in :attr:`failures`, logged at WARNING with every kernel, and told once per grading
    process on stderr. :meth:`describe` says which limits are in force.

    ``root`` (where the cgroup file systems are mounted) and ``self_cgroup`` (the text of
    /proc/self/cgroup) default to this machine's; the tests hand in a fake tree.
    """

    ROOT = Path("/sys/fs/cgroup")
    # cgroup v2: the leaf child that holds the grader's own processes, so that its parent may
    # enable controllers for the sandbox cgroups (see _enable_v2).
    LEAF = "unet-grader"
    WANTED = (("memory", "memory"), ("tasks", "pids"))  # each limit the sandbox needs, and its controller
    _stderr_told = False  # the instructor has been told on stderr (once per grading process)

    def __init__(self, name: str, limits: Limits, *, root: Path | str | None = None,
                 self_cgroup: str | None = None):
        self.name, self.limits = name, limits
        self.root = Path(root) if root is not None else self.ROOT
        self.paths: list[Path] = []
        self.in_force: dict[str, str] = {}  # label -> "6144 MiB (cgroup v1 memory)"
        self.failures: list[str] = []  # "memory limit NOT applied (why)"
        if self_cgroup is None:
            self_cgroup = self._read(Path("/proc/self/cgroup"))
        for controller, parent in self._parents(self_cgroup):
            self._sweep(parent)
            settings = self._settings(controller)
            if controller == "v2":
                settings = self._enable_v2(parent, settings)
                if not settings:
                    continue
            child = parent / name
            try:
                child.mkdir()
            except OSError as error:
                self._fail(settings, f"cannot create {child}: {error}")
                continue
            self.paths.append(child)
            for setting in settings:
                try:
                    self._write_file(child / setting.file, setting.value)
                except OSError as error:
                    self._fail([setting], f"{child / setting.file}: {error}")
                else:
                    self.in_force[setting.label] = f"{setting.shown} ({setting.source})"
        for label, controller in self.WANTED:
            if label not in self.in_force and not any(f.startswith(f"{label} limit") for f in self.failures):
                self.failures.append(f"{label} limit NOT applied (no cgroup {controller} hierarchy for this process)")
        self._report()

    def _settings(self, controller: str) -> list[_Setting]:
        memory, mib = str(self.limits.memory_mb * 2**20), f"{self.limits.memory_mb} MiB"
        tasks = str(self.limits.processes)
        if controller == "memory":  # cgroup v1; memory+swap must come second (it may not be below memory)
            return [_Setting("memory", "memory", "memory.limit_in_bytes", memory, mib, "cgroup v1 memory"),
                    _Setting("memory+swap", "memory", "memory.memsw.limit_in_bytes", memory, mib, "cgroup v1 memory")]
        if controller == "pids":
            return [_Setting("tasks", "pids", "pids.max", tasks, tasks, "cgroup v1 pids")]
        return [_Setting("memory", "memory", "memory.max", memory, mib, "cgroup v2 memory"),
                _Setting("swap", "memory", "memory.swap.max", "0", "0", "cgroup v2 memory"),
                _Setting("tasks", "pids", "pids.max", tasks, tasks, "cgroup v2 pids")]

    def _enable_v2(self, parent: Path, settings: list[_Setting]) -> list[_Setting]:
        """The settings whose controller ``parent`` passes on to its children, after enabling them.

        In cgroup v2 a child has the memory and pids files only when its parent lists those
        controllers in cgroup.subtree_control, and a cgroup other than the root may list them only
        while no process sits in it ("no internal processes"). So, as systemd asks of a service
        with Delegate=yes and as container init scripts do, when enabling is refused as busy the
        processes of this cgroup (the grader and whatever shares its cgroup) move into a leaf
        child, :attr:`LEAF`, and the sandbox cgroups become that leaf's siblings. Controllers the
        parent does not have at all (not delegated to it) cannot be enabled: that is reported.
        """
        control = parent / "cgroup.subtree_control"
        missing = {s.controller for s in settings} - self._controllers(control)
        available = self._controllers(parent / "cgroup.controllers")
        why = {c: f"{parent} has no {c} controller: not delegated to it" for c in missing - available}
        if missing & available:
            request = " ".join(f"+{c}" for c in sorted(missing & available))
            try:
                try:
                    self._write_file(control, request)
                except OSError as error:
                    if error.errno != errno.EBUSY:
                        raise
                    self._move_processes(parent, parent / self.LEAF)
                    self._write_file(control, request)
            except OSError as error:
                why.update({c: f"cannot enable {request} in {control}: {error}" for c in missing & available})
        enabled = self._controllers(control)
        for setting in settings:
            if setting.controller not in enabled:
                self._fail([setting], why.get(setting.controller, f"{control} does not list {setting.controller}"))
        return [s for s in settings if s.controller in enabled]

    def _move_processes(self, parent: Path, leaf: Path) -> None:
        """Move every process of ``parent`` into ``leaf`` (a few rounds: some may be forking)."""
        leaf.mkdir(exist_ok=True)
        for _ in range(10):
            pids = self._read(parent / "cgroup.procs").split()
            if not pids:
                return
            for pid in pids:
                try:
                    self._write_file(leaf / "cgroup.procs", pid)
                except ProcessLookupError:  # it exited meanwhile: nothing left to move
                    pass

    def _fail(self, settings: list[_Setting], why: str) -> None:
        self.failures += [f"{s.label} limit NOT applied ({why})" for s in settings]

    def describe(self) -> str:
        """One line: the limits in force for this sandbox, and those that could not be applied."""
        shared = ", ".join(f"{label} {where}" for label, where in self.in_force.items()) or "no cgroup limits"
        lim = self.limits
        text = (f"sandbox limits: {shared}; per process (prlimit): address space {lim.memory_mb} MiB,"
                f" CPU {lim.cpu_seconds} s, processes {lim.processes}, file size {lim.file_mb} MiB,"
                f" open files {lim.open_files}; wall time {lim.wall_seconds} s")
        if self.failures:
            text += "; " + "; ".join(self.failures)
        return text

    def _report(self) -> None:
        log.log(logging.WARNING if self.failures else logging.INFO, "%s: %s", self.name, self.describe())
        if self.failures and not Cgroups._stderr_told:
            Cgroups._stderr_told = True
            print(f"WARNING: the grading sandbox's shared memory/process limits are NOT all applied: "
                  f"{'; '.join(self.failures)}. Each kernel process still has its own limits (prlimit:"
                  " address space, CPU time, processes, file size, open files) and a wall-time limit,"
                  " but the sandbox as a whole (forks included) is not bounded. Grade as root on a machine"
                  " with cgroup v1 memory and pids hierarchies or cgroup v2 with those controllers delegated.",
                  file=sys.stderr)

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text()
        except OSError:
            return ""

    @classmethod
    def _controllers(cls, path: Path) -> set[str]:
        """The controllers a cgroup.controllers or cgroup.subtree_control file lists."""
        return {word.lstrip("+") for word in cls._read(path).split()}

    @staticmethod
    def _write_file(path: Path, value: str) -> None:
        path.write_text(value)

    @staticmethod
    def _sweep(parent: Path, min_age: float = 120) -> None:
        """Remove sandbox cgroups left behind by kernels that were never cleaned up (empty and
        older than ``min_age`` seconds: a fresh one may be about to receive its kernel)."""
        for child in parent.glob("unet-grading-*"):
            try:
                if time.time() - child.stat().st_mtime > min_age:
                    child.rmdir()  # fails while processes are in it
            except OSError:
                pass

    def _parents(self, self_cgroup: str) -> list[tuple[str, Path]]:
        """(controller, cgroup of this process) for the v1 memory and pids hierarchies, or else
        ("v2", cgroup) for the unified hierarchy (its parent, when this process is in our leaf)."""
        found = []
        lines = [line for line in self_cgroup.splitlines() if line.count(":") >= 2]
        for line in lines:
            _, controllers, path = line.split(":", 2)
            for controller in ("memory", "pids"):
                if controller in controllers.split(","):
                    cgroup = self.root / controller / path.lstrip("/")
                    if cgroup.is_dir():
                        found.append((controller, cgroup))
        if not found:  # pure cgroup v2
            for line in lines:
                if line.startswith("0::"):
                    path = self.root / line[3:].strip().lstrip("/")
                    if path.name == self.LEAF:
                        path = path.parent
                    if (path / "cgroup.controllers").exists():
                        found.append(("v2", path))
        return found

    def wrap(self, cmd: list[str]) -> list[str]:
        """Join the cgroups first, then run ``cmd`` (its children stay in them)."""
        if not self.paths:
            return cmd
        joins = "; ".join(f"echo $$ > '{p / 'cgroup.procs'}'" for p in self.paths)
        return ["sh", "-c", f"{joins}; exec \"$@\"", "sh", *cmd]

    def remove(self) -> None:
        """Kill what is left in the sandbox cgroups and remove them (a warning if one stays)."""
        for path in self.paths:
            error = None
            for _ in range(50):
                try:
                    for pid in (path / "cgroup.procs").read_text().split():
                        try:
                            os.kill(int(pid), 9)
                        except OSError:
                            pass
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as failure:
                    error = failure
                    time.sleep(0.1)
            else:
                log.warning("could not remove the sandbox cgroup %s: %s", path, error)
        self.paths = []


def _give_to_unprivileged(path: Path) -> None:
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.lchown(name, unprivileged_uid(), unprivileged_uid())


class SandboxKernelManager(AsyncKernelManager):
    """nbgrader's kernel manager, with the kernel started inside the sandbox.

    The kernel and nbgrader talk over Unix sockets in a private folder (the sandbox has no
    network at all, not even loopback).
    """

    transport = Unicode("ipc", config=True)
    _private_dir = None
    _cgroups = None
    _started: list = []  # managers whose sandbox state may still need removing (release_all)

    @classmethod
    def release_all(cls) -> None:
        """Remove every sandbox's cgroups and private folder (after the notebook has run: nbclient
        does not always shut down a kernel that died, so its clean-up may never come)."""
        while cls._started:
            cls._started.pop()._remove_sandbox_state()

    async def _async_pre_start_kernel(self, **kw):
        if active():
            _sweep_private_dirs()
            self._private_dir = Path(tempfile.mkdtemp(prefix="unet-grading-"))
            os.chmod(self._private_dir, 0o700)
            self.connection_file = str(self._private_dir / "kernel.json")
            self.ip = str(self._private_dir / "kernel-ipc")
            # Signals cannot reach a kernel in its own session: interrupt it with a message.
            self.kernel_spec.interrupt_mode = "message"
        else:
            self.transport = "tcp"
            self.ip = "127.0.0.1"
        # Sandboxed or not, the kernel sees only the named variables (no grader secrets).
        home = "/tmp" if self._private_dir is not None else tempfile.gettempdir()
        kw["env"] = kernel_env(dict(kw.get("env") or os.environ), home)
        return await super()._async_pre_start_kernel(**kw)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if self._private_dir is not None:
            workdir = Path(kw.get("cwd") or os.getcwd())
            limits = Limits.from_environment()  # once per kernel: the rlimits and cgroups agree
            kernel_cmd = sandbox_command(kernel_cmd, workdir, self._private_dir, kw.get("env") or {}, limits)
            self._cgroups = Cgroups(self._private_dir.name, limits)
            SandboxKernelManager._started.append(self)
            kernel_cmd = self._cgroups.wrap(kernel_cmd)
            if _as_root():
                _give_to_unprivileged(workdir)
                _give_to_unprivileged(self._private_dir)
            kw["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        return await super()._async_launch_kernel(kernel_cmd, **kw)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart)
        if not restart:
            self._remove_sandbox_state()

    def _remove_sandbox_state(self) -> None:
        if self._cgroups is not None:
            self._cgroups.remove()
            self._cgroups = None
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None


def _sweep_private_dirs(min_age: float | None = None) -> None:
    """Remove private folders of kernels that outlived every limit (their grader was killed)."""
    min_age = Limits.from_environment().wall_seconds + 600 if min_age is None else min_age
    for folder in Path(tempfile.gettempdir()).glob("unet-grading-*"):
        try:
            if time.time() - folder.stat().st_mtime > min_age:
                shutil.rmtree(folder)
        except OSError:
            pass
