"""Takes: `takes: N` makes N clips of a shot, each its own unit (seed in its key), made, billed and
kept like any shot; the shot list's `take:` (`dramaforge pick`) chooses the one the episode is cut
from, and picking re-cuts the episode without generating or paying for anything."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import COUNTING, SMALL, TINY_YAML, TWO_EPISODES, chaos_calls, run_cli
from fake_hosted import FAL_KEY, FAL_KEY_ENV, FakeHosted
from fake_openai import provider_mp4  # noqa: F401 (a fixture)
from stages.backends.registry import backends_for
from stages.core.errors import InputError
from stages.core.ledger import Ledger
from stages.load_project import load_project
from stages.plan_work import plan_work

PRICE = 0.05


def _project(tmp_path: Path, extra: str) -> Path:
    root = tmp_path / "two"
    root.mkdir()
    (root / "project.yaml").write_text(TINY_YAML + SMALL + extra, encoding="utf-8")
    (root / "script.fountain").write_text(TWO_EPISODES, encoding="utf-8")
    return root


def _plan(root: Path):
    lp = load_project(root)
    return plan_work(lp, 1, backends_for(lp.project, lp.root))


def _set_take(root: Path, shot: str, **fields) -> None:
    """A hand edit of episode 1's shot list."""
    path = root / "build" / "shotlists" / "ep01.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for s in data["shots"]:
        if s["id"] == shot:
            s.update(fields)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="module")
