"""What a project file may reach (`stages.core.trust`): a downloaded project cannot choose which secret
is sent or send it where the user did not choose, no secret lands in what a render writes, and every
file it names stays inside the project unless the user's own config allows a folder.

Each test names the hole it closes; every one of them failed before `core.trust` existed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import SMALL, TINY_SCRIPT, TINY_YAML, run_cli
from fake_hosted import FAL_KEY, FAL_KEY_ENV, FakeHosted, _raw
from fake_openai import provider_mp4  # noqa: F401 (a fixture)
from stages.core.errors import InputError

FAL = "backends:\n  video: fal\n  fal: {model: fal-ai/kling-video/v2.1/standard/image-to-video, api_key_env: %s}\n"


def make(tmp_path: Path, more: str = "", *, script: str = TINY_SCRIPT, name: str = "p") -> Path:
    root = tmp_path / name
    root.mkdir()
    (root / "project.yaml").write_text(TINY_YAML + SMALL + more, encoding="utf-8")
    (root / "script.fountain").write_text(script, encoding="utf-8")
    return root


def user_config(tmp_path: Path, monkeypatch, text: str) -> Path:
    path = tmp_path / "my-config.yaml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("DRAMAFORGE_CONFIG", str(path))
    return path


def load(root: Path):
    from stages.load_project import load_project

    return load_project(root)


def line_of(root: Path, needle: str) -> int:
    lines = (root / "project.yaml").read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


# --- which variable is sent -------------------------------------------------------------------------

@pytest.mark.parametrize("variable", ["GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY"])
def test_a_project_naming_another_secret_as_its_key_is_refused_by_check(tmp_path, variable):
    """Before: any variable passed check, and a render sent its value as the provider's key."""
    root = make(tmp_path, FAL % variable)
    proc = run_cli("check", str(root))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert f"project.yaml:{line_of(root, variable)}:" in out and variable in out and "Traceback" not in out
    assert "FAL_KEY" in out and "api_key_env" in out  # the fix: the provider's variable, or the user's config


def test_a_render_naming_another_secret_is_refused_before_any_work(tmp_path, monkeypatch):
    """Before: the render went on and sent $GITHUB_TOKEN to the provider."""
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_not-a-real-token")
    root = make(tmp_path, FAL % "GITHUB_TOKEN")
    proc = run_cli("render", str(root))
    assert proc.returncode == 2 and "GITHUB_TOKEN" in proc.stderr and "Traceback" not in proc.stderr
    assert not (root / "build").exists()


def test_the_users_config_allows_more_names_and_a_project_cannot(tmp_path, monkeypatch):
    """Before: there was no user config; any name passed. The provider's own variable and *_API_KEY
    names need no config."""
    load(make(tmp_path, FAL % "FAL_KEY", name="default"))
    load(make(tmp_path, FAL % "MYCORP_API_KEY", name="api-key"))
    root = make(tmp_path, FAL % "MYCORP_VIDEO_TOKEN")
    with pytest.raises(InputError, match="MYCORP_VIDEO_TOKEN"):
        load(root)
    user_config(tmp_path, monkeypatch, "api_key_env: ['MYCORP_*_TOKEN']\n")
    load(root)
    other = make(tmp_path, FAL % "MYCORP_VIDEO_TOKEN" + "api_key_env: ['*']\n", name="q")
    with pytest.raises(InputError, match="unknown key 'api_key_env'"):
        load(other)  # project.yaml extends nothing


def test_a_mistake_in_the_users_config_names_its_file_and_line(tmp_path, monkeypatch):
    path = user_config(tmp_path, monkeypatch, "allow_paths: []\napi_keys: ['X_*']\n")
    with pytest.raises(InputError) as err:
        load(make(tmp_path, FAL % "FAL_KEY"))
    assert err.value.file == str(path) and err.value.line == 2 and "unknown key 'api_keys'" in err.value.message


# --- where it is sent ---------------------------------------------------------------------------------

def test_an_address_carrying_a_password_is_refused(tmp_path):
    """Before: `https://user:pass@host` was used and recorded as written."""
    more = ("backends:\n  video: fal\n  fal: {model: a/b, queue_url: 'https://me:hunter2@queue.example.com'}\n")
    root = make(tmp_path, more)
    with pytest.raises(InputError) as err:
        load(root)
    assert err.value.line == line_of(root, "queue_url") and "hunter2" not in str(err.value)


