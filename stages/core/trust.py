"""What a project file may reach: which environment variable it names as a key, where that key is
sent, and which files outside its own folder it reads.

A project folder may come from anyone (a download, a colleague's repository), so its project.yaml
chooses none of this beyond the defaults:

- a key goes to the provider's own address, a server on this machine, or a host the user's config
  allows (`allow_hosts`);
- a key comes from the variable the backend documents (`FAL_KEY`, `OPENAI_API_KEY`, ...) or one
  named like `*_API_KEY`; the user's own config may allow more patterns (`api_key_env`);
- an address with credentials in it (`https://user:pass@host`) is refused (the key belongs in the
  variable); a query (`?key=...`) is kept but shown and stored as `?key=***`; an address that is not
  the provider's own is named by `check` and by a render's first line;
- every file it names (script, music, effects, reference images, Piper voices, local model folders)
  lies inside the project folder, or inside a folder the user's config allows (`allow_paths`);
  local model folders may also lie in the Hugging Face cache.

The user's config is `$DRAMAFORGE_CONFIG`, else `$XDG_CONFIG_HOME/dramaforge/config.yaml` (default
`~/.config/dramaforge/config.yaml`); it is optional and read once per process (and again when it
changes).
"""

from __future__ import annotations

import fnmatch
import json
import functools
import os
import urllib.parse
from pathlib import Path

from pydantic import Field

from stages.core.errors import InputError
from stages.core.model import Model

KEY_PATTERNS = ("*_API_KEY",)  # allowed in any project, beside each backend's own variable
URL_FIELDS = ("base_url", "queue_url", "api_url")  # the addresses a backend sends its key to


class UserConfig(Model):
    """The user's own config file: what project files may reach beyond the defaults."""

    api_key_env: list[str] = Field(default_factory=list, description="more variable names a project may name "
                                   "as a key (fnmatch patterns, e.g. MYCORP_*_TOKEN)")
    allow_paths: list[str] = Field(default_factory=list, description="folders outside a project that its files "
                                   "may name (absolute or ~ paths), e.g. ~/Music, ~/models")
    allow_hosts: list[str] = Field(default_factory=list, description="hosts besides each provider's own that a "
                                   "project may send a key to (fnmatch patterns), e.g. llm.mycorp.internal")


