"""What the benchmarks read of processes from /proc (Linux): children, CPU seconds, the machine's busy time, the
postmaster of a port."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def tree(pid: int) -> list[int]:
    """The process and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def cpu_seconds(pids: Iterable[int], tree: bool = False) -> float:
    """CPU seconds (user + system) the processes have used, with their descendants when `tree`; processes that
    are gone count nothing."""
    todo, total = list(pids), 0
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if tree:
            todo += children(pid)
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (user, nice, system, irq, softirq, steal)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    busy = values[0] + values[1] + values[2] + values[5] + values[6] + (values[7] if len(values) > 7 else 0)
    return busy / os.sysconf("SC_CLK_TCK")


def postmaster_of(port: int) -> int | None:
    """The PostgreSQL postmaster started with `-p port`, if it runs on this machine."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"postgres") and b"-p" in cmd and str(port).encode() in cmd:
            return int(entry.name)
    return None
