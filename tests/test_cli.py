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


def test_a_command_skips_the_interpreter_teardown_but_not_its_exit_code_output_or_anyones_exit_handler(
        tiny_project, tmp_path):
    """main() ends the process once every exit handler has run (flows/quick_exit.py):
    what the teardown would free is left to the kernel. A sitecustomize leaves an object whose finalizer
    only the teardown runs, and, in its second form, an exit handler registered before main()."""
    import os

    marks = tmp_path / "marks.txt"
    site = tmp_path / "site"
    site.mkdir()
    exe = [sys.executable, "-m", "flows.cli"]

    def run(*args: str, handler: bool):
        (site / "sitecustomize.py").write_text(
            "import atexit\n"
            "class _Mark:\n"
            f"    def __del__(self, open=open): open({str(marks)!r}, 'a').write('teardown\\n')\n"
            "_mark = _Mark()\n"
            + (f"atexit.register(lambda: open({str(marks)!r}, 'a').write('handler\\n'))\n" if handler else ""),
            encoding="utf-8")
        marks.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
        proc = subprocess.run([*exe, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
        return proc, marks.read_text() if marks.exists() else ""

    proc, seen = run("plan", str(REPO / "projects" / "demo"), "--json", handler=False)
    assert proc.returncode == 0 and seen == "", proc.stderr[-2000:]
    assert len(json.loads(proc.stdout)) == 3  # every byte of a long answer reached the pipe
    proc, seen = run("check", str(tmp_path / "nowhere"), handler=False)
    assert proc.returncode == 2 and "no project folder" in proc.stderr and seen == ""
    # someone's handler registered first would be skipped: the interpreter ends as it always does
    proc, seen = run("check", str(tiny_project), handler=True)
    assert proc.returncode == 0 and seen.split() == ["handler", "teardown"], (seen, proc.stderr[-2000:])
