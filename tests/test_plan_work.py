"""The work plan: every unit of an episode with its key, its artifact path and its request.

`render`, `status`, `estimate` and the review site read this one plan, so they agree by
construction; these tests hold the plan itself to what the render then makes and records.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import COUNTING, SMALL, TINY_YAML, TWO_EPISODES, chaos_calls, run_cli
from stages.backends.registry import backends_for
from stages.core.ledger import Ledger
from stages.core.paths import BuildPaths
from stages.load_project import load_project
from stages.plan_work import plan_work


def _project(tmp_path: Path, extra: str = "") -> Path:
    root = tmp_path / "two"
    root.mkdir()
    (root / "project.yaml").write_text(TINY_YAML + SMALL + COUNTING + extra, encoding="utf-8")
    (root / "script.fountain").write_text(TWO_EPISODES, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def _rendered(tmp_path_factory) -> Path:
    """The two-episode project with episode 1 rendered (once for this module; each test gets a copy)."""
    root = _project(tmp_path_factory.mktemp("rendered"))
    proc = run_cli("render", root.name, "--episodes", "1", cwd=root.parent)  # typed as a relative path
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root


@pytest.fixture
def rendered(_rendered, tmp_path) -> Path:
    return Path(shutil.copytree(_rendered, tmp_path / "two"))


def _plan(root: Path, episode: int = 1, **kw):
    lp = load_project(root)
    return plan_work(lp, episode, backends_for(lp.project, lp.root), **kw)


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_a_plan_names_every_unit_and_writes_nothing(tmp_path):
    root = _project(tmp_path)
    before = _files(root)
    work = _plan(root)
    paths = BuildPaths(root / "build")
    assert _files(root) == before and not (root / "build").exists()  # planning makes no file or folder
    assert [ln.id for ln in work.lines] == [f"{s.id}-l1" for s in work.plan.shots if s.lines]  # one line each
    assert [ln.request.text for ln in work.lines] == ["Is it ready?", "Almost."]
    assert all(ln.path == paths.wav(ln.key) for ln in work.lines)
    assert work.lines[0].where.startswith("episode 1, scene 1, ") and work.lines[0].engine == "espeak"
    # a shot with a line has no key until the line is spoken (its length comes from the speech)
    assert [u.key is None for u in work.shots] == [bool(s.lines) for s in work.plan.shots]
    assert all(u.path == paths.clip(u.key) for u in work.shots if u.key)
    assert work.cut is None and work.translation is None and work.mp4 == paths.episode_mp4("ep01")
    # the animatic's sheets are free, so the cast on screen gets one each (drawn for the review site)
    assert {s.character: [p.parent for p in s.paths] for s in work.sheets} == \
        {"ann": [paths.characters / "ann"] * 2, "bo": [paths.characters / "bo"] * 2}
    assert not any(u.keyframe for u in work.shots)  # the animatic starts from no keyframe


def test_the_render_makes_and_records_exactly_the_planned_units(rendered):
    root = rendered
    work = _plan(root)
    rows = {r.id: r for r in Ledger(root / "build" / "ledger.sqlite").rows()}
    for ln in work.lines:
        assert ln.path.exists() and rows[ln.id].spec_hash == ln.key
    for u in work.shots:
        assert u.path.exists() and rows[u.id].spec_hash == u.key and rows[u.id].state == "done"
    assert work.cut is not None and rows["ep01"].spec_hash == work.cut.key and work.mp4.exists()
    assert all(p.exists() for s in work.sheets for p in s.paths)
    assert {c["shot"] for c in chaos_calls(root)} == {u.id for u in work.shots}  # and nothing else was made
    assert _plan(root, 2).cut is None  # episode 2 was not asked for: its lines are unspoken
    # the review site written at the end of that render names the project as it was typed
    assert "dramaforge render two --episodes 2" in (root / "build" / "review" / "ep02.html").read_text("utf-8")


def test_keys_follow_exactly_their_inputs(rendered):
    root = rendered
    base = _plan(root)
    keys = {u.id: u.key for u in base.shots}
    script = root / "script.fountain"
    script.write_text(script.read_text().replace("Almost.", "Nearly."), encoding="utf-8")
    edited = _plan(root)
    changed = [ln for ln, old in zip(edited.lines, base.lines) if ln.key != old.key]
    assert [ln.request.text for ln in changed] == ["Nearly."]
    assert [u.id for u in edited.shots if u.key != keys[u.id]] == [changed[0].shot_id]  # unspoken now: no key
    assert edited.cut is None  # the cut waits for that line's speech

    yaml = root / "project.yaml"
    yaml.write_text(yaml.read_text() + "style: ink wash\n", encoding="utf-8")
    styled = _plan(root)
    assert all(a.key == b.key for a, b in zip(styled.lines, edited.lines))  # the voice does not see the style
    assert all(u.key != keys[u.id] for u in styled.shots if u.key)  # every prompt carries it


def test_a_keyframe_backend_gets_a_keyframe_unit_per_shot(tmp_path):
    root = _project(tmp_path, "  openai_videos: {base_url: 'http://127.0.0.1:9/v1'}\n")  # inside `backends:`
    yaml = root / "project.yaml"
    yaml.write_text(yaml.read_text().replace("video: chaos", "video: openai-videos"), encoding="utf-8")
    work = _plan(root)
    paths = BuildPaths(root / "build")
    assert all(u.keyframe is not None and u.request.keyframe == u.keyframe.path
               and u.keyframe.path.parent == paths.keyframes for u in work.shots)
    with_cast = [u for u in work.shots if u.request.figures]
    # each keyframe is drawn from exactly its characters' sheets
    sheets = {s.character: s.paths for s in work.sheets}
    for u in with_cast:
        assert u.keyframe.request.references == tuple(p for f in u.request.figures for p in sheets[f.id])


def test_an_accepted_placeholder_is_planned_as_its_card(rendered):
    root = rendered
    first = _plan(root)
    shot = first.shots[0]
    work = _plan(root, placeholders={shot.id: "the model keeps refusing"})
    card = work.shots[0].placeholder
    assert card is not None and card.key != shot.key and "the model keeps refusing" in card.request.action
    assert work.shots[0].clip == (card.key, card.path)
    assert work.cut.clips[0] == card.path and work.cut.key != first.cut.key


def test_a_translated_project_plans_its_translation(tmp_path):
    root = _project(tmp_path, "subtitles:\n  translation: {language: fr, base_url: 'http://127.0.0.1:9/v1'}\n")
    work = _plan(root)
    t = work.translation
    assert t is not None and t.lines == ("Is it ready?", "Almost.") and (t.source, t.target) == ("en", "fr")
    assert t.path == BuildPaths(root / "build").translation(t.key) and t.calls == 1
    assert _plan(root).translation.key == t.key  # stable, and planned without an API key or a call


@pytest.mark.parametrize("episode", [1, 2])
def test_status_and_estimate_read_the_plan(rendered, episode):
    """status and estimate carry the plan's keys, not their own."""
    from stages.estimate_render import estimate_render
    from stages.project_status import project_status

    lp = load_project(rendered)
    backends = backends_for(lp.project, lp.root)
    (status,) = project_status(lp, [episode], backends=backends)
    work = plan_work(lp, episode, backends)
    assert [s.key for s in status.shots] == [u.key for u in work.shots]
    assert [ln.done for ln in status.speech] == [ln.path.exists() for ln in work.lines]
    est = estimate_render([status], lp.project, backends, ledger=None)
    made = [u.id for u in work.shots if not (u.path and u.path.exists())]
    assert est.shots.get(episode, []) == (made if episode == 2 else [])


