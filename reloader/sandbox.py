"""The sandbox of one local tenant runtime: its own uid, cgroups and filesystem view.

Tenant code is hostile (shared/DESIGN.md, "Isolation and security rules"). Locally each
tenant's runtime (the reloader and every app generation it starts) runs:

- in cgroup v1 `memory`, `pids` and `cpu` groups `hostplane/<home-hash>/<tenant>`, joined
  by a root shell *before* anything of the tenant runs (`echo $$ > cgroup.procs; bwrap
  ...`), so no child can be forked outside them; deleting the tenant SIGKILLs
  whatever is still in them, a double-forked, setsid'd daemon included;
- under bubblewrap, with its own pid, IPC and UTS namespaces (the network is shared: the
  tenant must reach loopback), a view holding only the OS (read-only), the interpreter,
  the venv and the platform's source (read-only), its own release folder (read-only) and
  its own runtime folder (read-write); the rest of `<home>` (credentials.json,
  state.json, logs, data directories, other tenants) and the rest of the artifact store
  are covered by empty tmpfs mounts;
- as uid/gid `HOSTPLANE_SANDBOX_UID_BASE + app_port` (setpriv: groups cleared,
  no_new_privs, no capabilities), so even a path it should not see is a permission error.

Memory: the cgroup holds the reloader and, during a swap, two app generations, so it is
`2 × memory_mb + RELOADER_MB`; the reloader still kills one generation past `memory_mb`
(its own watch, with a clean AppCrashed report), the cgroup is the hard ceiling for what
that watch cannot see (a forked daemon, a burst between two samples). Swap counts too
(`memsw` equal to the limit), or a leak would page out instead of being stopped.

`HOSTPLANE_SANDBOX`: `auto` (default) sandboxes when the agent is root and bwrap, setpriv
and the three cgroup controllers are there, else warns `sandbox.unavailable` and runs
tenants as the agent's own user (no uid, filesystem or cgroup isolation: say so loudly);
`required` refuses to run tenants without it; `off` never sandboxes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("auto", "required", "off")
MODE_VAR, UID_BASE_VAR = "HOSTPLANE_SANDBOX", "HOSTPLANE_SANDBOX_UID_BASE"
DEFAULT_UID_BASE = 200_000
CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpu")
RELOADER_MB = 128  # the reloader (~31 MB RSS), its zygote (~42), bwrap's two small processes, a release's page cache
PIDS_MAX = 256
CPU_PERIOD_US = 100_000
CPU_QUOTA_US = 100_000  # at most one CPU per tenant
CPU_SHARES = 1024  # the weight of one task at nice 0
MAX_SHARES = 262_144
RESOLV_CONF = "/etc/resolv.conf"
OS_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


class SandboxUnavailable(RuntimeError):
    """HOSTPLANE_SANDBOX=required, and this host cannot sandbox (the reason says why)."""


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    pids_max: int = PIDS_MAX
    cpu_quota_us: int = CPU_QUOTA_US
    cpu_period_us: int = CPU_PERIOD_US
    cpu_shares: int = CPU_SHARES

    @classmethod
    def for_memory(cls, memory_mb: int) -> Limits:
        return cls(memory_bytes=(2 * memory_mb + RELOADER_MB) * 1024 * 1024)

    def files(self) -> dict[str, list[tuple[str, str]]]:
        """Per controller, (file, value) in the order they must be written (memsw ≥ limit)."""
        mem = str(self.memory_bytes)
        return {"memory": [("memory.limit_in_bytes", mem), ("memory.memsw.limit_in_bytes", mem)],
                "pids": [("pids.max", str(self.pids_max))],
                "cpu": [("cpu.cfs_period_us", str(self.cpu_period_us)),
                        ("cpu.cfs_quota_us", str(self.cpu_quota_us)), ("cpu.shares", str(self.cpu_shares))]}


def home_group(home: Path) -> str:
    """The cgroup folder of one platform home: two homes on a host never share groups."""
    return "hostplane/" + hashlib.sha256(str(Path(home).resolve()).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class TenantCgroups:
    """The tenant's three cgroup v1 groups."""

    group: str  # hostplane/<home-hash>/<tenant>
    root: Path = CGROUP_ROOT

    def path(self, controller: str) -> Path:
        return self.root / controller / self.group

    def procs_files(self) -> list[Path]:
        return [self.path(c) / "cgroup.procs" for c in CONTROLLERS]

    def ensure(self, limits: Limits) -> None:
        """Create the groups and write their limits (convergent: rewritten every start).
        The memory limit cannot drop below what the group uses now; a group left from a
        runtime that was not cleaned up is emptied first."""
        for controller, writes in limits.files().items():
            folder = self.path(controller)
            folder.mkdir(parents=True, exist_ok=True)
            for name, value in writes:
                target = folder / name
                if name == "memory.memsw.limit_in_bytes" and not target.exists():
                    continue  # the kernel runs without swap accounting
                if name == "memory.limit_in_bytes":
                    # memsw must stay ≥ limit: raise memsw first when growing the limit
                    with contextlib.suppress(OSError):
                        if int((folder / "memory.memsw.limit_in_bytes").read_text()) < int(value):
                            (folder / "memory.memsw.limit_in_bytes").write_text(value)
                target.write_text(value)
        self.weigh_parents()

    @classmethod
    def of_home(cls, home: Path, root: Path = CGROUP_ROOT) -> dict[str, TenantCgroups]:
        """Every tenant group this home has, by tenant id, whatever controller holds it."""
        group = home_group(home)
        found: dict[str, TenantCgroups] = {}
        for controller in CONTROLLERS:
            with contextlib.suppress(OSError):
                for child in (root / controller / group).iterdir():
                    if child.is_dir():
                        found.setdefault(child.name, cls(f"{group}/{child.name}", root))
        return found

    def weigh_parents(self) -> None:
        """cgroup v1 CFS weighs a group as one task: all tenants together under
        `hostplane/` would get the CPU of a single platform process under load. So each
        parent weighs CPU_SHARES per tenant group below it (a tenant counts as one task)."""
        top = self.root / "cpu" / self.group.split("/")[0]
        homes = [d for d in top.iterdir() if d.is_dir()] if top.is_dir() else []
        total = 0
        for home in homes:
            tenants = sum(1 for d in home.iterdir() if d.is_dir())
            total += tenants
            with contextlib.suppress(OSError):
                (home / "cpu.shares").write_text(str(min(MAX_SHARES, CPU_SHARES * max(1, tenants))))
        with contextlib.suppress(OSError):
            (top / "cpu.shares").write_text(str(min(MAX_SHARES, CPU_SHARES * max(1, total))))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for procs in self.procs_files():
            with contextlib.suppress(OSError, ValueError):
                found |= {int(p) for p in procs.read_text().split()}
        return found

    def kill_all(self, timeout: float = 5.0, *, kill=os.kill, sleep=time.sleep, reap=os.waitpid) -> set[int]:
        """SIGKILL every process in the groups until they are empty (a fork racing the
        kill is caught by the next round); returns what was still there at `timeout`."""
        deadline = time.monotonic() + timeout
        while pids := self.pids():
            if time.monotonic() >= deadline:
                return pids
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError, OSError):
                    reap(pid, os.WNOHANG)  # our own child (the launcher) stays listed until reaped
            sleep(0.05)
        return set()

    def remove(self) -> None:
        """Remove the groups, and the home's group once it has no other tenant."""
        for controller in CONTROLLERS:
            with contextlib.suppress(OSError):  # gone already, or busy: exists() tells the caller
                self.path(controller).rmdir()
            with contextlib.suppress(OSError):  # busy: another tenant of this home still runs
                self.path(controller).parent.rmdir()
        with contextlib.suppress(OSError):
            self.weigh_parents()

    def exists(self) -> bool:
        return any(self.path(c).exists() for c in CONTROLLERS)


