"""Orchestration under pressure: what an edit redoes, failure limits, Retry-After, concurrency
gates, two renders at once, and the run report (in Prefect and on disk)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import COUNTING, REPO, SMALL, TINY_YAML, TWO_EPISODES, espeak_clip, run_cli
from conftest import chaos_calls as _calls
from flows.limits import Gate
from flows.tasks import _transient_only
from stages.backends.base import PermanentError, TransientError
from stages.core.ledger import Ledger
from stages.core.loudness import measure_ebur128

def _status(root: Path) -> dict:
    proc = run_cli("status", str(root), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def two_episodes(tmp_path) -> Path:
    root = tmp_path / "two"
    root.mkdir()
    (root / "project.yaml").write_text(TINY_YAML + SMALL + COUNTING, encoding="utf-8")
    (root / "script.fountain").write_text(TWO_EPISODES, encoding="utf-8")
    return root


def test_an_edited_line_redoes_its_shot_speech_and_episode_only(two_episodes):
    root = two_episodes
    first = run_cli("render", str(root))
    assert first.returncode == 0, first.stderr[-2000:]
    build = root / "build"
    ledger = Ledger(build / "ledger.sqlite")
    before = {r.id: r for r in ledger.rows()}
    assert {r.kind for r in before.values()} == {"shot", "speech", "episode"}
    assert before["ep01"].state == before["ep02"].state == "done"
    loud = measure_ebur128(build / "episodes" / "ep01.mp4")  # the delivered file, after AAC
    assert abs(loud.integrated_lufs - -14.0) <= 1.0 and loud.true_peak_dbtp <= -1.0, loud
    mp4_before = {p.name: p.stat().st_mtime_ns for p in (build / "episodes").glob("*.mp4")}
    wav_before = {p.name for p in (build / "speech").glob("*.wav")}
    calls_before = len(_calls(root))

    script = root / "script.fountain"
    script.write_text(script.read_text().replace("Take the umbrella.", "Take my umbrella."), encoding="utf-8")
    eps = {e["id"]: e for e in _status(root)["episodes"]}
    assert (eps["ep01"]["assembly"], eps["ep02"]["assembly"]) == ("done", "stale")
    stale = [s["id"] for e in eps.values() for s in e["shots"] if s["state"] == "stale"]
    assert len(stale) == 1 and stale[0].startswith("ep02")

    again = run_cli("rerun", str(root), "--stale")  # as `render` would: episode 1 is up to date
    assert again.returncode == 0, again.stderr[-2000:]
    new_calls = _calls(root)[calls_before:]
    assert [c["shot"] for c in new_calls] == stale  # exactly one generation: the edited shot
    assert len({p.name for p in (build / "speech").glob("*.wav")} - wav_before) == 1  # one new line spoken
    after = {r.id: r for r in ledger.rows()}
    assert after["ep01"].finished_at == before["ep01"].finished_at  # episode 1 was not reassembled
    assert after["ep02"].finished_at > before["ep02"].finished_at
    mp4_after = {p.name: p.stat().st_mtime_ns for p in (build / "episodes").glob("*.mp4")}
    assert mp4_after["ep01.mp4"] == mp4_before["ep01.mp4"] and mp4_after["ep02.mp4"] != mp4_before["ep02.mp4"]
    # in Prefect, episode 2's run has a task run for the edited shot and line only: the others were
    # kept as the ledger recorded them (`stages.reuse`), without one
    runs = _task_runs(f"{root}:ep2")
    assert (runs["generate_shot"], runs["synthesize_speech"], runs["cut_episode"]) == (1, 1, 1), runs

    # Nothing changed: no Prefect, no work, and it says so.
    noop = run_cli("render", str(root))
    assert noop.returncode == 0 and "nothing to do" in noop.stderr and "starting Prefect" not in noop.stderr
    assert len(_calls(root)) == calls_before + 1


def _task_runs(flow_run_name: str) -> Counter:
    """The task runs (by name) of the latest flow run of that name, once its cut is recorded (Prefect
    records task runs from their events, a moment after they end)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # the session's server (conftest.prefect_api), set after Prefect read its settings in this process
    with temporary_settings({PREFECT_API_URL: os.environ["PREFECT_API_URL"]}), get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_run_name])),
                                       sort=FlowRunSort.START_TIME_DESC, limit=1)
        deadline = time.monotonic() + 30
        while True:
            names = Counter(t.name.rsplit("-", 1)[0] for t in client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))))
            if names["cut_episode"] or time.monotonic() > deadline:
                return names
            time.sleep(0.2)


