import os
from pathlib import Path

import pytest

from stages.core.artifacts import atomic_path, is_done, partial_file, spec_hash, sweep_partials, write_text_atomic


def test_spec_hash_is_stable_and_sensitive():
    a = spec_hash("shot", {"prompt": "x", "seed": 1, "d": 1.0})
    assert a == spec_hash("shot", {"seed": 1, "d": 1.0000000001, "prompt": "x"})  # key order, float noise
    assert a != spec_hash("shot", {"prompt": "x", "seed": 2, "d": 1.0})
    assert a != spec_hash("shot", {"prompt": "x", "seed": 1, "d": 1.0}, version=999)
    assert a != spec_hash("speech", {"prompt": "x", "seed": 1, "d": 1.0})


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "a.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_validation_failure_keeps_final_absent(tmp_path):
    final = tmp_path / "a.txt"

    def bad(p: Path) -> None:
        raise ValueError("corrupt")

    with pytest.raises(ValueError):
        with atomic_path(final, validate=bad) as tmp:
            tmp.write_text("data")
    assert not final.exists()


def test_is_done_removes_invalid_and_reports_why(tmp_path, caplog):
    p = tmp_path / "x.bin"
    assert not is_done(p) and is_done(p).reason == "missing"
    p.write_bytes(b"")
    assert not is_done(p)
    assert not p.exists()  # an empty file is removed so it is remade
    write_text_atomic(p, "ok")

    def check(path: Path) -> None:
        if path.read_text() != "ok":
            raise ValueError("wrong content")

    assert is_done(p, check)
    p.write_text("truncated")
    done = is_done(p, check)
    assert not done and "wrong content" in done.reason and not p.exists()


def test_sweep_partials_removes_only_what_a_gone_process_left(tmp_path):
    import subprocess
    import sys
    import time

    from stages.core.artifacts import owner as _owner

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host, pid, start = _owner().split("-")
    (tmp_path / ".abc.123.part.mp4").write_bytes(b"x")  # named before the writer was in the name
    (tmp_path / f".abc.by-{host}-{int(gone.stdout)}-1-x1.part.mp4").write_bytes(b"x")  # that process has exited
    (tmp_path / f".abc.by-{host}-{pid}-{int(start) + 1}-x2.part.mp4").write_bytes(b"x")  # this pid, an earlier life
    fresh = tmp_path / ".abc.by-otherhost-77-5-x3.part.mp4"  # another machine on a shared build folder
    stale = tmp_path / ".abc.by-otherhost-78-5-x4.part.mp4"
    fresh.write_bytes(b"x")
    stale.write_bytes(b"x")
    old = time.time() - 2 * 24 * 3600
    os.utime(stale, (old, old))
    fd, mine = partial_file(tmp_path, "abc", ".mp4")  # this process is still writing it
    os.close(fd)
    (tmp_path / "keep.mp4").write_bytes(b"x")
    assert sweep_partials(tmp_path) == 4
    assert sorted(os.listdir(tmp_path)) == sorted([mine.name, fresh.name, "keep.mp4"])
    assert mine.name.startswith(f".abc.by-{_owner()}-") and mine.name.endswith(".part.mp4")