def test_an_address_that_is_not_the_providers_is_refused_unless_the_user_allows_its_host(tmp_path, monkeypatch):
    """Before: a project could point the key at any host without a word. Now a host that is neither
    the provider's nor this machine's is refused at its line; one the user's own config allows is
    named by check and by the render's first line."""
    more = ("backends:\n  video: fal\n  fal: {model: a/b, queue_url: 'https://collector.example.com/q?token=abc'}\n"
            "planner: {kind: rules, base_url: 'https://unused.example.com/v1'}\n")
    root = make(tmp_path, more)
    proc = run_cli("check", str(root))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out, out
    assert f"project.yaml:{line_of(root, 'queue_url')}:" in out and "would send $FAL_KEY to" in out
    assert "allow_hosts" in out and "abc" not in out and "unused.example.com" not in out  # the rules planner sends nothing
    user_config(tmp_path, monkeypatch, "api_key_env: ['DRAMAFORGE_TEST_*']\nallow_hosts: ['*.example.com']\n")
    proc = run_cli("check", str(root), "--json")
    warnings = [w["message"] for w in json.loads(proc.stdout)["warnings"]]
    said = "backends.fal.queue_url: sends $FAL_KEY to https://collector.example.com/q?token=***"
    assert any(w.startswith(said) and "https://queue.fal.run" in w for w in warnings), warnings
    assert not any("unused.example.com" in w for w in warnings)  # the rules planner sends nothing
    proc = run_cli("render", str(root), "--dry-run")
    assert said in proc.stderr.splitlines()[0], proc.stderr
    assert "abc" not in proc.stdout + proc.stderr


def test_a_cloning_speech_provider_is_held_to_its_own_address_too(tmp_path):
    """A speech backend a character uses sends its key and the actor's clip: a foreign host is refused
    at its line, as a video backend's is; one nobody speaks with is not looked at."""
    from stages.check_project import check_project

    more = "backends:\n  minimax_tts: {base_url: 'https://speech.example.com'}\n"
    root = make(tmp_path, more)
    assert not check_project(root).errors  # no character speaks on it
    yaml = (root / "project.yaml").read_text(encoding="utf-8").replace(
        "    voice: {language: en-us, variant: f2, pitch: 60}\n",
        "    voice: {backend: minimax-tts, reference: ann.wav}\n")
    (root / "project.yaml").write_text(yaml, encoding="utf-8")
    errors = check_project(root).errors
    assert any("would send $MINIMAX_API_KEY to https://speech.example.com" in e["message"]
               and e["line"] == line_of(root, "minimax_tts") for e in errors), errors


def test_redaction_leaves_an_ordinary_address_and_its_key_unchanged():
    """Shot keys of ordinary addresses stay byte-identical (nothing is re-billed); a query's values go."""
    from stages.backends.openai_speech import OpenAIOptions, OpenAISpeechBackend
    from stages.core.trust import redact_url

    url = "http://127.0.0.1:8000/v1"
    assert redact_url(url) == url and redact_url(None) is None
    assert OpenAISpeechBackend(OpenAIOptions(base_url=url)).identity()["base_url"] == url
    secret = OpenAISpeechBackend(OpenAIOptions(base_url=url + "?key=s3cret&v=2")).identity()["base_url"]
    assert secret == url + "?key=***&v=***"


def test_a_body_that_is_not_json_is_described_never_quoted(monkeypatch):
    """Before: the first 120 characters of a proxy's page went into the message (ledger, status, reports)."""
    import httpx2

    from stages.backends._http import AnswerLost, Http

    monkeypatch.setenv("DRAMAFORGE_TEST_ECHO_KEY", "sk-echoed-0001")
    http = Http({}, what="fal (m)", key_env="DRAMAFORGE_TEST_ECHO_KEY")
    page = "<html>Authorization: Key sk-echoed-0001 MARKER</html>"
    for status in (502, 200):
        with pytest.raises(AnswerLost) as err:
            http.answer(httpx2.Response(status, text=page, headers={"content-type": "text/html"}), "polling")
        assert "MARKER" not in str(err.value) and "sk-echoed" not in str(err.value)
        assert f"a non-JSON body (text/html, {len(page)} bytes)" in str(err.value)
    with pytest.raises(Exception) as err:  # a provider's JSON words are still quoted, its key never
        http.answer(httpx2.Response(400, json={"detail": "bad key sk-echoed-0001"}), "submitting")
    assert "bad key ***" in str(err.value)