@dataclass(frozen=True)
class SandboxSpec:
    """Everything the launch command needs; built by `spec_for`, pure data for tests."""

    tenant_id: str
    uid: int
    home: Path
    artifacts: Path  # the artifact store root
    runtime_dir: Path  # <home>/runtime/<tenant>, read-write
    cgroups: TenantCgroups
    code: tuple[Path, ...]  # interpreter prefix, venv, platform source: read-only
    env: Mapping[str, str] = field(default_factory=dict)
    bwrap: str = "bwrap"
    setpriv: str = "setpriv"

    @property
    def release_dir(self) -> Path:
        return self.artifacts / self.tenant_id


def uid_for(app_port: int, environ: Mapping[str, str] = os.environ) -> int:
    return int(environ.get(UID_BASE_VAR) or DEFAULT_UID_BASE) + app_port


def source_root() -> Path:
    """The checkout this reloader is imported from (the one the sandbox binds)."""
    return Path(__file__).resolve().parents[1]


def code_paths() -> tuple[Path, ...]:
    """What the reloader and its workers import: the interpreter, the venv, our source."""
    return tuple(Path(p).resolve() for p in dict.fromkeys((sys.base_prefix, sys.prefix, str(source_root()))))


def _under(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _ancestors(path: Path) -> list[Path]:
    return list(reversed(path.parents))[1:]  # without "/"


def bwrap_args(spec: SandboxSpec) -> list[str]:
    """bwrap's options: the view described in the module docstring, in mount order."""
    args: list[str] = []
    for top in OS_DIRS:
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    made: set[Path] = {Path("/tmp")}
    mounted: list[Path] = [Path(p) for p in OS_DIRS]  # binds: what is under them exists

    def dirs_to(path: Path) -> None:
        # Mount points need their parents; the ones we create (in bwrap's root, in /tmp)
        # are 0711: traversable, not listable. Parents inside a bind already exist.
        for parent in _ancestors(path):
            if parent in made or any(_under(parent, m) for m in mounted):
                continue
            args.extend(["--perms", "0711", "--dir", str(parent)])
            made.add(parent)

    # /etc/resolv.conf is often a link into /run (systemd-resolved): bind what it names
    resolv = os.path.realpath(RESOLV_CONF)
    if resolv != RESOLV_CONF and not any(_under(Path(resolv), m) for m in mounted):
        dirs_to(Path(resolv))
        args += ["--ro-bind-try", resolv, resolv]
    code = sorted(set(spec.code), key=lambda p: len(p.parts))
    for path in code:
        if any(_under(path, m) for m in mounted):
            continue
        dirs_to(path)
        args += ["--ro-bind", str(path), str(path)]
        mounted.append(path)
    # Cover <home> and the artifact store, then open the tenant's own two folders in them.
    masks: list[Path] = []
    for mask in sorted({spec.home, spec.artifacts}, key=lambda p: len(p.parts)):
        if any(_under(mask, m) for m in masks):
            continue  # the store inside <home> is covered already
        dirs_to(mask)
        args += ["--perms", "0711", "--tmpfs", str(mask)]
        masks.append(mask)
    for path, option in ((spec.release_dir, "--ro-bind"), (spec.runtime_dir, "--bind")):
        for parent in _ancestors(path):
            if parent not in made and parent not in masks and any(_under(parent, m) for m in masks):
                args += ["--perms", "0711", "--dir", str(parent)]
                made.add(parent)
        args += [option, str(path), str(path)]
    args += ["--chdir", str(spec.runtime_dir), "--unshare-pid", "--unshare-ipc", "--unshare-uts",
             "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv"]
    for name, value in sorted(spec.env.items()):
        args += ["--setenv", name, value]
    return args


# The root shell that places itself in the tenant's cgroups, then runs bwrap: every
# process of the tenant descends from a process already inside them. It waits for bwrap
# rather than becoming it: bwrap's --die-with-parent then ties the sandbox to this shell
# (killing the recorded pid kills the sandbox) and not to the agent (the agent may die or
# be upgraded while its tenants keep serving).
JOIN = ('n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n - 1)); done; '
        '"$@"; exit $?')


def launch_command(spec: SandboxSpec, inner: Sequence[str]) -> list[str]:
    procs = [str(p) for p in spec.cgroups.procs_files()]
    setpriv = [spec.setpriv, f"--reuid={spec.uid}", f"--regid={spec.uid}", "--clear-groups", "--no-new-privs",
               "--inh-caps=-all", "--bounding-set=-all", "--"]
    return ["/bin/sh", "-c", JOIN, "hostplane-sandbox", str(len(procs)), *procs,
            spec.bwrap, *bwrap_args(spec), "--", *setpriv, *inner]


def spec_for(tenant_id: str, app_port: int, home: Path, artifacts: Path, env: Mapping[str, str],
             environ: Mapping[str, str] = os.environ) -> SandboxSpec:
    home = Path(home).resolve()
    return SandboxSpec(tenant_id=tenant_id, uid=uid_for(app_port, environ), home=home,
                       artifacts=Path(artifacts).resolve(), runtime_dir=home / "runtime" / tenant_id,
                       cgroups=TenantCgroups(f"{home_group(home)}/{tenant_id}"), code=code_paths(), env=env,
                       bwrap=shutil.which("bwrap") or "bwrap", setpriv=shutil.which("setpriv") or "setpriv")


def prepare_folders(spec: SandboxSpec) -> None:
    """The runtime folder belongs to the tenant uid (0700); the release folder must exist to
    be bound (root, 0755: the builder writes there). A runtime folder someone else owns (an
    unsandboxed run, another port) is removed and made afresh rather than chowned: walking a
    tree the tenant could change under us could be steered onto our own files. What it held
    is a cache (releases are fetched again) and reports already published."""
    spec.release_dir.mkdir(parents=True, exist_ok=True)
    try:
        owner = os.lstat(spec.runtime_dir).st_uid
    except FileNotFoundError:
        owner = None
    if owner is not None and owner != spec.uid:
        shutil.rmtree(spec.runtime_dir)  # fd-based, never follows a symlink
        owner = None
    if owner is None:
        spec.runtime_dir.parent.mkdir(parents=True, exist_ok=True)
        spec.runtime_dir.mkdir(mode=0o700)
        os.chown(spec.runtime_dir, spec.uid, spec.uid, follow_symlinks=False)
    os.chmod(spec.runtime_dir, 0o700, follow_symlinks=False)


def prepare(spec: SandboxSpec, memory_mb: int) -> None:
    """Everything a start needs, in order: nothing left of an earlier runtime of the tenant
    (it could tamper with the folder being prepared), its folders, its cgroups' limits."""
    spec.cgroups.kill_all()
    prepare_folders(spec)
    spec.cgroups.ensure(Limits.for_memory(memory_mb))


def write_private(path: Path, data: bytes, uid: int | None) -> None:
    """Write a file only its owner reads (the tenant uid, or root unsandboxed). A fresh name
    renamed into place: a symlink the tenant planted under `path` is replaced, not followed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        if uid is not None:
            os.fchown(fd, uid, uid)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def unavailable_reason(*, euid: int | None = None, which=shutil.which, root: Path = CGROUP_ROOT) -> str | None:
    """Why this host cannot sandbox tenants, or None when it can."""
    if (os.geteuid() if euid is None else euid) != 0:
        return "the platform does not run as root (no other uid, no cgroups)"
    for tool in ("bwrap", "setpriv"):
        if not which(tool):
            return f"{tool} is not installed" + (" (apt-get install bubblewrap)" if tool == "bwrap" else "")
    for controller in CONTROLLERS:
        folder = root / controller
        if not (folder / "cgroup.procs").exists() or not os.access(folder, os.W_OK):
            return f"cgroup v1 controller {controller} is not mounted writable at {folder}"
    return None


@dataclass(frozen=True)
class Decision:
    requested: str
    sandboxed: bool
    reason: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"requested": self.requested, "mode": "bwrap" if self.sandboxed else "off", "reason": self.reason}


def decide(environ: Mapping[str, str] = os.environ, *, check=unavailable_reason) -> Decision:
    """What HOSTPLANE_SANDBOX asks for, against what this host can do."""
    requested = (environ.get(MODE_VAR) or "auto").strip().lower()
    if requested not in MODES:
        raise ValueError(f"{MODE_VAR}={requested!r}: use one of {', '.join(MODES)}")
    if requested == "off":
        return Decision(requested, False, f"{MODE_VAR}=off")
    why = check()
    if why is None:
        return Decision(requested, True)
    if requested == "required":
        raise SandboxUnavailable(f"{MODE_VAR}=required but {why}")
    return Decision(requested, False, why)
