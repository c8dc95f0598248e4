"""The memory a group of processes holds that nothing outside the group maps: what the box
would get back if the group went away.

USS counts the pages only one process maps; once processes share pages with each other
(a worker forked from a zygote), those pages are in no one's USS, and a USS sum undercounts.
PSS splits each page among all its mappers, including unrelated processes (libpython, libc),
so a PSS sum mixes in a share of what the box holds anyway. This counts physical pages
exactly: a page belongs to the group when every mapping of it (/proc/kpagecount) is one of
the group's own (/proc/<pid>/pagemap). Needs root (page frame numbers are hidden otherwise).
"""

from __future__ import annotations

import os
import struct
from collections import Counter

PAGE = os.sysconf("SC_PAGE_SIZE")
_PRESENT, _PFN_MASK = 1 << 63, (1 << 55) - 1


def _frames(pid: int) -> list[int]:
    """The physical frames of every present page `pid` maps (one entry per mapping of a page)."""
    frames = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb", buffering=0) as pagemap:
        for line in maps:
            span = line.split(maxsplit=1)[0]
            start, end = (int(x, 16) for x in span.split("-"))
            if line.rstrip().endswith("[vsyscall]"):
                continue
            pagemap.seek(start // PAGE * 8)
            raw = pagemap.read((end - start) // PAGE * 8)
            for (entry,) in struct.iter_unpack("<Q", raw):
                if entry & _PRESENT and entry & _PFN_MASK:
                    frames.append(entry & _PFN_MASK)
    return frames


def private_mb(pids: list[int]) -> float:
    """MB of physical memory mapped only by `pids` (anonymous and file pages alike)."""
    mine = Counter()
    for pid in pids:
        mine.update(_frames(pid))
    private = 0
    with open("/proc/kpagecount", "rb", buffering=0) as counts:
        for pfn, mapped_here in mine.items():
            counts.seek(pfn * 8)
            (mapped,) = struct.unpack("<Q", counts.read(8))
            private += mapped <= mapped_here
    return round(private * PAGE / 2**20, 1)
