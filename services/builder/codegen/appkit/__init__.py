"""The generated app's library: what every generated app shares (validation, SQL, cache,
pages, health). Copied into each artifact next to the generated `app.py`, so a release
needs only the runtime's platform libraries (starlette, uvicorn, asyncpg, redis)."""

from .schema import Entity, Field, Page
from .web import build_app

__all__ = ["Entity", "Field", "Page", "build_app"]
