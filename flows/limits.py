"""How many units of a backend run at once, and how fast they start: within this process, or across
every process and machine of a render (Prefect global concurrency limits). `flows/tasks.py` says
which task takes which; this is how they hold.

A render whose tasks all run in its own threads keeps each backend's limits in the process (`gate`):
nothing to ask a server. A render whose tasks run in other processes (`--dask`, a deployment's
workers) takes a hosted or GPU backend's from the Prefect server every worker reports to (`Slots`;
a CPU backend's limit is its machine's cores, so each process keeps its gate): one global
concurrency limit per provider (`dramaforge-video-<backend>`, sized from `limits.video_concurrency`,
else the backend's declared concurrency), one for its start rate (`dramaforge-video-<backend>-rate`,
`limits.video_per_minute` as slots that decay) and, for a GPU backend, one per GPU
(`dramaforge-gpu-<host>-<gpu>`, one slot: every worker of that machine that uses that GPU waits its
turn). Slots are leased: a worker that dies holding one frees it at most `LEASE_S` + 15 s later.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from dataclasses import dataclass

LEASE_S = 60  # the shortest lease Prefect's server takes; renewed every 45 s while a unit runs
GPU_SLOTS = 1  # units one GPU runs at once (a local model holds the whole device)


class Gate:
    """A backend's concurrency and start-rate limits within this process (threads share it)."""

    def __init__(self, concurrency: int, per_minute: float | None):
        self.slots = threading.BoundedSemaphore(concurrency)
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.lock = threading.Lock()
        self.next_start = 0.0

    @contextlib.contextmanager
    def hold(self):
        with self.slots:
            if self.interval:
                with self.lock:  # reserve the next start time, then sleep outside the lock
                    now = time.monotonic()
                    start = max(now, self.next_start)
                    self.next_start = start + self.interval
                time.sleep(start - now)
            yield


_gates: dict[tuple, Gate] = {}
_gates_lock = threading.Lock()


def gate(backend, concurrency: int | None, per_minute: float | None) -> Gate:
    """This process's gate for `backend` (its declared concurrency unless `concurrency` is given)."""
    concurrency = concurrency or backend.capabilities.concurrency
    key = (type(backend).__name__, backend.name, concurrency, per_minute)
    with _gates_lock:
        if key not in _gates:
            _gates[key] = Gate(concurrency, per_minute)
        return _gates[key]


# (server, limit) -> (size, decay) this process made or resized it to: an episode run asks for the same again
_sized: dict[tuple[str | None, str], tuple[int, float]] = {}


@dataclass(frozen=True)
class Slots:
    """The global limits a render's units of one backend take (made on the server by `shared`)."""

    concurrency: str | None  # None: a CPU backend, limited per machine (each process's `gate`)
    rate: str | None = None
    gpu: bool = False  # also one slot of the GPU this worker runs it on
    build: str = ""  # the build folder every worker must see, and the render's token in it (`shared_fs`)
    farm: str = ""


def shared(kind: str, backend, build: str, farm: str, concurrency: int | None = None,
           per_minute: float | None = None) -> Slots:
    """The server's limits for `backend` (a `kind` backend: video, lipsync, speech, translation), created
    or resized (unless this process already did) before any unit takes them: a missing limit would be
    skipped silently by a lenient take. `farm`: the token `shared_fs.mark_farm` left in `build` for this
    render."""
    if backend.capabilities.pool == "cpu":  # its limit is a machine's cores, not an account's
        return Slots(None, build=build, farm=farm)
    name = f"dramaforge-{kind}-{backend.name}"
    sizes = {name: (concurrency or backend.capabilities.concurrency, 0.0)}
    if per_minute:  # one start, then the next once its slot has decayed: 60 / per_minute s later
        sizes[f"{name}-rate"] = (1, per_minute / 60.0)
    _made_as(sizes)
    return Slots(name, f"{name}-rate" if per_minute else None, backend.capabilities.pool == "gpu", build, farm)


@contextlib.contextmanager
def held(slots: Slots, backend, local: Gate):
    """One slot of each of the render's limits for `backend` (and of this machine's GPU), taken together
    (all or none, so two units never hold half each), then a start under the rate limit; a CPU
    backend's turn from the process's `local` gate. First, once, that this machine sees the render's
    build folder where its locks hold."""
    from prefect.concurrency.sync import concurrency, rate_limit

    from stages.core.shared_fs import sees_farm

    sees_farm(slots.build, slots.farm)
    if slots.concurrency is None:  # a CPU backend: this process's gate, as on one machine
        with local.hold():
            yield
        return
    names = [slots.concurrency] + ([_gpu_limit(backend)] if slots.gpu else [])
    with concurrency(names, occupy=1, lease_duration=LEASE_S, strict=True):
        if slots.rate:
            rate_limit(slots.rate, occupy=1, strict=True)
        yield


def gpu_name(backend) -> str:
    """`dramaforge-gpu-<host>-<gpu>`: the physical GPU the backend's device is on this machine (its
    ordinal among CUDA_VISIBLE_DEVICES when that is set, as a worker per GPU sets it)."""
    device = str(getattr(getattr(backend, "options", None), "device", "cuda") or "cuda")
    ordinal = int(device.partition(":")[2] or 0) if device.startswith("cuda") else 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    gpu = visible[ordinal] if ordinal < len(visible) else str(ordinal)
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())
    return f"dramaforge-gpu-{host}-{gpu}"


def _gpu_limit(backend) -> str:
    """This machine's limit for the backend's GPU, made the first time any worker here uses it."""
    name = gpu_name(backend)
    _made_as({name: (GPU_SLOTS, 0.0)})
    return name


def _made_as(sizes: dict[str, tuple[int, float]]) -> None:
    """Each global limit (name -> slots, decay per second) made on the server, or resized to that, unless
    this process already did."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.settings import get_current_settings

    server = get_current_settings().api.url
    todo = {n: v for n, v in sizes.items() if _sized.get((server, n)) != v}
    if not todo:
        return
    with get_client(sync_client=True) as client:
        for name, (size, decay) in todo.items():
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(
                    name=name, limit=size, slot_decay_per_second=decay))
            except ObjectAlreadyExists:  # an earlier render's: sized as this one asks
                client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(
                    limit=size, slot_decay_per_second=decay, active=True))
            _sized[server, name] = (size, decay)


def turn(backend, slots: Slots | None, concurrency: int | None = None, per_minute: float | None = None):
    """A unit's turn on its backend: within this process's gate, or the render's global limits (`slots`)
    where its units run in other processes and machines too."""
    local = gate(backend, concurrency, per_minute)
    return held(slots, backend, local) if slots is not None else local.hold()


def api_turn(backend, slots: Slots | None):
    """A call's turn on a hosted API that is not a video model (a voice's line, an episode's translation:
    its `concurrency` calls at once). A local engine is paced by the threads that run it."""
    return turn(backend, slots) if backend.capabilities.pool == "api" else contextlib.nullcontext()
