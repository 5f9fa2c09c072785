"""`flow`: Prefect's decorator, for flows whose parameters are plain JSON already (paths, numbers, lists).

Prefect stores a flow run's parameters through FastAPI's `jsonable_encoder`, and importing FastAPI for
it was 0.11 s of every render's start (`-X importtime`); values that are JSON as they stand are
stored as they are. Anything else still goes through Prefect's own encoder."""

from __future__ import annotations

from typing import Any

from prefect import Flow


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


class PlainFlow(Flow):
    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        if all(_plain(v) for v in parameters.values()):
            return dict(parameters)
        return super().serialize_parameters(parameters)


def flow(**options):
    """`@flow(name=..., ...)`, as `prefect.flow` takes them."""
    return lambda fn: PlainFlow(fn=fn, **options)