def test_an_episode_stops_after_its_failed_shot_limit(tiny_project):
    yaml = TINY_YAML + SMALL + ("backends:\n  video: chaos\n  chaos: {wraps: animatic, fail_rate: 1.0, "
                                "error: permanent, seed: 1}\nlimits: {video_concurrency: 1, "
                                "failed_shots_per_episode: 2}\n")
    (tiny_project / "project.yaml").write_text(yaml, encoding="utf-8")
    proc = run_cli("render", str(tiny_project))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "stopped" in proc.stderr and "failed_shots_per_episode" in proc.stderr
    shots = _status(tiny_project)["episodes"][0]["shots"]
    states = Counter(s["state"] for s in shots)
    assert states["failed"] == 2 and states["pending"] == len(shots) - 2, states
    assert all("not attempted" in s["reason"] for s in shots if s["state"] == "pending")
    assert len(_calls(tiny_project)) == 2  # no paid call after the limit

    # The run left a report on disk and in Prefect.
    (report,) = (tiny_project / "build" / "reports").glob("*.md")
    text = report.read_text(encoding="utf-8")
    assert "| ep01 | 0 | 0 | 0 | 2 | " in text and "not attempted" in text and "rerun" in text
    import urllib.request

    # from the Prefect server the render used (the newest of each key: other tests render too)
    ask = urllib.request.Request(os.environ["PREFECT_API_URL"] + "/artifacts/filter", method="POST",
                                 data=json.dumps({"sort": "CREATED_DESC", "limit": 50}).encode(),
                                 headers={"Content-Type": "application/json"})
    artifacts = {}
    for a in json.loads(urllib.request.urlopen(ask, timeout=30).read()):
        if a["key"] in ("render-summary", "render-shots"):
            artifacts.setdefault(a["key"], (a["type"], a["data"]))
    assert artifacts["render-summary"][0] == "markdown" and "not attempted" in artifacts["render-summary"][1]
    table = json.loads(artifacts["render-shots"][1])
    table = json.loads(table) if isinstance(table, str) else table
    assert any(row["shot"] == shots[0]["id"] for row in table)


