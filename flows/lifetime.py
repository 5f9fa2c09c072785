"""Every process a render starts ends when the render ends, however it ends.

A render starts Prefect's temporary server (a uvicorn process) and many ffmpeg processes. A kill -9
of the render process alone (what the OOM killer does) would leave them running: the server for
good, an ffmpeg still writing into build/. So the command that renders first calls `tie_children`:

* it marks its environment with a token (`DRAMAFORGE_RUN`) that every child inherits, however it
  is started (Prefect's server, ffmpeg, a child's own children);
* it starts one small watcher (`python -m flows.lifetime`) holding the read end of a pipe whose write
  end only the render holds. When the render ends (normally, by an exception, by SIGKILL), the
  kernel closes that end; the watcher wakes, kills every process whose environment carries the
  token, and exits. No pid is guessed: a process is ours by what it inherited.

The watcher ignores Ctrl-C and hang-ups (they reach the render, which ends, which wakes it).
"""

from __future__ import annotations

import os
import signal
import sys
import time

TOKEN = "DRAMAFORGE_RUN"
_held: list[int] = []  # the pipe's write end, held open for this process's life


def tie_children() -> None:
    """Make every process started from now on end when this one ends (once per process)."""
    import secrets
    import subprocess

    mine = f"{os.getpid()}-{secrets.token_hex(6)}"
    if _held or not sys.platform.startswith("linux"):
        return
    os.environ[TOKEN] = mine
    read, write = os.pipe()  # both ends close-on-exec: no child but the watcher gets one
    try:
        subprocess.Popen([sys.executable, "-m", "flows.lifetime", mine], stdin=read, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, close_fds=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    finally:
        os.close(read)
    _held.append(write)
    # a child forked without exec (multiprocessing's fork) must not hold the pipe open past the render
    os.register_at_fork(after_in_child=_let_go)


def _let_go() -> None:
    while _held:
        os.close(_held.pop())


def ours(token: str) -> list[int]:
    """Processes (other than this one) whose environment carries `token`."""
    needle = f"{TOKEN}={token}".encode() + b"\0"
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
        except OSError:  # gone, or not ours to read
            continue
        if (b"\0" + env).find(b"\0" + needle) >= 0:
            found.append(int(name))
    return found


def end_all(token: str, *, rounds: int = 20) -> int:
    """SIGKILL every process carrying `token` (again, for any started meanwhile); returns how many."""
    killed: set[int] = set()
    for _ in range(rounds):
        left = ours(token)
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        time.sleep(0.05)
    return len(killed)


def _watch(token: str) -> None:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    try:
        while os.read(0, 4096):  # nothing is ever written: this returns b"" once the render has ended
            pass
    except OSError:
        pass
    end_all(token)


if __name__ == "__main__":
    _watch(sys.argv[1])