def _two_takes(tmp_path_factory) -> Path:
    """Episode 1 rendered with two takes of every shot (the chaos backend, failing nothing)."""
    root = _project(tmp_path_factory.mktemp("takes"), COUNTING + "takes: 2\n")
    proc = run_cli("render", str(root), "--episodes", "1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return root


@pytest.fixture
def two_takes(_two_takes, tmp_path) -> Path:
    return Path(shutil.copytree(_two_takes, tmp_path / "two"))


def test_each_take_is_a_unit_with_its_own_seed_and_key(two_takes, tmp_path):
    work = _plan(two_takes)
    shots = [s.id for s in work.plan.shots]
    assert [u.id for u in work.shots] == [i for s in shots for i in (s, f"{s}-t2")]
    for one, two in zip(work.shots[::2], work.shots[1::2]):
        assert (one.take, one.chosen, two.take, two.chosen) == (1, True, 2, False)
        assert two.request.seed == one.request.seed + 1 and two.key != one.key and two.path.exists()
    # each take was asked of the backend once, and recorded as its own unit
    calls = chaos_calls(two_takes)
    assert len(calls) == 2 * len(shots)
    rows = {r.id: r for r in Ledger(two_takes / "build" / "ledger.sqlite").rows()}
    assert all(rows[u.id].spec_hash == u.key and rows[u.id].state == "done" for u in work.shots)
    # take 1 is the shot as a project without takes plans it: its clip is kept when takes are added
    one = Path(shutil.copytree(two_takes, tmp_path / "one"))
    yaml_file = one / "project.yaml"
    yaml_file.write_text(yaml_file.read_text(encoding="utf-8").replace("takes: 2\n", ""), encoding="utf-8")
    assert [u.key for u in _plan(one).shots] == [u.key for u in work.shots[::2]]
    # the episode is cut from the chosen takes
    assert work.cut.clips == [u.path for u in work.shots[::2]]


def test_a_chosen_take_recuts_the_episode_and_survives_replanning(two_takes):
    before = _plan(two_takes)
    shot = before.plan.shots[1].id
    _set_take(two_takes, shot, take=2)
    after = _plan(two_takes)
    assert [u.key for u in after.shots] == [u.key for u in before.shots]  # no take changes
    assert [u.id for u in after.shots if u.chosen] == [u.id if u.id != shot else f"{shot}-t2"
                                                       for u in before.shots if u.chosen]
    assert after.cut.key != before.cut.key and after.cut.clips[1] == before.shots[3].path
    proc = run_cli("plan", str(two_takes))  # re-planning keeps the choice, as it keeps any hand edit
    assert proc.returncode == 0, proc.stderr
    assert next(s for s in _plan(two_takes).plan.shots if s.id == shot).take == 2
    status = json.loads(run_cli("status", str(two_takes), "--json").stdout)["episodes"][0]
    assert status["assembly"] == "stale"  # the cut changes; every clip is made
    assert all(s["state"] == "done" for s in status["shots"])
    assert {(s["id"], s["chosen"]) for s in status["shots"] if s["take"] == 2} >= {(f"{shot}-t2", True)}

    _set_take(two_takes, shot, take=3)
    with pytest.raises(InputError) as exc:
        _plan(two_takes)
    assert "picks take 3, but 2 takes are made" in str(exc.value) and exc.value.file.endswith("ep01.yaml")
    proc = run_cli("status", str(two_takes))
    assert proc.returncode == 2 and "ep01.yaml" in proc.stderr and "Traceback" not in proc.stderr


def test_a_shot_list_sets_its_own_number_of_takes(two_takes):
    shot = _plan(two_takes).plan.shots[0].id
    _set_take(two_takes, shot, takes=3)
    work = _plan(two_takes)
    assert [u.id for u in work.shots if u.shot_id == shot] == [shot, f"{shot}-t2", f"{shot}-t3"]
    est = json.loads(run_cli("estimate", str(two_takes), "-e", "1", "--json").stdout)
    (video,) = [w for w in est["work"] if w["kind"] == "video"]
    assert (video["todo"], video["takes"]) == (1, 1) and est["shots"]["ep01"] == [f"{shot}-t3"]


def test_check_counts_takes_and_says_when_the_backend_draws_them_alike(tmp_path):
    root = _project(tmp_path, "takes: 3\n")
    proc = run_cli("check", str(root))
    assert proc.returncode == 0 and "3 takes of each shot" in proc.stdout
    assert "project.yaml:" in proc.stderr and "draws the same picture whatever the seed" in proc.stderr
    report = json.loads(run_cli("check", str(root), "--json").stdout)
    assert report["takes"] == 3
    (root / "project.yaml").write_text(TINY_YAML + SMALL + "takes: {kling: 3}\n", encoding="utf-8")
    assert json.loads(run_cli("check", str(root), "--json").stdout)["takes"] == 1  # the animatic makes one
    (root / "project.yaml").write_text(TINY_YAML + SMALL + "takes: {nope: 3}\n", encoding="utf-8")
    proc = run_cli("check", str(root))
    assert proc.returncode == 2 and "'nope' is not a video backend" in proc.stderr


@pytest.fixture
def server(provider_mp4, monkeypatch):
    monkeypatch.setenv(FAL_KEY_ENV, FAL_KEY)
    s = FakeHosted(provider_mp4, price_per_second=PRICE)
    yield s
    s.close()


def test_takes_are_paid_once_each_and_picking_one_recuts_without_a_job(server, tmp_path):
    opts = {"model": "fal-ai/kling-video/v2.1/standard/image-to-video", "queue_url": server.fal_queue,
            "api_url": server.fal_api, "api_key_env": FAL_KEY_ENV, "durations": [1, 2], "poll_s": 0.02,
            "request_timeout_s": 2}
    root = _project(tmp_path, f"takes: {{fal: 2}}\nbackends:\n  video: fal\n  fal: {json.dumps(opts)}\n"
                              f"rates:\n  video:\n    fal: {{cost_per_second: {PRICE}}}\n")
    est = json.loads(run_cli("estimate", str(root), "-e", "1", "--json").stdout)
    (video,) = [w for w in est["work"] if w["kind"] == "video"]
    shots = [s["id"] for s in json.loads(run_cli("plan", str(root), "-e", "1", "--json").stdout)[0]["shots"]]
    assert video["todo"] == 2 * len(shots) and video["takes"] == len(shots)
    proc = run_cli("render", str(root), "-e", "1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    jobs = server.created()
    assert len(jobs) == 2 * len(shots)  # one paid job per take, each its own seed
    assert len({(j.input["prompt"], j.input["seed"]) for j in jobs}) == len(jobs)
    report = json.loads(sorted((root / "build" / "reports").glob("*.json"))[-1].read_text(encoding="utf-8"))
    assert report["cost"] == pytest.approx(server.billed()) and video["cost"] == pytest.approx(server.billed())

    shot = shots[0]
    proc = run_cli("takes", str(root), "--shot", shot, "--json")
    assert proc.returncode == 0, proc.stderr
    takes = json.loads(proc.stdout)
    assert [(t["take"], t["id"], t["state"], t["chosen"], t["jobs"]) for t in takes] == \
        [(1, shot, "done", True, 1), (2, f"{shot}-t2", "done", False, 1)]
    assert all(Path(t["clip"]).exists() and t["billed_s"] > 0 for t in takes)
    listed = run_cli("takes", str(root), "--shot", shot)
    assert listed.returncode == 0 and f"* take 1  {shot}" in listed.stdout and "dramaforge pick" in listed.stdout

    ledger = Ledger(root / "build" / "ledger.sqlite")
    cut_before = ledger.get("ep01").spec_hash
    made_before = {r.id: r.finished_at for r in ledger.rows() if r.kind == "shot"}
    proc = run_cli("pick", str(root), "--shot", shot, "--take", "2")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert len(server.created()) == len(jobs) and server.count("submit") == len(jobs)  # nothing paid
    assert {r.id: r.finished_at for r in ledger.rows() if r.kind == "shot"} == made_before  # nothing made
    assert ledger.get("ep01").spec_hash != cut_before  # the episode was cut again, from take 2
    takes = json.loads(run_cli("takes", str(root), "--shot", shot, "--json").stdout)
    assert [t["chosen"] for t in takes] == [False, True]
    shotlist = yaml.safe_load((root / "build" / "shotlists" / "ep01.yaml").read_text(encoding="utf-8"))
    assert next(s for s in shotlist["shots"] if s["id"] == shot)["take"] == 2
    status = json.loads(run_cli("status", str(root), "--json").stdout)["episodes"][0]
    assert status["assembly"] == "done"
    review = (root / "build" / "review" / "ep01.html").read_text(encoding="utf-8")
    assert "take 2 of 2" in review and f"dramaforge pick {root} --shot {shot} --take 1" in review

    for bad, said in ((["--take", "3"], "has 2 takes, not a take 3"), (["--take", "0"], "not a take 0")):
        proc = run_cli("pick", str(root), "--shot", shot, *bad)
        assert proc.returncode == 2 and said in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("pick", str(root), "--shot", "ep09-sc01-sh001", "--take", "1")
    assert proc.returncode == 2 and "is not a shot of this project" in proc.stderr
    cut = ledger.get("ep01").spec_hash
    again = run_cli("render", str(root), "-e", "1")  # up to date with its choice: nothing made, nothing cut
    assert again.returncode == 0 and ledger.get("ep01").spec_hash == cut and len(server.created()) == len(jobs)


def test_a_failed_take_is_not_picked_and_is_rerun_on_its_own(tmp_path):
    root = _project(tmp_path, "takes: 2\nbackends:\n  video: chaos\n  chaos: {wraps: animatic, fail_rate: 0.5, "
                              "error: rejected, seed: 4}\nlimits: {failed_shots_per_episode: 99}\n")
    proc = run_cli("render", str(root), "-e", "1")
    status = json.loads(run_cli("status", str(root), "--json").stdout)["episodes"][0]["shots"]
    failed = [s for s in status if s["state"] == "rejected"]
    assert proc.returncode == 1 and failed, [(s["id"], s["state"]) for s in status]
    take = failed[0]
    proc = run_cli("pick", str(root), "--shot", take["shot"], "--take", str(take["take"]))
    assert proc.returncode == 2 and "is not made (rejected" in proc.stderr and \
        f"rerun {root} --shot {take['id']}" in proc.stderr
    ledger = Ledger(root / "build" / "ledger.sqlite")
    made = {r.id: r.finished_at for r in ledger.rows() if r.kind == "shot" and r.state == "done"}
    assert made
    run_cli("rerun", str(root), "--shot", take["id"])
    assert ledger.get(take["id"]).attempts > take["attempts"]  # that take was tried again
    assert {i: ledger.get(i).finished_at for i in made} == made  # the takes already made are kept


def test_edit_writes_a_shot_as_a_hand_edit_and_refuses_what_the_shot_list_would(two_takes):
    shot = _plan(two_takes).plan.shots[0].id
    proc = run_cli("edit", str(two_takes), "--shot", shot, "--prompt", "a kettle on a gas ring, steam rising",
                   "--size", "close-up", "--lock")
    assert proc.returncode == 0, proc.stderr
    listed = yaml.safe_load((two_takes / "build" / "shotlists" / "ep01.yaml").read_text(encoding="utf-8"))
    mine = next(s for s in listed["shots"] if s["id"] == shot)
    assert (mine["prompt"], mine["size"], mine["locked"]) == ("a kettle on a gas ring, steam rising", "close-up", True)
    assert run_cli("plan", str(two_takes)).returncode == 0  # re-planning keeps the edit
    again = next(s for s in _plan(two_takes).plan.shots if s.id == shot)
    assert (again.prompt, again.size, again.locked) == ("a kettle on a gas ring, steam rising", "close-up", True)
    status = json.loads(run_cli("status", str(two_takes), "--json").stdout)["episodes"][0]["shots"]
    assert {s["state"] for s in status if s["shot"] == shot} == {"stale"}  # the next render makes it anew
    for args, said in ((["--size", "huge"], "size: Input should be"), ([], "nothing to edit"),
                       (["--camera", "spin"], "camera: Input should be")):
        proc = run_cli("edit", str(two_takes), "--shot", shot, *args)
        assert proc.returncode == 2 and said in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("edit", str(two_takes), "--shot", "ep01-sc09-sh001", "--lock")
    assert proc.returncode == 2 and "no shot ep01-sc09-sh001" in proc.stderr