class EchoingProxy(FakeHosted):
    """The fal fake behind a proxy that answers some requests with a page quoting the request (its
    Authorization header and its address)."""

    def fault(self, h, kind, after=None):
        if kind in ("400", "502"):
            page = f"<html>{h.headers.get('Authorization')} {h.path} Bad Gateway</html>".encode()
            _raw(h, int(kind), page, "text/html")
            return True
        return super().fault(h, kind, after)


def test_a_render_leaves_no_secret_in_any_file_the_prefect_database_or_the_output(
        provider_mp4, tmp_path, tmp_path_factory, monkeypatch):
    """Before: the query key went into messages and the proxy's page (the key in it) into the ledger
    and reports. Every file under build/, Prefect's database and the command's output are searched."""
    query_secret = "q-secret-5d1e7a"
    monkeypatch.setenv(FAL_KEY_ENV, FAL_KEY)
    server = EchoingProxy(provider_mp4, price_per_second=0.05)
    server.faults.submit = ["400"]  # one shot fails on it: its message goes to the ledger, status, report
    server.faults.status = ["502", "502"]
    try:
        fal = {"model": "fal-ai/kling-video/v2.1/standard/image-to-video", "api_key_env": FAL_KEY_ENV,
               "queue_url": f"{server.fal_queue}?key={query_secret}", "api_url": server.fal_api,
               "durations": [1, 2], "poll_s": 0.02, "request_timeout_s": 2}
        root = make(tmp_path, f"backends:\n  video: fal\n  fal: {json.dumps(fal)}\n")
        proc = run_cli("render", str(root))
        status = run_cli("status", str(root), "--json")
        out = proc.stdout + proc.stderr + status.stdout + status.stderr
        assert proc.returncode == 1 and "1 shot(s) failed" in proc.stderr, out[-3000:]
        assert "a non-JSON body (text/html" in status.stdout, status.stdout[-3000:]
        assert server.count("status") >= 3 and server.created()  # the proxy's pages were met, shots made
        assert "sends $DRAMAFORGE_TEST_FAL_KEY to" in proc.stderr.splitlines()[0]
    finally:
        server.close()
    secrets = [query_secret.encode(), FAL_KEY.encode()]
    assert not [s for s in secrets if s in out.encode()]
    prefect = [Path(os.environ["PREFECT_HOME"]), *tmp_path_factory.getbasetemp().glob("prefect-server*")]
    searched = [p for folder in (root / "build", *prefect) for p in folder.rglob("*") if p.is_file()]
    assert any(p.name == "ledger.sqlite" for p in searched) and any(p.name.startswith("prefect.db") for p in searched)
    leaked = [(str(p), s) for p in searched for s in secrets if s in p.read_bytes()]
    assert not leaked


# --- which files it reads -----------------------------------------------------------------------------

