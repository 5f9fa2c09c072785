"""`dramaforge studio PROJECT`: a local web app over the project's work plan and ledger.

The series, each episode's storyboard with every take playing inline, identity and lip-sync verdicts, the
cost so far; pick a take, lock a shot, edit its prompt, size or camera, re-run one shot or the failed ones,
cut an episode again. Each action is the command line's (`pick`, `edit`, `rerun`, `render`) through the
same functions, or the command itself in a child process for a render (its output streamed to the page),
so the ledger and the shot lists stay the truth: a render running elsewhere is seen, a unit another
render holds is refused, and a hand edit is never overwritten (edits are written into the shot list as
it is on disk). Bound to 127.0.0.1; every request needs the token in the URL it prints (kept in a cookie).
The page needs no network: its script and styles are inline, the CJK font is the review site's, subset.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.console import err_console, esc
from stages.core.errors import DramaforgeError, InputError

COOKIE = "dramaforge_studio"


class Busy(InputError):
    """What the studio will not start now: a render of its own is running, or another holds the unit."""


class Run:
    """A render the studio started: the command's output, line by line, and how it ended."""

    def __init__(self, args: list[str], root: Path):
        self.args, self.lines, self.code = args, [], None
        self.proc = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], cwd=root, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
        self.code = self.proc.wait()


def create_app(root: Path, token: str):
    """The studio's FastAPI app for the project at `root`, answering only requests that carry `token`."""
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse

    from stages.core.paths import BuildPaths
    from stages.load_project import load_project

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    runs: list[Run] = []
    build = BuildPaths(load_project(root).build)

    @app.middleware("http")
    async def _token(request: Request, call_next):
        given = request.query_params.get("token") or request.cookies.get(COOKIE) or \
            request.headers.get("x-dramaforge-token")
        if not given or not secrets.compare_digest(given, token):
            return JSONResponse({"error": "this studio needs the token in the URL `dramaforge studio` printed"},
                                status_code=403)
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(DramaforgeError)
    async def _refused(request: Request, exc: DramaforgeError):  # a user's mistake: said, never a traceback
        return JSONResponse({"error": str(exc), "hint": exc.hint}, status_code=409 if isinstance(exc, Busy) else 400)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        from stages.core.prompts import render_page

        lp = load_project(root)
        from stages.write_review import FONT_FAMILY

        return render_page("studio.html.j2", lp.root, series=lp.script.title or lp.project.title,
                           language=lp.project.language, font_family=FONT_FAMILY)

    @app.get("/font.css")
    def font() -> FileResponse:
        return FileResponse(_font_file(load_project(root), build), media_type="text/css")

    @app.get("/api/series")
    def series() -> dict:
        from stages.studio_view import series_view

        return series_view(load_project(root), running=_running(runs))

    @app.get("/media/{rel:path}")
    def media(rel: str) -> FileResponse:
        path = (build.root / rel).resolve()
        if not path.is_file() or build.root.resolve() not in path.parents:
            return JSONResponse({"error": f"no file {rel} in the build folder"}, status_code=404)
        return FileResponse(path)

    @app.post("/api/pick")
    def pick(body: dict) -> dict:
        from stages.pick_take import pick_take

        pick_take(load_project(root), str(body.get("shot")), int(body.get("take") or 0))
        return {"ok": True}

    @app.post("/api/edit")
    def edit(body: dict) -> dict:
        from stages.edit_shot import FIELDS, edit_shot

        path = edit_shot(load_project(root), str(body.get("shot")), **{k: body.get(k) for k in FIELDS})
        return {"ok": True, "shotlist": str(path)}

    @app.post("/api/rerun")
    def rerun(body: dict) -> dict:
        shot = body.get("shot")
        if shot:
            _refuse_held(load_project(root), str(shot))
            return _start(runs, ["rerun", str(root), "--shot", str(shot)], root)
        return _start(runs, ["rerun", str(root), "--failed"], root)

    @app.post("/api/cut")
    def cut(body: dict) -> dict:
        from stages.pick_take import still_to_make
        from stages.project_status import project_status

        episode = int(body.get("episode") or 0)
        lp = load_project(root)
        status = next((e for e in project_status(lp, [episode], cached_only=True)), None)
        if status is None:
            raise InputError(f"no episode {episode}")
        missing = still_to_make(status)
        if missing:  # cutting would make them first: that is a render, asked for as one
            raise InputError(f"episode {episode} has {len(missing)} shot(s) or take(s) to make first "
                             f"({', '.join(s.id for s in missing[:4])})", hint="re-run them, or render the episode")
        return _start(runs, ["render", str(root), "-e", str(episode)], root)

    @app.post("/api/render")
    def render(body: dict) -> dict:
        """An episode rendered: what is missing or changed is made (and paid for: the page asks first)."""
        episode = int(body.get("episode") or 0)
        if episode not in [e.number for e in load_project(root).script.episodes]:
            raise InputError(f"no episode {episode}")
        return _start(runs, ["render", str(root), "-e", str(episode)], root)

    @app.get("/api/runs/{n}")
    def run_events(n: int) -> StreamingResponse:
        """The run's output as server-sent events, then `end` with its exit code."""
        if not 0 <= n < len(runs):
            return JSONResponse({"error": f"no run {n}"}, status_code=404)
        run = runs[n]

        def events():
            sent = 0
            while True:
                while sent < len(run.lines):
                    yield f"data: {json.dumps(run.lines[sent])}\n\n"
                    sent += 1
                if run.code is not None and sent >= len(run.lines):
                    yield f"event: end\ndata: {run.code}\n\n"
                    return
                time.sleep(0.1)

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def _start(runs: list[Run], args: list[str], root: Path) -> dict:
    if _running(runs):
        raise Busy("the studio is running a render already", hint="wait for it to finish (its output is shown)")
    runs.append(Run(args, root))
    return {"run": len(runs) - 1, "command": "dramaforge " + " ".join(args)}


