"""Subtitle translation through any OpenAI-compatible `/v1/chat/completions` server.

Lines go to the model as JSON data with ids 1..n and come back as structured JSON keyed by id, so
a line can never be dropped, merged or shifted unnoticed: every answer is validated, and its
problems are sent back for a bounded number of repair rounds. Long episodes are sent in batches.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from pydantic import Field

from stages.backends._openai import LazyClient, map_openai_error
from stages.backends.base import Capabilities, PermanentError, RejectedError
from stages.core.artifacts import spec_hash
from stages.core.model import Model
from stages.core.prompts import render_template, template_source
from stages.core.trust import redact_url

TEMPLATES = ("translate.system.j2", "translate.user.j2", "translate.repair.j2")
BATCH_LINES = 60  # lines per request: a long episode stays well inside any model's output limit
MAX_REPAIRS = 2
CONTEXT_LINES = 3  # source lines before a batch, sent for continuity

RESPONSE_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["lines"],
    "properties": {"lines": {"type": "array", "items": {
        "type": "object", "additionalProperties": False, "required": ["id", "text"],
        "properties": {"id": {"type": "integer"}, "text": {"type": "string"}}}}},
}


def translation_messages(lines: list[str], source: str, target: str, context: str,
                         project_dir: Path | None = None, *, previous: list[str] | tuple = (),
                         glossary: tuple[tuple[str, str], ...] = ()) -> list[dict]:
    """The chat messages that ask for `lines` (ids 1..n) in `target`, with the glossary's (term, word)
    pairs that these lines use."""
    from stages.core.text import contains

    terms = [{"term": t, "word": w} for t, w in glossary if any(contains(line, t) for line in lines)]
    system = render_template("translate.system.j2", project_dir, keep_lines=True, source=source, target=target)
    user = render_template("translate.user.j2", project_dir, keep_lines=True, source=source, target=target,
                           context=context, previous=list(previous), glossary=terms,
                           lines=[{"id": i, "text": text} for i, text in enumerate(lines, 1)])
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def validate(answer, lines: list[str], glossary: tuple[tuple[str, str], ...] = ()) -> list[str]:
    """Everything wrong with a parsed answer for `lines`, as sentences the model can act on (a glossary
    term's word missing from its line's translation included)."""
    from stages.core.text import contains

    if not isinstance(answer, dict) or not isinstance(answer.get("lines"), list):
        return ["the answer must be a JSON object with a `lines` array"]
    n = len(lines)
    errors: list[str] = []
    seen: dict[int, int] = {}
    for k, item in enumerate(answer["lines"], 1):
        lid = item.get("id") if isinstance(item, dict) else None
        if not isinstance(lid, int) or isinstance(lid, bool):
            errors.append(f"entry {k} needs an integer `id` and a string `text`")
            continue
        if not 1 <= lid <= n:
            errors.append(f"id {lid} does not exist (ids are 1 to {n})")
            continue
        seen[lid] = seen.get(lid, 0) + 1
        text = item.get("text")
        if not isinstance(text, str):
            errors.append(f"id {lid} needs a string `text`")
        elif not text.strip() and lines[lid - 1].strip():
            errors.append(f"id {lid} has an empty translation")
        else:
            errors += [f"id {lid} must write {w!r} for {t!r} (the glossary)" for t, w in glossary
                       if contains(lines[lid - 1], t) and not contains(text, w)]
    missing = [i for i in range(1, n + 1) if i not in seen]
    if missing:
        errors.append(f"id(s) {_ids(missing)} are missing; translate every line")
    dupes = sorted(i for i, c in seen.items() if c > 1)
    if dupes:
        errors.append(f"id(s) {_ids(dupes)} appear more than once; give each id exactly once")
    return errors


def _ids(ids: list[int]) -> str:
    return ", ".join(map(str, ids[:20])) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")


class TranslationOptions(Model):
    """The chat server that translates subtitles (the settings of `subtitles.translation`)."""

    model: str = Field("gpt-4.1-mini", description="chat model name on the server")
    base_url: str | None = Field(None, description="default: OpenAI")
    api_key_env: str = Field("OPENAI_API_KEY")
    timeout_s: float = Field(120, gt=0, le=900)
    concurrency: int = Field(4, ge=1, le=32, description="episodes translated at once (requests to the server)")


class OpenAITranslationBackend:
    """TranslationBackend: one chat model, prompted by templates/translate.*.j2."""

    name = "openai"
    section = None  # its options are `subtitles.translation`
    Options = TranslationOptions
    capabilities = Capabilities(billed=True, pool="api")  # priced by `rates.text.translation`

    def __init__(self, options: TranslationOptions, project_dir: Path | None = None):
        self.options = options
        self.project_dir = project_dir
        self.capabilities = replace(type(self).capabilities, concurrency=options.concurrency)
        self.client = LazyClient(options.api_key_env, options.base_url, options.timeout_s,
                                 what="subtitle translation", setting="subtitles.translation.base_url")

    def identity(self) -> dict:
        sources = {n: template_source(n, self.project_dir) for n in TEMPLATES}
        return {"engine": "openai-chat", "model": self.options.model,
                "base_url": redact_url(self.options.base_url) or "api.openai.com",
                "templates": spec_hash("templates", sources)}

    def calls(self, count: int) -> int:
        """Requests that translating `count` lines takes (before any repair round)."""
        return -(-count // BATCH_LINES)

    def translate(self, lines: list[str], source: str, target: str, context: str,
                  glossary: tuple[tuple[str, str], ...] = ()) -> list[str]:
        # Blank lines are not worth a model's attention (nor a chance to get them wrong).
        todo = [i for i, text in enumerate(lines) if text.strip()]
        out = ["" for _ in lines]
        for b in range(0, len(todo), BATCH_LINES):
            idx = todo[b:b + BATCH_LINES]
            previous = [lines[i] for i in todo[max(0, b - CONTEXT_LINES):b]]
            batch = self._batch([lines[i] for i in idx], source, target, context, previous, glossary)
            for i, text in zip(idx, batch, strict=True):
                out[i] = text
        return out

    def _batch(self, lines: list[str], source: str, target: str, context: str, previous: list[str],
               glossary: tuple[tuple[str, str], ...] = ()) -> list[str]:
        import openai

        o = self.options
        what = f"subtitle translation ({o.model} at {redact_url(o.base_url) or 'api.openai.com'})"
        history = translation_messages(lines, source, target, context, self.project_dir, previous=previous,
                                       glossary=glossary)
        problems: list[str] = []
        for _ in range(MAX_REPAIRS + 1):
            try:
                resp = self.client().chat.completions.create(
                    model=o.model, messages=history, temperature=0.2,
                    response_format={"type": "json_schema", "json_schema": {
                        "name": "translation", "schema": RESPONSE_SCHEMA, "strict": True}})
            except openai.OpenAIError as exc:
                raise map_openai_error(exc, what) from exc
            choice = resp.choices[0]
            msg = choice.message
            if getattr(msg, "refusal", None):
                raise RejectedError(f"{what}: the model refused: {msg.refusal}")
            if choice.finish_reason == "content_filter":
                raise RejectedError(f"{what}: the provider's content filter stopped the answer")
            content = msg.content or ""
            try:
                answer = json.loads(content)
                problems = validate(answer, lines, glossary)
            except json.JSONDecodeError as exc:
                answer, problems = None, [f"the answer is not valid JSON ({exc.msg} at character {exc.pos})"]
            if not problems:
                by_id = {item["id"]: item["text"].strip() for item in answer["lines"]}
                return [by_id[i] for i in range(1, len(lines) + 1)]
            repair = render_template("translate.repair.j2", self.project_dir, keep_lines=True, problems=problems,
                                     count=len(lines))
            history = [*history, {"role": "assistant", "content": content}, {"role": "user", "content": repair}]
        # The same model and prompt failing three times in a row is not bad luck: retrying the task
        # would spend the same calls again, so this is permanent (another model is the fix).
        raise PermanentError(f"{what} gave no valid translation after {MAX_REPAIRS} repair round(s): "
                             + "; ".join(problems[:5]) + " (try another model)")
