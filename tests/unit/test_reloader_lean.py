"""reloader.lean: a cold worker imports uvicorn's and redis-py's modules without their package
inits, and code that asks those packages for a name gets exactly what it would have got.
Each case runs in a child interpreter: the deferral is process-wide."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INIT_ONLY = ["click", "multiprocessing", "uvicorn.main", "redis.cluster", "redis.asyncio.cluster",
             "redis.sentinel", "redis.asyncio.sentinel"]
# what reloader.worker and a generated app import from these packages
WORKER_IMPORTS = "import uvicorn.config, uvicorn.server, uvicorn.protocols.http.h11_impl, redis.asyncio.client\n"


def child(code: str, *, path: Path | None = None) -> dict:
    """Run `code` in a fresh interpreter; it prints one JSON object on its last line."""
    prefix = f"import sys; sys.path.insert(0, {str(path)!r})\n" if path else ""
    out = subprocess.run([sys.executable, "-c", prefix + textwrap.dedent(code)], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_cold_worker_imports_uvicorn_and_redis_without_their_package_inits():
    """Through reloader.worker run as a program (as the reloader starts it), stopped at --help."""
    loaded = child(f"""
        import json, runpy, sys
        sys.argv = ["reloader.worker", "--help"]
        try:
            runpy.run_module("reloader.worker", run_name="__main__", alter_sys=True)
        except SystemExit:
            pass
        import uvicorn.lifespan.on  # loaded by the worker's Config.load(): `from uvicorn import Config`
        from redis.asyncio.client import Redis  # as a generated app's lifespan does
        Redis.from_url("redis://127.0.0.1:1/0")
        print(json.dumps({{"loaded": [m for m in {INIT_ONLY!r} if m in sys.modules]}}))
    """)
    assert loaded == {"loaded": []}


def test_imported_as_a_module_the_worker_leaves_the_packages_alone():
    """The zygote (and a test) import reloader.worker: uvicorn's init runs as usual there."""
    loaded = child("""
        import json, sys
        import reloader.worker
        print(json.dumps({"click": "click" in sys.modules, "finders": [type(f).__name__ for f in sys.meta_path]}))
    """)
    assert loaded["click"] is True and "_Finder" not in loaded["finders"]


def surface(defer: bool) -> dict:
    """Every public name of uvicorn, redis and redis.asyncio, with its value's type, after the
    worker's imports, then a first use of each package (deferred or not)."""
    return child(f"""
        import json, sys
        if {defer}:
            from reloader.lean import defer_inits
            defer_inits()
        {WORKER_IMPORTS}
        before = [m for m in {INIT_ONLY!r} if m in sys.modules]
        import importlib.metadata, uvicorn, redis, redis.asyncio as aredis
        from uvicorn import run, main, Config, Server
        assert callable(main) and uvicorn.main is main, "the init's main(), not the submodule"
        assert aredis.from_url("redis://127.0.0.1:1/0").__class__ is aredis.client.Redis
        assert redis.__version__ == importlib.metadata.version("redis")
        assert uvicorn.__version__ == importlib.metadata.version("uvicorn")
        for pkg in (uvicorn, redis, aredis):
            getattr(pkg, "__all__", None)  # as `from pkg import *` asks: a name only the whole init binds
        names = {{pkg.__name__: {{n: type(getattr(pkg, n)).__name__ for n in dir(pkg) if not n.startswith("__")}}
                 for pkg in (uvicorn, redis, aredis)}}
        print(json.dumps({{"before": before, "names": names}}))
    """)


def test_the_packages_look_the_same_to_code_that_uses_them():
    plain, lean = surface(defer=False), surface(defer=True)
    assert lean["before"] == [] and "click" in plain["before"]
    assert lean["names"] == plain["names"]
    assert "Redis" in lean["names"]["redis"] and "run" in lean["names"]["uvicorn"]


def write_package(root: Path, name: str, files: dict[str, str]) -> None:
    (root / name).mkdir()
    for file, text in files.items():
        (root / name / file).write_text(textwrap.dedent(text))


