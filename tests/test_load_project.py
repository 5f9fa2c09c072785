import pytest

from stages.core.errors import InputError
from stages.load_project import read_project_yaml


def _write(tmp_path, text):
    p = tmp_path / "project.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_unknown_key_names_line_and_allowed_keys(tmp_path):
    p = _write(tmp_path, "title: X\ncast:\n  - id: a\n    name: A\n    description: d\n    voise: {}\n")
    with pytest.raises(InputError) as e:
        read_project_yaml(p)
    err = e.value
    assert err.line == 6 and "voise" in err.message and "voice" in err.hint and err.file == str(p)
    assert err.exit_code == 2


def test_wrong_type_and_bad_value(tmp_path):
    with pytest.raises(InputError) as e:
        read_project_yaml(_write(tmp_path, "title: X\nfps: fast\n"))
    assert e.value.line == 2 and "fps" in e.value.message
    with pytest.raises(InputError) as e:
        read_project_yaml(_write(tmp_path, "title: X\nbackends:\n  video: sora\n"))
    assert e.value.line == 3 and "animatic" in (e.value.hint or "")


def test_missing_title_and_bad_yaml(tmp_path):
    with pytest.raises(InputError, match="title"):
        read_project_yaml(_write(tmp_path, "style: x\n"))
    with pytest.raises(InputError) as e:
        read_project_yaml(_write(tmp_path, "title: [unclosed\n"))
    assert e.value.line is not None


def test_odd_size_refused(tmp_path):
    with pytest.raises(InputError, match="even"):
        read_project_yaml(_write(tmp_path, "title: X\nwidth: 1081\n"))


def test_demo_project_is_valid():
    from conftest import REPO

    p = read_project_yaml(REPO / "projects" / "demo" / "project.yaml")
    assert len(p.cast) == 3 and (p.width, p.height, p.fps) == (1080, 1920, 30)
    assert len({(c.voice.language, c.voice.variant, c.voice.pitch) for c in p.cast}) == 3