def config_path() -> Path:
    """Where the user's config is (it need not exist)."""
    if os.environ.get("DRAMAFORGE_CONFIG"):
        return Path(os.environ["DRAMAFORGE_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "dramaforge" / "config.yaml"


def user_config() -> UserConfig:
    """The user's config, validated (unknown keys refused with file:line); the defaults if there is none."""
    path = config_path()
    try:
        st = path.stat()
    except OSError:
        return UserConfig()
    return _read_config(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _read_config(path: str, mtime_ns: int, size: int) -> UserConfig:
    from pydantic import ValidationError

    from stages.core.yaml_lines import _line, _line_of, read_yaml

    text, node, data = read_yaml(Path(path), "your dramaforge config")
    if data is None:
        return UserConfig()
    if not isinstance(data, dict):
        raise InputError("your dramaforge config must be a mapping (api_key_env, allow_paths, allow_hosts)", file=path, line=1)
    try:
        return UserConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        line = _line_of(node, loc)
        msg = f"unknown key {loc[-1]!r}" if err["type"] == "extra_forbidden" else err["msg"]
        raise InputError(f"{'.'.join(str(p) for p in loc)}: {msg}", file=path, line=line,
                         text=_line(text, line) if line else None,
                         hint="allowed keys: api_key_env (a list of variable-name patterns), allow_paths "
                              "(a list of folders), allow_hosts (a list of host-name patterns)") from None


# --- keys and addresses --------------------------------------------------------------------------

def allowed_key_env(name: str, default: str | None) -> bool:
    """Whether a project may name the variable `name` as a key (`default`: the backend's own)."""
    patterns = (*KEY_PATTERNS, *user_config().api_key_env)
    return name == default or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def allowed_host(url: str) -> bool:
    """Whether a project may send a key to `url`, which is not its provider's own address: a server
    on this machine, or a host the user's own config allows (`allow_hosts`)."""
    import ipaddress

    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        if host == "localhost" or host.endswith(".localhost"):
            return True
    return any(fnmatch.fnmatchcase(host, p.lower()) for p in user_config().allow_hosts)


def redact_url(url: str | None) -> str | None:
    """`url` fit to show or store: no user:password@, each query value `***`. An address with neither
    comes back unchanged, character for character (it is part of artifact keys)."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc and not parts.query:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(f"{k}=***" if sep else "***" for k, sep, _ in
                     (q.partition("=") for q in parts.query.split("&") if q))
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_settings(data):
    """A copy of settings (`Project.model_dump(mode="json")`) with every address redacted."""
    if isinstance(data, dict):
        return {k: redact_url(v) if k in (*URL_FIELDS, "media_base_url") and isinstance(v, str)
                else redact_settings(v) for k, v in data.items()}
    if isinstance(data, list):
        return [redact_settings(v) for v in data]
    return data


def join_url(base: str, path: str) -> str:
    """`path` under the address `base`, keeping `base`'s query (a gateway's `?key=`) at the end."""
    parts = urllib.parse.urlsplit(base)
    tail, _, query = path.lstrip("/").partition("?")
    joined = "&".join(q for q in (parts.query, query) if q)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, f"{parts.path.rstrip('/')}/{tail}", joined,
                                    parts.fragment))


# --- files ---------------------------------------------------------------------------------------

def hf_cache() -> Path:
    """The Hugging Face cache: local model folders may lie there without the user's config saying so."""
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface").expanduser()


def allowed_folders(*, models: bool = False) -> list[Path]:
    """Folders outside a project its files may name (the user's `allow_paths`; for models, the HF cache too)."""
    out = [Path(p).expanduser() for p in user_config().allow_paths]
    return out + ([hf_cache()] if models else [])


def confined(path: str | Path, root: Path, *, what: str, file: str | None = None, line: int | None = None,
             text: str | None = None, models: bool = False) -> Path:
    """`path` (relative to `root`), resolved through `..` and symlinks; InputError unless it lies inside
    the project folder `root` or a folder the user's config allows."""
    resolved = (Path(root) / Path(path).expanduser()).resolve()
    inside = [Path(root).resolve(), *(f.resolve() for f in allowed_folders(models=models))]
    if any(resolved == f or resolved.is_relative_to(f) for f in inside):
        return resolved
    raise InputError(f"{what} {str(path)!r} is outside the project folder {Path(root).resolve()}", file=file,
                     line=line, text=text,
                     hint=f"copy it into the project folder, or add its folder to allow_paths in your own "
                          f"config, {config_path()}")


# --- what a provider answered ----------------------------------------------------------------------

def provider_detail(text: str, content_type: str | None = None) -> str:
    """The provider's own words from a JSON error body (`detail`, `error`, `message`). Any other body
    is described, never quoted: a proxy's page may echo the request, its headers and key included."""
    if not text.strip():
        return "no body"
    try:
        data = json.loads(text)
    except ValueError:
        return body_summary(text, content_type)
    if isinstance(data, dict):
        for k in ("detail", "error", "message", "title"):
            v = data.get(k)
            if isinstance(v, str) and v:
                return v[:500]
            if isinstance(v, (list, dict)) and v:
                return json.dumps(v, ensure_ascii=False)[:500]
    return " ".join(text.split())[:120]


def body_summary(body: str | bytes, content_type: str | None = None) -> str:
    """What a body that is not JSON was, without its words: its type and size."""
    size = len(body.encode("utf-8", "replace") if isinstance(body, str) else body)
    kind = (content_type or "").split(";")[0].strip() or "no content type"
    return f"a non-JSON body ({kind}, {size:,} bytes)"