def test_a_package_module_importing_a_sibling_through_the_package_does_not_run_the_init(tmp_path):
    """redis.asyncio.client's `from redis.asyncio import _himport_exec`, in small: running the
    init there would import the half-imported client again and fail."""
    write_package(tmp_path, "circ", {"__init__.py": "from circ.client import Client\nINIT = True\n",
                                     "client.py": "from circ import helper\nclass Client:\n    pass\n",
                                     "helper.py": "X = 1\n"})
    got = child("""
        import json, sys
        from reloader.lean import defer_inits
        defer_inits(("circ",))
        from circ.client import Client
        ran_before = "INIT" in sys.modules["circ"].__dict__
        import circ
        print(json.dumps({"ran_before": ran_before, "same": circ.Client is Client, "init": circ.INIT}))
    """, path=tmp_path)
    assert got == {"ran_before": False, "same": True, "init": True}


def test_a_name_the_init_binds_over_a_submodule_is_the_inits(tmp_path):
    """uvicorn's `main` in small: the package's main is the function its init imports."""
    write_package(tmp_path, "shadow", {"__init__.py": "from shadow.main import main\n",
                                       "main.py": "def main():\n    return 'function'\n",
                                       "other.py": "Y = 2\n"})
    got = child("""
        import json
        from reloader.lean import defer_inits
        defer_inits(("shadow",))
        import shadow.other
        from shadow import main
        print(json.dumps({"main": main()}))
    """, path=tmp_path)
    assert got == {"main": "function"}


def test_an_init_that_fails_fails_at_every_use_as_it_would_have_at_import(tmp_path):
    write_package(tmp_path, "brittle", {"__init__.py": "raise RuntimeError('init refused')\n",
                                        "part.py": "X = 1\n"})
    got = child("""
        import json
        from reloader.lean import defer_inits
        defer_inits(("brittle",))
        import brittle.part
        errors = []
        for _ in range(2):
            try:
                brittle.anything
            except RuntimeError as exc:
                errors.append(str(exc))
        print(json.dumps({"part": brittle.part.X, "errors": errors}))
    """, path=tmp_path)
    assert got == {"part": 1, "errors": ["init refused", "init refused"]}


def test_a_name_the_init_only_imports_comes_from_its_module_alone(tmp_path):
    """`from uvicorn import Config` needs uvicorn.config, not the command line in uvicorn.main;
    a name the init binds again afterwards is the init's."""
    write_package(tmp_path, "rebind", {"__init__.py": "from rebind.a import thing, other\nthing = thing + 1\n",
                                       "a.py": "thing = 1\nother = 'a'\n", "b.py": "\n"})
    got = child("""
        import json, sys
        from reloader.lean import defer_inits
        defer_inits(("uvicorn", "rebind"))
        from uvicorn import Config
        import uvicorn.config
        same, click = Config is uvicorn.config.Config, "click" in sys.modules
        import rebind.b
        from rebind import other
        ran = "thing" in sys.modules["rebind"].__dict__
        from rebind import thing
        print(json.dumps({"same": same, "click": click, "other": other, "ran": ran, "thing": thing}))
    """, path=tmp_path)
    assert got == {"same": True, "click": False, "other": "a", "ran": False, "thing": 2}


@pytest.mark.parametrize("already", [True, False])
def test_a_package_already_imported_is_not_deferred(already):
    got = child(f"""
        import json, sys
        if {already}:
            import uvicorn
        from reloader.lean import defer_inits
        defer_inits(("uvicorn",))
        import uvicorn.config
        print(json.dumps({{"click": "click" in sys.modules}}))
    """)
    assert got == {"click": already}


def test_another_finder_that_asks_every_finder_does_not_loop_with_ours():
    """An import hook that, like ours, asks the finders after it (a profiler, a coverage tool)."""
    got = child("""
        import json, sys
        from reloader.lean import defer_inits

        class Asking:
            def find_spec(self, name, path, target=None):
                for finder in sys.meta_path:
                    if finder is not self and hasattr(finder, "find_spec"):
                        if (spec := finder.find_spec(name, path, target)) is not None:
                            return spec

        defer_inits(("uvicorn",))
        sys.meta_path.insert(0, Asking())
        import uvicorn.config
        from uvicorn import Config
        print(json.dumps({"same": Config is uvicorn.config.Config, "click": "click" in sys.modules}))
    """)
    assert got == {"same": True, "click": False}