def test_two_renders_at_once_generate_each_shot_once(tiny_project):
    (tiny_project / "project.yaml").write_text(TINY_YAML + SMALL + COUNTING, encoding="utf-8")
    exe = Path(sys.executable).with_name("dramaforge")
    procs = [subprocess.Popen([str(exe), "render", str(tiny_project)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    counts = Counter(c["shot"] for c in _calls(tiny_project))
    shots = _status(tiny_project)["episodes"][0]["shots"]
    assert set(counts) == {s["id"] for s in shots} and set(counts.values()) == {1}, counts
    assert all(s["state"] == "done" for s in shots)


# --- the pieces, without a render ---------------------------------------------------------------


def test_gate_holds_concurrency_and_spaces_starts():
    gate = Gate(2, per_minute=600)  # at most 2 at once; one start per 0.1 s
    live, peak, starts, lock = [0], [0], [], threading.Lock()

    def work():
        with gate.hold():
            with lock:
                starts.append(time.monotonic())
                live[0] += 1
                peak[0] = max(peak[0], live[0])
            time.sleep(0.05)
            with lock:
                live[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] <= 2
    starts.sort()
    assert all(b - a >= 0.1 - 0.01 for a, b in zip(starts, starts[1:]))  # the rate limit held


class _Task:
    retry_delay_seconds = [0.05, 0.1]


class _Run:
    run_count = 1


class _State:
    def __init__(self, exc):
        self.exc = exc

    def result(self):
        raise self.exc


def test_retry_condition_retries_only_transient_and_honours_retry_after():
    assert _transient_only(_Task, _Run, _State(PermanentError("bad size"))) is False
    assert _transient_only(_Task, _Run, _State(ValueError("bug"))) is False
    t0 = time.monotonic()
    assert _transient_only(_Task, _Run, _State(TransientError("429", retry_after_s=0.4))) is True
    waited = time.monotonic() - t0
    assert waited + 0.05 >= 0.4  # with Prefect's own 0.05 s backoff, the provider's 0.4 s is honoured
    assert _transient_only(_Task, _Run, _State(TransientError("429", retry_after_s=3600))) is False  # too long



def test_episodes_start_in_order_two_shot_at_once_and_the_next_starts_beside_a_cut():
    """`episodes_at_once`: an episode starts after the one before it has spoken its lines; at most
    EPISODES_AT_ONCE are voiced and shot at once; one that reaches its cut gives its place to the next;
    outcomes come back in order."""
    from flows.tasks import EPISODES_AT_ONCE, cutting, episodes_at_once, spoken

    assert EPISODES_AT_ONCE == 2
    log: list[tuple[str, int]] = []
    events = {k: {n: threading.Event() for n in range(1, 6)} for k in ("started", "shoot", "cut")}

    def episode(project: str, n: int) -> dict:
        log.append(("start", n))
        events["started"][n].set()
        spoken(project, n)
        assert events["shoot"][n].wait(30)
        log.append(("cutting", n))
        cutting(project, n)
        assert events["cut"][n].wait(30)
        return {"episode": n}

    done: list[int] = []
    box: dict = {}
    runner = threading.Thread(target=lambda: box.setdefault("out", episodes_at_once(
        episode, [("/p", n) for n in range(1, 6)], lambda o: done.append(o["episode"]))))
    runner.start()
    try:
        assert events["started"][1].wait(10) and events["started"][2].wait(10)
        assert not events["started"][3].wait(1.0)  # two are being shot: the third waits for a place
        events["shoot"][1].set()  # episode 1 reaches its cut: episode 3 starts beside it
        assert events["started"][3].wait(10)
        assert not events["started"][4].wait(1.0)  # 2 and 3 are being shot
        events["shoot"][2].set()
        assert events["started"][4].wait(10)
        assert done == []  # episode 1 is still cutting: no outcome yet, and none out of order
        for n in (2, 3, 4, 5):
            events["shoot"][n].set()
        for n in (5, 4, 3, 2, 1):  # cuts ending in reverse order: outcomes still in order
            events["cut"][n].set()
        runner.join(30)
        assert not runner.is_alive()
    finally:
        for kind in events.values():
            for e in kind.values():
                e.set()
    assert [o["episode"] for o in box["out"]] == done == [1, 2, 3, 4, 5]
    assert [n for what, n in log if what == "start"] == [1, 2, 3, 4, 5]


ANN_SPEAKS = """\
Title: Talk

# Episode 1: Talk

INT. KITCHEN - DAY

ANN
Is it ready?

ANN
It smells of smoke.

ANN
Open the window, please.

ANN
Never mind, I will do it.
"""


def test_a_hosted_voice_speaks_no_more_lines_at_once_than_its_concurrency(tmp_path, monkeypatch):
    """ANN's voice on MiniMax (the local fake) with `concurrency: 1`: her four lines, voiced on the
    render's threads, reach the provider one at a time (each answer held 0.3 s, so any two would meet)."""
    from fake_hosted import FakeHosted
    from fakes_tts import minimax_speech as proto
    server = FakeHosted(b"", hang_s=0.3)
    spans, route = [], server.route

    def timed(h, method):
        if "/t2a" not in h.path:
            return route(h, method)
        start = time.monotonic()
        time.sleep(0.3)
        route(h, method)
        spans.append((start, time.monotonic()))

    server.route = timed
    try:
        for env, value in proto.ENV.items():
            monkeypatch.setenv(env, value)
        root = tmp_path / "talk"
        root.mkdir()
        text = ("The harbour lights were out by the time we reached the pier, and the boats knocked softly "
                "against the stones all night long while we waited for the morning ferry to come.")
        espeak_clip(root / "ann.wav", text)
        yaml = TINY_YAML.replace("voice: {language: en-us, variant: f2, pitch: 60}",
                                 f"voice: {{backend: minimax-tts, reference: ann.wav, reference_text: {json.dumps(text)}}}")
        options = {**proto.options(server), "request_timeout_s": 5, "concurrency": 1}
        (root / "project.yaml").write_text(yaml + SMALL + COUNTING + f"  minimax_tts: {json.dumps(options)}\n",
                                           encoding="utf-8")
        (root / "script.fountain").write_text(ANN_SPEAKS, encoding="utf-8")
        proc = run_cli("render", str(root))
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        server.close()
    spans.sort()
    assert len(spans) == 4 and all(b[0] >= a[1] for a, b in zip(spans, spans[1:])), spans


@pytest.mark.farm  # ~25 s: a global limit's test, run with the farm's (make test-farm, in .ci/run)
def test_translations_reach_their_server_no_more_at_once_than_its_concurrency(tmp_path):
    """Three episodes' subtitles translated through a chat server with `concurrency: 1`: the render cuts
    episodes side by side, yet their requests reach the server one at a time (each answer held 1.5 s, so
    any two would meet)."""
    from test_deployments import THREE
    from test_openai_backends import FakeOpenAI, chat_reply, sent_lines

    server, spans = FakeOpenAI(), []

    def translate(body: dict):
        start = time.monotonic()
        time.sleep(1.5)
        spans.append((start, time.monotonic()))
        return chat_reply(json.dumps({"lines": [{"id": i, "text": t.upper()} for i, t in sent_lines(body).items()]}))

    server.replies.extend([translate] * 3)
    try:
        root = tmp_path / "three"
        root.mkdir()
        (root / "project.yaml").write_text(
            TINY_YAML + SMALL + COUNTING + "subtitles:\n  translation: {language: fr, base_url: '"
            + server.base_url + "', model: chat-test, concurrency: 1}\n", encoding="utf-8")
        (root / "script.fountain").write_text(THREE, encoding="utf-8")
        proc = run_cli("render", str(root))
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        server.server.shutdown()
        server.server.server_close()
    spans.sort()
    assert len(spans) == 3 and all(b[0] >= a[1] for a, b in zip(spans, spans[1:])), spans
    assert "ALMOST." in (root / "build" / "episodes" / "ep01.fr.srt").read_text(encoding="utf-8")