@pytest.fixture
def outside(tmp_path) -> Path:
    """A real music file and image outside the project (in the project's parent folder)."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "song.mp3").write_bytes(b"ID3")
    (folder / "face.png").write_bytes(b"\x89PNG")
    return folder


@pytest.mark.parametrize("what", ["script", "music", "reference", "voice", "symlink", "cue"])
def test_a_file_outside_the_project_is_refused_by_check_with_its_line(tmp_path, outside, what):
    """Before: /etc/passwd, ../../x and a link out of the project all passed check (and a reference
    image outside was sent to the provider)."""
    from stages.check_project import check_project

    more, script, needle = "", TINY_SCRIPT, None
    if what == "script":
        more, needle = "script: /etc/passwd\n", "script:"
    elif what == "music":
        more, needle = "audio: {music: {file: ../elsewhere/song.mp3}}\n", "music"
    elif what == "reference":
        needle = "references"
    elif what == "voice":  # a clip a cloning provider would be sent
        more, needle = "", "reference:"
    elif what == "symlink":
        more, needle = "audio: {music: {file: song.mp3}}\n", "music"
    else:
        script = TINY_SCRIPT.replace("Steam rises", "[[music: ../../elsewhere/song.mp3]]\n\nSteam rises")
    if what == "reference":
        root = tmp_path / "p"
        root.mkdir()
        (root / "project.yaml").write_text(TINY_YAML.replace(
            "  - id: ann\n", f"  - id: ann\n    references: ['{outside / 'face.png'}']\n") + SMALL, encoding="utf-8")
        (root / "script.fountain").write_text(script, encoding="utf-8")
    elif what == "voice":
        root = tmp_path / "p"
        root.mkdir()
        (root / "project.yaml").write_text(TINY_YAML.replace(
            "    voice: {language: en-us, variant: f2, pitch: 60}\n",
            f"    voice: {{backend: elevenlabs, reference: '{outside / 'song.mp3'}'}}\n") + SMALL, encoding="utf-8")
        (root / "script.fountain").write_text(script, encoding="utf-8")
    else:
        root = make(tmp_path, more, script=script)
    if what == "symlink":
        (root / "song.mp3").symlink_to(outside / "song.mp3")
    report = check_project(root)
    assert report.errors, f"{what} passed"
    err = report.errors[0]
    assert "outside the project folder" in err["message"] and "allow_paths" in err["hint"]
    if needle is not None:
        assert err["file"].endswith("project.yaml") and err["line"] == line_of(root, needle)
    else:
        assert err["file"].endswith("script.fountain") and err["line"] == 7


def test_a_folder_the_users_config_allows_may_be_named(tmp_path, outside, monkeypatch):
    from stages.check_project import check_project

    root = make(tmp_path, f"audio: {{music: {{file: '{outside / 'song.mp3'}'}}}}\n")
    assert "outside the project folder" in check_project(root).errors[0]["message"]
    user_config(tmp_path, monkeypatch, f"allow_paths: ['{outside}']\n")
    assert not [e for e in check_project(root).errors if "outside" in e["message"]]


def test_a_local_model_folder_may_lie_in_the_hugging_face_cache_or_an_allowed_folder(tmp_path, monkeypatch):
    from stages.core import trust

    root = make(tmp_path)
    cache, mine = tmp_path / "hf", tmp_path / "models" / "tiny-sd"
    monkeypatch.setenv("HF_HOME", str(cache))
    trust.confined(cache / "hub" / "tiny", root, what="the model folder", models=True)
    with pytest.raises(InputError, match="outside the project folder"):
        trust.confined(mine, root, what="the model folder", models=True)
    with pytest.raises(InputError):  # the cache is for models only
        trust.confined(cache / "song.mp3", root, what="music file")
    user_config(tmp_path, monkeypatch, "allow_paths: ['%s']\n" % (tmp_path / "models"))
    trust.confined(mine, root, what="the model folder", models=True)


def test_a_projects_template_cannot_run_code_or_read_a_file_through_a_link(tmp_path):
    """A template in PROJECT/templates/ ran any Python (`cycler.__init__.__globals__.os`), and one that
    was a link to ~/.aws/credentials put that file into every prompt: both are refused with the file."""
    root = make(tmp_path)
    (root / "templates").mkdir()
    pwned = tmp_path / "PWNED"
    (root / "templates" / "shot_prompt.j2").write_text(
        "{{ cycler.__init__.__globals__.os.system('touch %s') }}" % pwned, encoding="utf-8")
    proc = run_cli("plan", str(root))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out, out[-2000:]
    assert "shot_prompt.j2" in out and "cannot be used" in out and not pwned.exists()

    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key = SHOULD-NOT-LEAVE", encoding="utf-8")
    (root / "templates" / "shot_prompt.j2").unlink()
    (root / "templates" / "shot_prompt.j2").symlink_to(secret)
    proc = run_cli("plan", str(root))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "outside its templates folder" in out and "Traceback" not in out, out[-2000:]
    assert not any("SHOULD-NOT-LEAVE" in p.read_text(errors="ignore") for p in (root / "build").rglob("*")
                   if p.is_file()) if (root / "build").exists() else True
