"""The base of every settings model: unknown keys are errors, never silently ignored settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)