def _running(runs: list[Run]) -> str | None:
    return next(("dramaforge " + " ".join(r.args) for r in runs if r.code is None), None)


def _refuse_held(lp, shot: str) -> None:
    """A take another render is making now is not started again here: refused, saying so."""
    from filelock import FileLock, Timeout

    from stages.backends.registry import backends_for
    from stages.core.paths import BuildPaths
    from stages.pick_take import episode_of
    from stages.plan_work import plan_work

    base = shot.rsplit("-t", 1)[0] if shot.rsplit("-t", 1)[-1].isdigit() else shot
    work = plan_work(lp, episode_of(lp, base), backends_for(lp.project, lp.root), cached_only=True)
    unit = next((u for u in work.shots if u.id == shot), None)
    if unit is None:
        raise InputError(f"no shot or take {shot}", hint="`dramaforge status PROJECT --json` lists them")
    if unit.key is None:
        return
    paths = BuildPaths(lp.build)
    lock = FileLock(str(paths.lock(paths.shots, unit.key)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise Busy(f"{shot} is being made by another render now",
                   hint="wait for it: its clip appears here when it is done") from None
    lock.release()


def _font_file(lp, build) -> Path:
    """The page font, subset to every character the studio shows now (the review site's way)."""
    from stages.studio_view import series_view
    from stages.write_review import font_css

    text = json.dumps(series_view(lp), ensure_ascii=False) + STUDIO_TEXT
    return font_css(build.root / "studio", text, lp.project.subtitles.font)


STUDIO_TEXT = "dramaforge studio take pick lock unlock edit prompt size camera re-run failed cut again cost"


def studio(project: Annotated[Path, typer.Argument(help="project folder (holds project.yaml)", show_default=False)],
           port: Annotated[int, typer.Option("--port", help="the port on 127.0.0.1 (0: any free one)")] = 0,
           open_browser: Annotated[Optional[bool], typer.Option("--open/--no-open", help="open it in the browser "
                                                                                     "(default: when one can be)")] = None,
           ) -> None:
    """A local web app to review, pick, edit and re-run in the browser: every episode's storyboard with
    every take playing, identity and lip-sync verdicts, cost so far; pick a take, lock or edit a shot,
    re-run a shot or the failed ones, cut an episode again (each the command line's `pick`, `edit`,
    `rerun`, `render`). Serves 127.0.0.1 only, with a token in the URL it prints; Ctrl-C stops it."""
    import socket

    import uvicorn

    from stages.load_project import load_project

    lp = load_project(project)
    token = secrets.token_urlsafe(18)
    app = create_app(lp.root, token)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/?token={token}"
    print(f"studio for {lp.project.title}: {url}", flush=True)
    err_console().print(f"serving {esc(str(lp.root))} on 127.0.0.1:{port}; Ctrl-C stops it")
    if open_browser or (open_browser is None and sys.stdout.isatty()):
        import webbrowser

        webbrowser.open(url)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
