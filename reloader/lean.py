"""Package inits a cold app worker runs only when someone asks for what they define.

`import uvicorn.config` runs `uvicorn/__init__.py` first, which imports uvicorn's command
line (click, multiprocessing) for a `main` the worker never runs; `redis/__init__.py` and
`redis/asyncio/__init__.py` import the cluster, sentinel and keyspace-notification clients
beside the one client an app uses. Without those inits a running tenant is 1.5 MB (sample
app) to 3.3 MB (generated app) smaller: bench/runtime_memory.py, bench/density.py.

Nothing changes for code that uses the package as usual. The package module is the real one
(its __path__, __spec__ and submodules as always), of a ModuleType subclass until its init
runs. A name it lacks is then, in order:
- a submodule, left to the import system, while one of the package's own modules is being
  imported: what Python does while a package's init runs. redis.asyncio.client does
  `from redis.asyncio import _himport_exec`; running the init there would import the
  half-imported client again;
- a name the init binds once and only by a top-level `from M import name` (uvicorn's
  `Config`, which uvicorn.lifespan.on imports from the package): that import, run alone;
- anything else (`from uvicorn import *`, `uvicorn.__version__`): the whole init, once, in
  the same module object, then the answer.
When the import system records a submodule on the package over a name the init binds to
something else (importing uvicorn.main sets `uvicorn.main`, the init's function), the init's
binding is recorded instead. The only visible difference left is `dir(package)` listing fewer
names before the init runs.

Used by the cold worker only (`python -I -m reloader.worker`): the zygote imports these
packages whole, since its forked workers are replaced by cold ones once it retires.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

DEFERRED = ("uvicorn", "redis", "redis.asyncio")


class _Finder:
    """On sys.meta_path ahead of the usual finders: wraps the loaders of the deferred packages
    (and counts the imports of their modules in progress) until each package's init has run."""

    def __init__(self, packages: tuple[str, ...]) -> None:
        self.pending = set(packages)  # deferred packages not yet imported or whose init has not run
        self.importing: dict[str, int] = {}  # package → imports of its modules in progress
        self.resolving: set[str] = set()  # names this finder is asking the others about

    def find_spec(self, name: str, path: Any, target: ModuleType | None = None) -> Any:
        owners = [p for p in self.pending if name.startswith(p + ".") or name == p]
        if not owners or name in self.resolving:  # a finder that asks all the others asks us back
            return None
        self.resolving.add(name)
        try:
            spec = self._real_spec(name, path, target)
        finally:
            self.resolving.discard(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        if name in owners and spec.submodule_search_locations is not None:
            spec.loader = _DeferredInit(spec.loader, self, name, owners)
        else:
            spec.loader = _Counted(spec.loader, self, [o for o in owners if o != name])
        return spec

    def _real_spec(self, name: str, path: Any, target: ModuleType | None) -> Any:
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            if (spec := finder.find_spec(name, path, target)) is not None:
                return spec
        return None

    def busy(self, package: str) -> bool:
        return self.importing.get(package, 0) > 0


class _Counted:
    """A module of a deferred package: its import is counted as in progress while it runs."""

    def __init__(self, loader: Any, finder: _Finder, packages: list[str]) -> None:
        self.loader, self.finder, self.packages = loader, finder, packages

    def create_module(self, spec: Any) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        for p in self.packages:
            self.finder.importing[p] = self.finder.importing.get(p, 0) + 1
        try:
            self.loader.exec_module(module)
        finally:
            for p in self.packages:
                self.finder.importing[p] -= 1


class _DeferredInit(_Counted):
    """The package itself: created as usual, but as a _PendingPackage whose init waits for the
    first name asked of it."""

    def __init__(self, loader: Any, finder: _Finder, package: str, packages: list[str]) -> None:
        super().__init__(loader, finder, packages)  # its init is an import of each of `packages`
        self.package = package
        self.imported: dict[str, tuple[str, str]] = {}

    def exec_module(self, module: ModuleType) -> None:
        self.imported = _imported_names(self.loader, self.package)
        module.__dict__["_lean_init"] = self
        module.__class__ = _PendingPackage

    def run(self, module: ModuleType) -> None:
        """The init itself, in the package's own module, as a plain module again."""
        module.__class__ = ModuleType
        del module.__dict__["_lean_init"]
        self.finder.pending.discard(self.package)
        try:
            _Counted.exec_module(self, module)
        except BaseException:
            module.__dict__["_lean_init"] = self  # the next access fails alike
            module.__class__ = _PendingPackage
            self.finder.pending.add(self.package)
            raise


class _PendingPackage(ModuleType):
    """A package whose init has not run. A name it lacks is, in order: a submodule left to the
    import system (while one of its own modules imports); the init's own `from M import name`,
    run alone; or the init, run whole. And when the import system records a submodule over a
    name the init binds to something else (uvicorn.main is the init's function), the init's
    binding is recorded instead, as it would have been after the init."""

    def __getattr__(self, name: str) -> Any:
        init = self.__dict__.get("_lean_init")
        if init is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        if init.finder.busy(init.package) and _is_submodule(self, name):
            raise AttributeError(name)  # the import system imports the submodule itself
        if name in init.imported:
            value = _import_from(*init.imported[name])
            self.__dict__[name] = value
            return value
        init.run(self)
        return getattr(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        init = self.__dict__.get("_lean_init")
        if init is not None and name in init.imported and isinstance(value, ModuleType) \
                and value.__name__ == f"{self.__name__}.{name}" and init.imported[name][0] == value.__name__:
            value = _import_from(*init.imported[name])  # `from pkg.name import name` in the init
        super().__setattr__(name, value)


def _imported_names(loader: Any, package: str) -> dict[str, tuple[str, str]]:
    """The names `package`'s init binds once and only by a top-level `from M import attr`
    (name → (M, attr)): asking for one needs M, not the rest of the init. None at all when
    the init could bind names another way (a star import, globals(), setattr, exec)."""
    import ast
    import importlib.util

    try:
        tree = ast.parse(loader.get_source(package) or "")
    except Exception:  # noqa: BLE001 (no source, or unreadable: run the whole init)
        return {}
    bound: dict[str, int] = {}

    def bind(name: str) -> None:
        bound[name] = bound.get(name, 0) + 1

    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id in ("globals", "vars", "setattr", "exec", "eval", "__import__"):
                return {}
            if not isinstance(node.ctx, ast.Load):
                bind(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in ("__dict__", "modules"):
            return {}
        elif isinstance(node, ast.alias):
            if node.name == "*":
                return {}
            bind(node.asname or node.name.split(".")[0])
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bind(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            for name in node.names:
                bind(name)
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            bind(node.name)
    found = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            source = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            if source == package:
                continue  # `from . import x`: a submodule, which the import system brings
            for alias in node.names:
                name = alias.asname or alias.name
                if bound.get(name) == 1:
                    found[name] = (source, alias.name)
    return found


def _import_from(source: str, attr: str) -> Any:
    """What `from source import attr` gives."""
    module = importlib.import_module(source)
    try:
        return getattr(module, attr)
    except AttributeError:
        return importlib.import_module(f"{source}.{attr}")


def _is_submodule(package: ModuleType, name: str) -> bool:
    return importlib.machinery.PathFinder.find_spec(f"{package.__name__}.{name}", package.__path__) is not None


def defer_inits(packages: tuple[str, ...] = DEFERRED) -> None:
    """Defer the inits of `packages` not yet imported in this process (see the module doc)."""
    todo = tuple(p for p in packages if p not in sys.modules)
    if todo and not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder(todo))
