"""A character stays the same person: one reference sheet per character, made once and sent with
every keyframe they appear in, each keyframe sent as the video job's first frame. Checked through
the requests a local /v1/images + /v1/videos server received during a real CLI render."""

from __future__ import annotations

import yaml

import pytest

from conftest import TINY_YAML, run_cli
from fake_openai import FakeService, b64_reply, provider_mp4  # noqa: F401  (a fixture)


@pytest.fixture
def service(provider_mp4):  # noqa: F811
    s = FakeService(provider_mp4)
    yield s
    s.server.shutdown()
    s.server.server_close()


def test_every_shot_of_a_character_uses_their_one_reference_sheet(tiny_project, service):
    yaml_text = TINY_YAML + (
        "width: 144\nheight: 256\n"
        "backends:\n"
        "  video: openai-videos\n"
        f"  openai_videos: {{base_url: '{service.base_url}', size: 144x256, poll_s: 0.01}}\n"
        f"  image: {{kind: openai, base_url: '{service.base_url}', model: img-test}}\n")
    (tiny_project / "project.yaml").write_text(yaml_text, encoding="utf-8")
    colours = iter([(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)] + [(90, 90, 90)] * 40)
    service.image_replies.extend(b64_reply(96, 128, colour=next(colours)) for _ in range(44))

    proc = run_cli("render", str(tiny_project))
    assert proc.returncode == 0, proc.stderr[-3000:]

    build = tiny_project / "build"
    sheets = {d.name: sorted(d.glob("*.png")) for d in (build / "characters").iterdir()
              if d.is_dir() and not d.name.startswith(".")}
    assert set(sheets) == {"ann", "bo"} and all(len(v) == 2 for v in sheets.values())  # front + three-quarter
    sheet_bytes = {cid: sorted(p.read_bytes() for p in paths) for cid, paths in sheets.items()}
    assert len({b for v in sheet_bytes.values() for b in v}) == 4  # four different images

    made = [r for r in service.image_requests if r["path"] == "/v1/images/generations"]
    edits = [r for r in service.image_requests if r["path"] == "/v1/images/edits"]
    plan = yaml.safe_load((build / "shotlists" / "ep01.yaml").read_text(encoding="utf-8"))
    with_cast = [s for s in plan["shots"] if s["characters"]]
    # sheets made once each (4), plus a keyframe for every shot without characters; with characters: edits
    assert len(made) == 4 + (len(plan["shots"]) - len(with_cast))
    assert len(edits) == len(with_cast)
    seen_for = {}
    for req in edits:  # in completion order: matched to characters by content
        sent = sorted(data for _, data in req["form"]["image"])
        owners = [cid for cid, b in sheet_bytes.items() if set(b) <= set(sent)]
        assert owners and sorted(b for cid in owners for b in sheet_bytes[cid]) == sent, \
            "a keyframe was sent images that are not exactly its characters' sheets"
        for cid in owners:
            seen_for[cid] = seen_for.get(cid, 0) + 1
    on_screen = {cid: sum(cid in s["characters"] for s in plan["shots"]) for cid in ("ann", "bo")}
    assert seen_for == on_screen  # every shot of each character carried that character's sheet

    # every video job started from its keyframe
    assert len(service.creates) == len(plan["shots"])
    assert all(isinstance(c.get("input_reference"), tuple) for c in service.creates)

    # nothing changed: a re-render asks the provider for nothing
    before = (len(service.image_requests), len(service.creates))
    again = run_cli("render", str(tiny_project))
    assert again.returncode == 0 and "nothing to do" in again.stdout + again.stderr
    assert (len(service.image_requests), len(service.creates)) == before
