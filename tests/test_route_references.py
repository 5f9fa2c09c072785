"""`dramaforge check` on references: which characters' references each shot carries to the video
backend (the same fit the backend applies when it sends), a character left without one named, and
the paths where identity would be lost (an image-to-video model starting from a drawn keyframe,
keyframes made from the prompt alone, drawn sheets sent to a paid model)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SMALL, TINY_YAML, run_cli
from stages.backends.base import Figure, fit_references

THREE = """\
Title: Three

# Episode 1: Kettle

INT. KITCHEN - DAY

ANN, BO and CY wait for the kettle.

CY
Is it ready?

BO
Almost.
"""
CY = """  - id: cy
    name: CY
    description: a tall teenager in a yellow raincoat
    references: [cy.png]
    voice: {language: en-us, variant: m1}
"""


def project(tmp_path: Path, backends: str) -> Path:
    from fake_openai import png_bytes

    root = tmp_path / "p"
    root.mkdir(parents=True)
    (root / "cy.png").write_bytes(png_bytes(64, 96))
    (root / "project.yaml").write_text(TINY_YAML + CY + SMALL + backends, encoding="utf-8")
    (root / "script.fountain").write_text(THREE, encoding="utf-8")
    return root


def check(root: Path) -> tuple[dict, list[str]]:
    proc = run_cli("check", str(root), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    return data, [w["message"] for w in data["warnings"]]


def test_the_fit_puts_the_speaker_first_and_everyone_before_anyones_second_view():
    a = Figure("ann", "ANN", "", references=(Path("ann/front"), Path("ann/three-quarter")))
    b = Figure("bo", "BO", "", speaking=True, references=(Path("bo/front"), Path("bo/three-quarter")))
    c = Figure("cy", "CY", "", references=(Path("cy.png"),), assets=(("kling", "42"),))
    fit = fit_references((a, b, c), 4, "kling")
    assert [r.label() for r in fit.sent] == ["BO (front)", "ANN (front)", "CY (saved)", "BO (three-quarter)"]
    assert [r.label() for r in fit.dropped] == ["ANN (three-quarter)", "CY (cy)"] and fit.unseen() == []
    assert fit.of("bo") == [1, 4]
    tight = fit_references((a, b, c), 2, "seedance")  # another backend's saved id is not theirs to send
    assert [f.name for f in tight.unseen()] == ["CY"]


def test_a_shot_with_more_characters_than_the_provider_takes_names_the_one_left_out(tmp_path):
    root = project(tmp_path, "backends:\n  video: kling\n  kling: {max_references: 2}\n")
    data, warnings = check(root)
    refs = data["references"]
    assert (refs["backend"], refs["limit"]) == ("kling", 2)
    first = refs["shots"][0]
    assert len(first["sent"]) == 2 and first["sent"][0] == "CY (cy)"  # CY speaks first in the shot
    (left,) = {d.split(" ")[0] for d in first["dropped"]} - {s.split(" ")[0] for s in first["sent"]}
    assert any(w.startswith(f"{left} gets no reference image in") and "max_references" in w for w in warnings)
    text = run_cli("check", str(root)).stderr + run_cli("check", str(root)).stdout
    assert "references to kling (at most 2 per request)" in text and "left out: " in text


def test_drawn_sheets_sent_to_a_paid_model_are_named(tmp_path):
    root = project(tmp_path, "backends:\n  video: kling\n")
    _, warnings = check(root)
    (drawn,) = [w for w in warnings if "drawn sheets" in w]
    assert "ann, bo" in drawn and "cy" not in drawn.split("references of")[1].split("(")[0]


def test_an_image_to_video_model_starting_from_an_animatic_keyframe_is_warned(tmp_path):
    root = project(tmp_path, "backends:\n  video: kling\n  kling: {mode: image, model: kling-v2-6}\n")
    data, warnings = check(root)
    assert data["references"] == {}  # it sends its keyframe, no references
    assert any("would start from a drawing" in w for w in warnings)


def test_keyframes_from_a_text_only_pipeline_are_warned_and_an_ip_adapter_clears_it(tmp_path, monkeypatch):
    config = tmp_path / "config.yaml"  # the user keeps models in /models (a project may name only allowed folders)
    config.write_text("allow_paths: [/models]\n", encoding="utf-8")
    monkeypatch.setenv("DRAMAFORGE_CONFIG", str(config))
    base = ("backends:\n  video: kling\n  kling: {mode: image, model: kling-v2-6}\n"
            "  image: {kind: diffusers, pipeline: FluxPipeline, model: /models/flux%s}\n")
    _, warnings = check(project(tmp_path / "a", base % ""))
    assert any("made from the prompt alone" in w for w in warnings)
    adapter = ", ip_adapter: {model: /models/ipa, weight_name: ip-adapter.safetensors}"
    _, warnings = check(project(tmp_path / "b", base % adapter))
    assert not any("prompt alone" in w for w in warnings)


def test_the_estimate_counts_images_sent_and_the_files_to_upload_once(tmp_path):
    root = project(tmp_path, "backends:\n  video: pixverse\n")  # fusion: up to 3 references, uploaded first
    data, _ = check(root)
    sent = sum(len(s["sent"]) for s in data["references"]["shots"])
    distinct = {s for row in data["references"]["shots"] for s in row["sent"]}
    proc = run_cli("estimate", str(root), "--json")
    assert proc.returncode == 0, proc.stderr
    (video,) = [w for w in json.loads(proc.stdout)["work"] if w["kind"] == "video"]
    assert video["images"] == sent and video["uploads"] == len(distinct) < sent  # each file once per account
    text = run_cli("estimate", str(root)).stdout
    assert f"{sent} image(s) sent, {len(distinct)} to upload first" in text
