"""The command line as a user meets it: help, check, new, schema, plan, and errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, run_cli


def test_help_lists_commands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for cmd in ("render", "plan", "check", "new", "schema"):
        assert cmd in proc.stdout


def test_check_demo_json_counts():
    proc = run_cli("check", str(REPO / "projects" / "demo"), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["episodes"], data["scenes"], data["lines"]) == (3, 6, 19)
    assert {c["id"] for c in data["characters"]} == {"mara", "elias", "jun"}
    assert data["errors"] == [] and isinstance(data["warnings"], list)


def test_check_reports_bad_yaml_with_exit_2(tiny_project):
    (tiny_project / "project.yaml").write_text("title: X\nfsp: 30\n", encoding="utf-8")
    proc = run_cli("check", str(tiny_project))
    assert proc.returncode == 2
    assert "project.yaml:2" in proc.stderr and "fsp" in proc.stderr and "Traceback" not in proc.stderr
    data = json.loads(run_cli("check", str(tiny_project), "--json").stdout)
    assert data["errors"][0]["line"] == 2


def test_check_warns_unknown_character_and_cjk_with_english_voice(tiny_project):
    script = tiny_project / "script.fountain"
    script.write_text(script.read_text(encoding="utf-8") + "\nCLEM\nWho are you?\n\nANN\n你好。\n", encoding="utf-8")
    data = json.loads(run_cli("check", str(tiny_project), "--json").stdout)
    messages = " ".join(w["message"] for w in data["warnings"])
    assert "not in project.yaml's cast" in messages and "cannot speak the CJK" in messages


def test_render_refuses_bad_episode_spec_before_starting(tiny_project):
    proc = run_cli("render", str(tiny_project), "--episodes", "2-4")
    assert proc.returncode == 2 and "no episode 2" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tiny_project / "build").exists()


def test_new_from_sample_and_check(tmp_path):
    dest = tmp_path / "fresh"
    proc = run_cli("new", str(dest))
    assert proc.returncode == 0, proc.stderr
    assert (dest / "project.yaml").exists() and (dest / "references").is_dir() and (dest / "music").is_dir()
    data = json.loads(run_cli("check", str(dest), "--json").stdout)
    assert data["errors"] == [] and data["lines"] == 2
    assert any("placeholder" in w["message"] for w in data["warnings"])
    again = run_cli("new", str(dest))
    assert again.returncode == 2 and "already has a project.yaml" in again.stderr


def test_schema_is_json_schema(tmp_path):
    out = tmp_path / "s.json"
    assert run_cli("schema", "--out", str(out)).returncode == 0
    schema = json.loads(out.read_text())
    assert "cast" in schema["properties"] and schema["additionalProperties"] is False


def test_plan_json_is_shotlists():
    proc = run_cli("plan", str(REPO / "projects" / "demo"), "--episodes", "1", "--json")
    data = json.loads(proc.stdout)
    assert data[0]["episode"] == 1 and data[0]["shots"][0]["id"] == "ep01-sc01-sh001"


def test_the_default_path_never_imports_torch_or_model_runtimes():
    """Every module a default render loads, every backend constructed for its identity (as `status`
    does): none of the heavy model runtimes is imported."""
    code = (
        "import sys, importlib, pkgutil, stages, flows\n"
        "for m in pkgutil.walk_packages(stages.__path__, 'stages.'): importlib.import_module(m.name)\n"
        "for m in pkgutil.walk_packages(flows.__path__, 'flows.'): importlib.import_module(m.name)\n"
        "from stages.schema import Project\n"
        "from stages.backends.registry import make_video_backend, make_image_backend, make_speech_backend\n"
        "p = Project.model_validate({'title': 't', 'backends': {'video': 'diffusers', 'diffusers': "
        "{'pipeline': 'WanPipeline', 'model': '/m'}, 'image': {'kind': 'diffusers', 'pipeline': 'FluxPipeline', "
        "'model': '/m'}}})\n"
        "make_video_backend(p.backends).identity(); make_image_backend(p.backends.image).identity()\n"
        "[make_speech_backend(n, p.backends).identity() for n in ('espeak', 'piper', 'openai')]\n"
        "heavy = {'torch', 'diffusers', 'transformers', 'piper', 'onnxruntime', 'accelerate'} & set(sys.modules)\n"
        "print(sorted(heavy))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", proc.stdout
