"""Server-rendered HTML: one table of rows per page. Every value is escaped."""

from __future__ import annotations

from html import escape
from typing import Any

from .schema import Entity, Page


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return escape(str(value))


def render_page(title: str, page: Page, entity: Entity, rows: list[dict[str, Any]], pages: list[Page],
                stylesheets: tuple[str, ...] = ()) -> str:
    columns = ["id", *(f.name for f in entity.fields)]
    heads = "".join(f"<th>{escape((entity.field(c).label if entity.field(c) else None) or c)}</th>"
                    for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    nav = " | ".join(f'<a href="{escape(p.path)}">{escape(p.title)}</a>' for p in pages)
    empty = "" if rows else f"<p>No {escape(entity.label or entity.name)} yet.</p>"
    links = "".join(f'<link rel="stylesheet" href="{escape(href)}">' for href in stylesheets)
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(page.title)} · {escape(title)}'
            f'</title>{links}</head><body><nav>{nav}</nav>'
            f"<h1>{escape(page.title)}</h1><table><thead><tr>{heads}</tr></thead><tbody>{body}</tbody>"
            f"</table>{empty}</body></html>")
