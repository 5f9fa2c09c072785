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


def test_a_ledger_row_trusts_only_the_very_file_it_recorded(tmp_path):
    """`Row.unchanged`: the file a done unit made and checked, with the same size and modification
    time, is reused without a decode; rewritten (even to the same size), cut short or another path is not."""
    import os

    from stages.core.ledger import Kind, Ledger

    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"x" * 100)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.start("s1", kind=Kind.SHOT, episode=1, spec_hash="k")
    ledger.done("s1", spec_hash="k", kind=Kind.SHOT, episode=1, artifact=clip, sha256=None)
    row = ledger.get("s1")
    assert row.unchanged(clip) and not row.unchanged(tmp_path / "b.mp4")
    st = clip.stat()
    clip.write_bytes(b"y" * 100)  # same size, new bytes: a new modification time
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert not row.unchanged(clip)
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert row.unchanged(clip)  # only size and time are compared: what the render's own writes change
    clip.write_bytes(b"x" * 50)
    assert not ledger.get("s1").unchanged(clip)
    ledger.fail("s1", state="failed", error_class="X", message="m")
    clip.write_bytes(b"x" * 100)
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert not ledger.get("s1").unchanged(clip)  # not done: nothing to trust
