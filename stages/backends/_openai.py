"""What every backend on the openai client shares: the client made on first use (so `identity()`,
the cache key, needs no API key), never retrying (the Prefect tasks own retries), and every
provider failure mapped to the error class that tells a flow whether to retry."""

from __future__ import annotations

import contextlib
import email.utils
import os
import threading
import time

from stages.core.trust import provider_detail, redact_url
from stages.backends.base import BackendError, PermanentError, RejectedError, TransientError, is_refusal


class LazyClient:
    """`client()` is an `openai.OpenAI`, made on first call and shared by threads; it pickles as its
    settings (a worker process makes its own)."""

    def __init__(self, api_key_env: str, base_url: str | None, timeout_s: float, *, what: str, setting: str):
        self.settings = dict(api_key_env=api_key_env, base_url=base_url, timeout_s=timeout_s, what=what,
                             setting=setting)
        self._client = None
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            if self._client is None:
                self._client = openai_client(**self.settings)
            return self._client

    def __getstate__(self) -> dict:
        return self.settings

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)


def openai_client(api_key_env: str, base_url: str | None, timeout_s: float, *, what: str, setting: str):
    """An `openai.OpenAI` that never retries; a missing key is an error only for OpenAI's own server."""
    import openai

    key = os.environ.get(api_key_env)
    if not key and base_url is None:
        raise PermanentError(f"{what} needs an API key in ${api_key_env}: export {api_key_env}=..., or set "
                             f"{setting} to a local OpenAI-compatible server")
    return openai.OpenAI(api_key=key or "not-needed", base_url=base_url, timeout=timeout_s, max_retries=0)


def map_openai_error(exc: Exception, what: str) -> BackendError:
    """An openai exception as the backend error class that tells a flow whether to retry."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        status, message = exc.status_code, provider_message(exc)
        text = f"{what} answered {status}: {message}"
        # 408 and 409 are what the openai client itself would retry, alongside 429 and 5xx.
        if status in (408, 409, 429) or status >= 500:
            return TransientError(text, retry_after_s=retry_after_s(exc.response.headers))
        if status in (400, 403, 422) and is_refusal(exc.code, message):
            return RejectedError(text)
        if status == 401:
            return PermanentError(f"{text} (check the API key)")
        if status == 404:
            return PermanentError(f"{text} (check the model and voice names, and the base URL)")
        return PermanentError(text)
    if isinstance(exc, openai.APIConnectionError):  # APITimeoutError is one
        return TransientError(f"{what}: {exc.message}")
    return PermanentError(f"{what}: {exc}")


def provider_message(exc) -> str:
    """The provider's own words (`error.message` of the JSON body), else the client's summary."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]:
        return body["message"]
    response = getattr(exc, "response", None)
    if response is not None:  # a body that is not JSON is described, never quoted (`_http.provider_detail`)
        return provider_detail(response.text, response.headers.get("content-type"))
    return str(getattr(exc, "message", exc))


def retry_after_s(headers) -> float | None:
    """The server's Retry-After hint in seconds (`retry-after-ms`, seconds, or an HTTP date)."""
    with contextlib.suppress(TypeError, ValueError):
        ms = headers.get("retry-after-ms")
        if ms:
            return max(0.0, float(ms) / 1000)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def ask_json(client, *, model: str, messages: list[dict], schema: dict, name: str, validate, max_repairs: int,
             error: type, what: str, fix: str) -> dict:
    """A chat answer as JSON matching `schema` (structured output), checked by `validate` (answer ->
    problems, in sentences the model can act on); problems are sent back for up to `max_repairs`
    rounds. Refusals, server errors and answers still wrong at the end raise `error` with `fix`."""
    import json

    import openai

    history = list(messages)
    problems: list[str] = []
    for _ in range(max_repairs + 1):
        try:
            resp = client.chat.completions.create(
                model=model, messages=history, temperature=0.2,
                response_format={"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}})
        except openai.APIStatusError as exc:
            raise error(f"{what}'s server answered {exc.status_code}: {provider_message(exc)}",
                        hint="check the model name, the base URL and the API key") from exc
        except openai.APIConnectionError as exc:
            raise error(f"cannot reach {what} at {redact_url(str(client.base_url))}: {exc}",
                        hint="start the server or fix the base URL") from exc
        msg = resp.choices[0].message
        if getattr(msg, "refusal", None):
            raise error(f"{what} refused: {msg.refusal}", hint=fix)
        content = msg.content or ""
        try:
            answer = json.loads(content)
            problems = validate(answer) if isinstance(answer, dict) else ["the answer must be a JSON object"]
        except json.JSONDecodeError as exc:
            answer, problems = None, [f"the answer is not valid JSON ({exc.msg} at character {exc.pos})"]
        if not problems:
            return answer
        history += [{"role": "assistant", "content": content},
                    {"role": "user", "content": "Your answer has these problems:\n- " + "\n- ".join(problems)
                     + "\nAnswer again with the whole corrected answer as JSON."}]
    raise error(f"{what} gave no valid answer after {max_repairs} repair round(s): " + "; ".join(problems[:5]),
                hint=fix)
