import os
from pathlib import Path

import pytest

from stages.core.artifacts import atomic_path, is_done, spec_hash, sweep_partials, write_text_atomic


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


def test_sweep_partials(tmp_path):
    (tmp_path / ".abc.123.part.mp4").write_bytes(b"x")
    (tmp_path / "keep.mp4").write_bytes(b"x")
    assert sweep_partials(tmp_path) == 1
    assert os.listdir(tmp_path) == ["keep.mp4"]
