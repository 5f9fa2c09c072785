"""One small HTTP layer for the hosted job protocols (fal, Replicate): JSON calls and downloads, every
failure mapped to the class that tells the job driver what happened.

What matters for money is telling "the provider never took this request" from "it may have": a
refused connection or a 4xx answer made no job; a timeout after the request was sent, a 5xx or a
2xx body that is not JSON (a proxy's error page) leave it unknown (`AnswerLost`). Nothing here
retries: the job driver decides, because only it knows whether a request may be repeated.
"""

from __future__ import annotations

import json
from pathlib import Path

from stages.backends._openai import retry_after_s
from stages.core.trust import body_summary, provider_detail  # noqa: F401 (backends import them from here)
from stages.backends.base import PermanentError, RejectedError, TransientError, is_refusal


class AnswerLost(TransientError):
    """The request was sent but no usable answer came back: the provider may have acted on it."""


class NotFound(PermanentError):
    """The provider answered 404 or 410: it does not (or no longer) know this job or file."""


def _httpx():
    import httpx2

    return httpx2


class Http:
    """JSON over HTTPS with one set of headers; `what` names the provider in every message."""

    def __init__(self, headers: dict[str, str], *, what: str, key_env: str, timeout_s: float = 60):
        self.headers, self.what, self.key_env, self.timeout_s = headers, what, key_env, timeout_s
        self._client = None

    def client(self):
        if self._client is None:
            httpx = _httpx()
            self._client = httpx.Client(headers=self.headers, timeout=httpx.Timeout(self.timeout_s, connect=15),
                                        follow_redirects=True)
        return self._client

    def __getstate__(self) -> dict:  # a Dask worker makes its own connection pool
        return {"headers": self.headers, "what": self.what, "key_env": self.key_env, "timeout_s": self.timeout_s}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["headers"], what=state["what"], key_env=state["key_env"], timeout_s=state["timeout_s"])

    def call(self, method: str, url: str, doing: str, *, body: dict | None = None,
             headers: dict[str, str] | None = None, array: bool = False) -> dict | list:
        """One request; its JSON answer (a dict; a list with `array`, for a listing that answers with a
        bare array), or the error class for what went wrong."""
        httpx = _httpx()
        try:
            resp = self.client().request(method, url, json=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise TransientError(f"{self.what} {doing}: cannot connect ({type(exc).__name__}: {exc})") from exc
        except httpx.HTTPError as exc:  # sent (or partly): a timeout or a dropped connection before the answer
            raise AnswerLost(f"{self.what} {doing}: no answer ({type(exc).__name__}: {exc or 'timed out'})") from exc
        return self.answer(resp, doing, array=array)

    def call_multipart(self, url: str, doing: str, *, data: dict[str, str], files: dict[str, tuple],
                       headers: dict[str, str] | None = None) -> dict:
        """A multipart POST that may create a paid job (form fields `data`, `files` as (name, bytes,
        type)): its JSON answer; a lost answer is `AnswerLost`, as with `call`."""
        httpx = _httpx()
        try:
            resp = self.client().post(url, data=data, files=files, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise TransientError(f"{self.what} {doing}: cannot connect ({type(exc).__name__}: {exc})") from exc
        except httpx.HTTPError as exc:
            raise AnswerLost(f"{self.what} {doing}: no answer ({type(exc).__name__}: {exc or 'timed out'})") from exc
        return self.answer(resp, doing)

    def answer(self, resp, doing: str, *, array: bool = False) -> dict | list:
        status = resp.status_code
        text = resp.text
        kind = resp.headers.get("content-type")
        if 200 <= status < 300:
            try:
                data = json.loads(text) if text.strip() else {}
            except ValueError:
                raise AnswerLost(f"{self.what} {doing}: answered {status} with {body_summary(text, kind)}") from None
            if not isinstance(data, list if array else dict):
                raise AnswerLost(f"{self.what} {doing}: answered {status} with JSON that is not "
                                 f"{'an array' if array else 'an object'} ({type(data).__name__})")
            return data
        message = self.scrub(f"{self.what} {doing} answered {status}: {provider_detail(text, kind)}")
        if status == 429 or status == 408 or status == 409:
            exc = TransientError(message, retry_after_s=retry_after_s(resp.headers))
        elif status >= 500:
            exc = AnswerLost(message, retry_after_s=retry_after_s(resp.headers))
        elif status in (401, 403):
            exc = PermanentError(f"{message} (check the key in ${self.key_env})")
        elif status in (404, 410):
            exc = NotFound(message)
        elif is_refusal(None, text):
            exc = RejectedError(message)
        else:
            exc = PermanentError(message)
        exc.status, exc.headers = status, {k.lower(): v for k, v in resp.headers.items()}  # for a provider's own hints
        raise exc

    def scrub(self, message: str) -> str:
        """`message` without the key's value (a provider may quote the request back)."""
        import os

        key = os.environ.get(self.key_env, "")
        return message.replace(key, "***") if len(key) >= 4 else message

    def upload(self, url: str, name: str, data: bytes, content_type: str, doing: str) -> dict:
        """A multipart upload (`content` field), its JSON answer."""
        httpx = _httpx()
        try:
            resp = self.client().post(url, files={"content": (name, data, content_type)})
        except httpx.HTTPError as exc:
            raise TransientError(f"{self.what} {doing}: {type(exc).__name__}: {exc}") from exc
        return self.answer(resp, doing)

    def download(self, url: str, out: Path, doing: str, *, timeout_s: float = 600) -> int:
        """Stream `url` into `out` (a temp file); the bytes written. An expired link is `NotFound`."""
        httpx = _httpx()
        size = 0
        try:
            # a result URL is on a CDN: send no provider key there
            with httpx.stream("GET", url, timeout=httpx.Timeout(timeout_s, connect=15), follow_redirects=True,
                              headers={"User-Agent": "dramaforge"}) as resp:
                if resp.status_code in (403, 404, 410):  # signed links answer 403 once they expire
                    raise NotFound(f"{self.what} {doing}: the file answered {resp.status_code} (expired or removed)")
                if resp.status_code >= 400:
                    resp.read()
                    self.answer(resp, doing)
                with open(out, "wb") as f:
                    for chunk in resp.iter_bytes(1 << 20):
                        f.write(chunk)
                        size += len(chunk)
        except httpx.HTTPError as exc:
            raise TransientError(f"{self.what} {doing}: the download broke off ({type(exc).__name__}: {exc})") from exc
        return size