# Keys computed by the release before the work plan existed (643f161), for the two-episode project
# at SMALL size: a refactor that changes any of them would make every user's render redo (and, on a
# hosted backend, re-bill) that unit. Change them only on purpose, with FORMAT_VERSION or a backend's
# own version.
EARLIER = {
    "speech": ["84e546f3281d52d61e2a", "e604ae2b8dcbb3af31da"],
    # the animatic's drawing rules 3 (faces above the subtitles, one set per place, INT./EXT.) made new
    # clips on purpose (its VERSION); before: 846174bc5b3bc46a75dc, 750a9ece817b459191e5; and 4 (a
    # keyframe every second), before: 060a262665d54c405ebe, ecc70ae49b3e4b6e793b; and 5 remakes them on purpose
    # (figure layers moved as cuts, one encoder thread), before: 90161146577bf638dd0a, fabc6b812e4f81c39e24;
    # and 6 (constant QP, poses held under a pixel), before: 1a662f6d71abf09b36be, 573530dcbc6a16f3b291
    "silent shots": {"ep01-sc01-sh001": "18c1d94be40ad638873c", "ep01-sc01-sh003": "1cfc37991c1665452c0e"},
    # a paid model's shots keep their keys (the image backend's keyframes and sheets draw as they did)
    "shots (openai-videos, openai images)": {"ep01-sc01-sh001": "7de991d5bc2b40915246",
                                             "ep01-sc01-sh003": "607b9c86b71f9b19c556"},
    "sheets": ["ann/front-d061e37b8f3d9725ae7f.png", "ann/three-quarter-27966acbef04fbeee2a8.png",
               "bo/front-252e014c86e1d247eb93.png", "bo/three-quarter-1d1f7019c62554a3cade.png"],
    "keyframes (openai-videos, openai images)": ["13bb192afe82db5c670e.png", "ec2270eaee849480914e.png",
                                                 "59bff3bfc221ca94d1f3.png", "d4e5434c014457431545.png"],
}


def test_keys_are_the_ones_earlier_releases_computed(tmp_path):
    root = _project(tmp_path)
    work = _plan(root)
    assert [ln.key for ln in work.lines] == EARLIER["speech"]
    assert {u.id: u.key for u in work.shots if u.key} == EARLIER["silent shots"]
    characters = BuildPaths(root / "build").characters
    assert sorted(str(p.relative_to(characters)) for s in work.sheets for p in s.paths) == EARLIER["sheets"]
    yaml = root / "project.yaml"
    yaml.write_text(yaml.read_text().replace("video: chaos", "video: openai-videos")
                    + "  openai_videos: {base_url: 'http://127.0.0.1:9/v1', size: 144x256}\n"
                    + "  image: {kind: openai, base_url: 'http://127.0.0.1:9/v1', model: img-test}\n", encoding="utf-8")
    hosted = _plan(root)
    assert [u.keyframe.path.name for u in hosted.shots] == EARLIER["keyframes (openai-videos, openai images)"]
    assert {u.id: u.key for u in hosted.shots if u.key} == EARLIER["shots (openai-videos, openai images)"]
