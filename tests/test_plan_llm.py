"""The LLM planner against a local HTTP server that speaks OpenAI's /v1/chat/completions."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import TINY_YAML, run_cli
from stages.load_project import load_project
from stages.plan_shots import plan_shots
from stages.plan_shots_llm import PlanningError

LLM = "planner: {kind: llm, model: test-model, base_url: 'http://127.0.0.1:%d/v1', max_repairs: 2}\n"


class FakeOpenAI:
    """Answers each POST with the next scripted reply; records every request body."""

    def __init__(self):
        self.replies: list[tuple[int, dict, dict]] = []
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "body": body})
                status, payload, headers = outer.replies.pop(0)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, content: str | None, refusal: str | None = None) -> None:
        self.replies.append((200, {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "test-model",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content, "refusal": refusal}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}, {}))

    def error(self, status: int, headers: dict | None = None) -> None:
        self.replies.append((status, {"error": {"message": "slow down", "type": "rate_limit", "code": None}},
                             headers or {}))


@pytest.fixture
def llm(tiny_project):
    fake = FakeOpenAI()
    (tiny_project / "project.yaml").write_text(TINY_YAML + LLM % fake.port, encoding="utf-8")
    yield fake, tiny_project
    fake.server.shutdown()


# TINY_SCRIPT: scene 1 has an action and lines L1 (ANN), L2 (BO); scene 2 has L3 (ANN).
GOOD = {"shots": [
    {"scene": 1, "size": "establishing", "camera": "pan-right", "characters": ["ann", "bo"],
     "action": "Steam rises from a kettle.", "lines": [], "duration_s": 2.5},
    {"scene": 1, "size": "medium", "camera": "static", "characters": ["ann"], "action": "", "lines": ["L1"],
     "duration_s": 0},
    {"scene": 1, "size": "close-up", "camera": "push-in", "characters": ["bo"], "action": "", "lines": ["L2"],
     "duration_s": 0},
    {"scene": 2, "size": "wide", "camera": "push-in", "characters": ["ann"], "action": "She turns away.",
     "lines": ["L3"], "duration_s": 0}]}


def _plan(root: Path):
    lp = load_project(root)
    return plan_shots(lp.script.episodes[0], lp.project, project_dir=lp.root, characters=lp.script.characters)


def test_good_answer_becomes_the_shot_list_and_is_cached(llm):
    fake, root = llm
    fake.answer(json.dumps(GOOD))
    plan = _plan(root)
    assert [s.id for s in plan.shots] == ["ep01-sc01-sh001", "ep01-sc01-sh002", "ep01-sc01-sh003", "ep01-sc02-sh001"]
    assert [ln.text for s in plan.shots for ln in s.lines] == ["Is it ready?", "Almost. Patience.",
                                                              "Then I am leaving."]
    assert plan.shots[2].size == "close-up" and "red hair" in plan.shots[1].prompt  # the character bible
    (req,) = fake.requests
    assert req["path"] == "/v1/chat/completions" and req["body"]["model"] == "test-model"
    assert req["body"]["response_format"]["type"] == "json_schema"
    user = req["body"]["messages"][1]["content"]
    assert 'L2 line bo ("grumbling"): "Almost. Patience."' in user
    assert _plan(root).shots == plan.shots and len(fake.requests) == 1  # cached: no second call


def test_malformed_json_and_missing_line_are_repaired(llm):
    fake, root = llm
    fake.answer('{"shots": [')  # truncated JSON
    missing = json.loads(json.dumps(GOOD))
    missing["shots"][2]["lines"] = []
    missing["shots"][2]["duration_s"] = 2
    fake.answer(json.dumps(missing))
    fake.answer(json.dumps(GOOD))
    plan = _plan(root)
    assert len(plan.shots) == 4 and len(fake.requests) == 3
    repair = fake.requests[1]["body"]["messages"][-1]["content"]
    assert "not valid JSON" in repair
    second = fake.requests[2]["body"]["messages"][-1]["content"]
    assert "L2 are in no shot" in second


def test_unknown_character_and_bad_size_never_pass(llm):
    fake, root = llm
    bad = json.loads(json.dumps(GOOD))
    bad["shots"][1]["characters"] = ["zed"]
    bad["shots"][0]["size"] = "dutch-angle"
    for _ in range(3):
        fake.answer(json.dumps(bad))
    with pytest.raises(PlanningError) as err:
        _plan(root)
    assert "after 2 repair round(s)" in err.value.message and "'zed'" in err.value.message
    assert len(fake.requests) == 3  # bounded


def test_refusal_is_a_clear_error(llm):
    fake, root = llm
    fake.answer(None, refusal="I can't help with that.")
    with pytest.raises(PlanningError) as err:
        _plan(root)
    assert "refused" in err.value.message and "rules" in err.value.hint


def test_429_then_success(llm):
    fake, root = llm
    fake.error(429, {"Retry-After": "0.2"})
    fake.answer(json.dumps(GOOD))
    assert len(_plan(root).shots) == 4
    assert len(fake.requests) == 2  # the client waited and asked again


def test_plan_cli_with_the_llm_planner(llm):
    fake, root = llm
    fake.answer(json.dumps(GOOD))
    proc = run_cli("plan", str(root), "--json")
    assert proc.returncode == 0, proc.stderr
    (ep,) = json.loads(proc.stdout)
    assert [s["size"] for s in ep["shots"]] == ["establishing", "medium", "close-up", "wide"]


def test_estimates_never_ask_the_llm_and_price_its_plans(llm):
    fake, root = llm

    def estimate() -> dict:
        proc = run_cli("estimate", str(root), "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    est = estimate()  # not planned yet: counted from the rules planner's shots, cost unknown
    (planning,) = [w for w in est["work"] if w["kind"] == "planning"]
    assert planning["todo"] == 1 and est["provisional"] == ["ep01"] and est["cost"] is None
    text = run_cli("estimate", str(root)).stdout
    assert "ep01: not planned by the LLM yet" in text and "rates.text.planner" in text
    with open(root / "project.yaml", "a", encoding="utf-8") as f:
        f.write("rates:\n  text: {planner: {cost_per_call: 0.05}}\n")
    assert estimate()["cost"] == 0.05
    proc = run_cli("render", str(root), "--max-cost", "0.01")
    assert proc.returncode == 2 and "over --max-cost" in proc.stderr
    assert fake.requests == []  # no estimate, dry run or refused render asked the server

    fake.answer(json.dumps(GOOD))
    assert run_cli("plan", str(root)).returncode == 0 and len(fake.requests) == 1
    est = estimate()  # now from the LLM's own plan, which is cached
    assert est["provisional"] == [] and est["cost"] == 0 and len(fake.requests) == 1
    assert est["shots"]["ep01"] == ["ep01-sc01-sh001", "ep01-sc01-sh002", "ep01-sc01-sh003", "ep01-sc02-sh001"]


def test_an_unreachable_server_is_a_clear_cli_error(tiny_project):
    (tiny_project / "project.yaml").write_text(TINY_YAML + LLM % 9, encoding="utf-8")  # port 9: nothing there
    proc = run_cli("plan", str(tiny_project))
    assert proc.returncode == 1 and "cannot reach the LLM planner" in proc.stderr and "Traceback" not in proc.stderr
