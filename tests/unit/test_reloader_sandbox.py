"""The sandbox's launch command, limits and cgroup handling, on fake cgroup folders."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from reloader import sandbox
from reloader.sandbox import Limits, SandboxSpec, TenantCgroups

HOME = Path("/tmp/pt/home")


def spec(**kw) -> SandboxSpec:
    values = dict(tenant_id="acme", uid=241001, home=HOME, artifacts=HOME / "artifacts",
                  runtime_dir=HOME / "runtime" / "acme", cgroups=TenantCgroups("hostplane/abc/acme", Path("/cg")),
                  code=(Path("/root/.pyenv/versions/3.11.7"), Path("/work/main/.venv"), Path("/work/main")),
                  env={"PATH": "/usr/bin:/bin", "HOME": str(HOME / "runtime" / "acme")},
                  bwrap="/usr/bin/bwrap", setpriv="/usr/bin/setpriv")
    return SandboxSpec(**(values | kw))


def pairs(args: list[str], option: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == option]


def test_the_shell_joins_every_cgroup_before_bwrap_then_setpriv_drops_to_the_tenant_uid():
    cmd = sandbox.launch_command(spec(), ["/work/main/.venv/bin/python", "-m", "reloader", "--tenant", "acme"])
    assert cmd[:3] == ["/bin/sh", "-c", sandbox.JOIN]
    assert cmd[4:8] == ["3", "/cg/memory/hostplane/abc/acme/cgroup.procs", "/cg/pids/hostplane/abc/acme/cgroup.procs",
                        "/cg/cpu/hostplane/abc/acme/cgroup.procs"]
    assert cmd[8] == "/usr/bin/bwrap"
    inner = cmd[cmd.index("/usr/bin/setpriv"):]
    assert inner[:8] == ["/usr/bin/setpriv", "--reuid=241001", "--regid=241001", "--clear-groups", "--no-new-privs",
                         "--inh-caps=-all", "--bounding-set=-all", "--"]
    assert inner[8:] == ["/work/main/.venv/bin/python", "-m", "reloader", "--tenant", "acme"]
    # the agent still recognises its reloader by the launcher's command line
    from hostplane.local.agent.state import reloader_args

    assert reloader_args(cmd)["tenant"] == "acme"


def test_the_view_hides_home_and_the_store_but_the_tenants_own_two_folders():
    args = sandbox.bwrap_args(spec())
    assert pairs(args, "--tmpfs") == ["/tmp", str(HOME)]  # the store is inside <home>: covered by it
    assert pairs(args, "--bind") == [str(HOME / "runtime" / "acme")]
    assert str(HOME / "artifacts" / "acme") in pairs(args, "--ro-bind")
    assert "/work/main" in pairs(args, "--ro-bind") and "/work/main/.venv" not in pairs(args, "--ro-bind")
    assert "/root/.pyenv/versions/3.11.7" in pairs(args, "--ro-bind")
    assert not [a for a in pairs(args, "--bind") + pairs(args, "--ro-bind") if a in ("/", "/root", "/tmp", str(HOME))]
    # the masks come after the code binds (a home inside the repo is still covered) and the
    # tenant's folders after the masks; parents created on the way are 0711
    assert args.index(str(HOME)) > args.index("/work/main")
    assert args.index(str(HOME / "runtime" / "acme")) > args.index(str(HOME))
    assert "/root" in pairs(args, "--dir") and args[args.index("/root") - 2:args.index("/root")] == ["0711", "--dir"]
    for option in ("--unshare-pid", "--unshare-ipc", "--die-with-parent", "--new-session", "--clearenv"):
        assert option in args
    assert "--unshare-net" not in args and "--unshare-all" not in args  # tenants need loopback
    assert pairs(args, "--setenv") == ["HOME", "PATH"]


def test_a_store_outside_home_gets_its_own_mask():
    args = sandbox.bwrap_args(spec(artifacts=Path("/srv/store")))
    assert pairs(args, "--tmpfs") == ["/tmp", "/srv/store", str(HOME)] or \
        pairs(args, "--tmpfs") == ["/tmp", str(HOME), "/srv/store"]
    assert "/srv/store/acme" in pairs(args, "--ro-bind")


def test_a_home_inside_the_repo_is_masked_after_the_repo_is_bound():
    home = Path("/work/main/.hostplane")
    args = sandbox.bwrap_args(spec(home=home, artifacts=home / "artifacts", runtime_dir=home / "runtime" / "acme"))
    assert args.index(str(home)) > args.index("/work/main")
    assert str(home) in pairs(args, "--tmpfs")
    # nothing is created inside the read-only repo, only inside the mask
    assert not [d for d in pairs(args, "--dir") if d.startswith("/work/main") and not d.startswith(str(home) + "/")]


def test_limits_leave_room_for_two_generations_and_the_reloader():
    limits = Limits.for_memory(256)
    assert limits.memory_bytes == (2 * 256 + sandbox.RELOADER_MB) * 1024 * 1024
    files = limits.files()
    assert [n for n, _ in files["memory"]] == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
    assert ("pids.max", "256") in files["pids"]
    assert ("cpu.cfs_quota_us", "100000") in files["cpu"]


def fake_cgroups(tmp_path: Path, *, memsw: str | None = "9223372036854771712") -> TenantCgroups:
    for controller in sandbox.CONTROLLERS:
        (tmp_path / controller).mkdir()
    groups = TenantCgroups("hostplane/abc/acme", tmp_path)
    if memsw is not None:
        groups.path("memory").mkdir(parents=True)
        (groups.path("memory") / "memory.memsw.limit_in_bytes").write_text(memsw)
    return groups


def test_ensure_writes_every_limit_and_raises_memsw_first(tmp_path):
    groups = fake_cgroups(tmp_path, memsw="1048576")
    groups.ensure(Limits.for_memory(64))
    want = str((2 * 64 + sandbox.RELOADER_MB) * 1024 * 1024)
    assert (groups.path("memory") / "memory.limit_in_bytes").read_text() == want
    assert (groups.path("memory") / "memory.memsw.limit_in_bytes").read_text() == want
    assert (groups.path("pids") / "pids.max").read_text() == "256"
    assert (groups.path("cpu") / "cpu.cfs_quota_us").read_text() == "100000"
    groups.ensure(Limits.for_memory(64))  # convergent


def test_ensure_without_swap_accounting_skips_memsw(tmp_path):
    groups = fake_cgroups(tmp_path, memsw=None)
    groups.ensure(Limits.for_memory(64))
    assert not (groups.path("memory") / "memory.memsw.limit_in_bytes").exists()


def test_kill_all_repeats_until_the_groups_are_empty_and_reports_survivors(tmp_path):
    groups = fake_cgroups(tmp_path)
    for controller in sandbox.CONTROLLERS:
        groups.path(controller).mkdir(parents=True, exist_ok=True)
    procs = groups.path("pids") / "cgroup.procs"
    procs.write_text("11\n12\n")
    rounds = []

    def kill(pid, sig):
        assert sig == signal.SIGKILL
        rounds.append(pid)
        if pid == 11:
            raise ProcessLookupError
        procs.write_text("13\n" if len(rounds) == 2 else "")  # 12 forked 13 before it died

    reaped = []
    assert groups.kill_all(kill=kill, sleep=lambda s: None, reap=lambda pid, flags: reaped.append(pid)) == set()
    assert sorted(rounds) == [11, 12, 13] and sorted(reaped) == [11, 12, 13]

    procs.write_text("14\n")
    assert groups.kill_all(timeout=0.0, kill=kill, sleep=lambda s: None) == {14}


def test_remove_deletes_each_group_once_empty(tmp_path):
    groups = fake_cgroups(tmp_path)
    for controller in sandbox.CONTROLLERS:
        groups.path(controller).mkdir(parents=True, exist_ok=True)
    (groups.path("memory") / "memory.memsw.limit_in_bytes").unlink()
    assert groups.exists()
    groups.remove()
    assert not groups.exists()
    groups.remove()  # nothing left: no error


def test_modes(monkeypatch):
    assert sandbox.decide({"HOSTPLANE_SANDBOX": "off"}).sandboxed is False
    assert sandbox.decide({}, check=lambda: None).sandboxed is True
    auto = sandbox.decide({"HOSTPLANE_SANDBOX": "auto"}, check=lambda: "bwrap is not installed")
    assert (auto.sandboxed, auto.reason) == (False, "bwrap is not installed")
    assert auto.to_json() == {"requested": "auto", "mode": "off", "reason": "bwrap is not installed"}
    with pytest.raises(sandbox.SandboxUnavailable, match="bwrap is not installed"):
        sandbox.decide({"HOSTPLANE_SANDBOX": "required"}, check=lambda: "bwrap is not installed")
    with pytest.raises(ValueError, match="HOSTPLANE_SANDBOX"):
        sandbox.decide({"HOSTPLANE_SANDBOX": "maybe"})


def test_unavailable_reasons(tmp_path):
    assert "root" in sandbox.unavailable_reason(euid=1000)
    assert "bwrap" in sandbox.unavailable_reason(euid=0, which=lambda t: None)
    assert "memory" in sandbox.unavailable_reason(euid=0, which=lambda t: "/usr/bin/" + t, root=tmp_path)
    for controller in sandbox.CONTROLLERS:
        (tmp_path / controller).mkdir()
        (tmp_path / controller / "cgroup.procs").write_text("")
    assert sandbox.unavailable_reason(euid=0, which=lambda t: "/usr/bin/" + t, root=tmp_path) is None


def test_uid_follows_the_registered_port():
    assert sandbox.uid_for(41001, {}) == 241001
    assert sandbox.uid_for(41001, {"HOSTPLANE_SANDBOX_UID_BASE": "300000"}) == 341001


def test_private_files_replace_a_planted_symlink_instead_of_following_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "env.json").symlink_to(victim)
    sandbox.write_private(tmp_path / "env.json", b"{}", None)
    assert victim.read_text() == "keep"
    assert (tmp_path / "env.json").read_text() == "{}" and not (tmp_path / "env.json").is_symlink()
    assert (tmp_path / "env.json").stat().st_mode & 0o777 == 0o600


def test_parents_weigh_one_task_per_tenant_so_tenants_are_not_starved_under_load(tmp_path):
    for controller in sandbox.CONTROLLERS:
        (tmp_path / controller).mkdir()
    for tenant in ("a", "b", "c"):
        TenantCgroups(f"hostplane/home1/{tenant}", tmp_path).ensure(Limits.for_memory(64))
    TenantCgroups("hostplane/home2/d", tmp_path).ensure(Limits.for_memory(64))
    assert (tmp_path / "cpu" / "hostplane" / "home1" / "cpu.shares").read_text() == str(3 * sandbox.CPU_SHARES)
    assert (tmp_path / "cpu" / "hostplane" / "home2" / "cpu.shares").read_text() == str(sandbox.CPU_SHARES)
    assert (tmp_path / "cpu" / "hostplane" / "cpu.shares").read_text() == str(4 * sandbox.CPU_SHARES)


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="handing a folder to another uid needs root")
def test_a_runtime_folder_owned_by_someone_else_is_made_afresh_not_chowned(tmp_path):
    import os

    home = tmp_path / "home"
    folder = home / "runtime" / "acme"
    (folder / "work").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.write_text("root's")
    (folder / "work" / "link").symlink_to(outside)
    s = spec(home=home, artifacts=home / "artifacts", runtime_dir=folder, uid=241001)
    sandbox.prepare_folders(s)
    assert folder.stat().st_uid == 241001 and folder.stat().st_mode & 0o777 == 0o700
    assert list(folder.iterdir()) == []
    assert outside.stat().st_uid == os.getuid() and outside.read_text() == "root's"
    assert (home / "artifacts" / "acme").is_dir()
    (folder / "events.jsonl").write_text("kept")
    sandbox.prepare_folders(s)  # already the tenant's: left as it is
    assert (folder / "events.jsonl").read_text() == "kept"


def test_a_resolv_conf_linked_into_run_stays_readable(monkeypatch):
    real = __import__("os").path.realpath
    monkeypatch.setattr(sandbox.os.path, "realpath",
                        lambda p: "/run/systemd/resolve/stub-resolv.conf" if p == sandbox.RESOLV_CONF else real(p))
    args = sandbox.bwrap_args(spec())
    assert pairs(args, "--ro-bind-try") == ["/run/systemd/resolve/stub-resolv.conf"]
    assert {"/run", "/run/systemd", "/run/systemd/resolve"} <= set(pairs(args, "--dir"))


def test_a_homes_tenant_groups_are_found_in_any_controller(tmp_path):
    for controller in sandbox.CONTROLLERS:
        (tmp_path / controller).mkdir()
    group = sandbox.home_group(HOME)
    (tmp_path / "memory" / group / "acme").mkdir(parents=True)
    (tmp_path / "pids" / group / "beta").mkdir(parents=True)
    (tmp_path / "cpu" / sandbox.home_group(Path("/elsewhere")) / "other").mkdir(parents=True)
    found = TenantCgroups.of_home(HOME, tmp_path)
    assert sorted(found) == ["acme", "beta"] and found["acme"].group == f"{group}/acme"
    assert TenantCgroups.of_home(Path("/nowhere"), tmp_path) == {}
