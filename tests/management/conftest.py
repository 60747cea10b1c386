"""The use cases run on the app's state, as the HTTP API and the CLI run them."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from app.state import AppState


@pytest.fixture
def state(app: FastAPI) -> AppState:
    par: AppState = app.state.par
    return par
