"""The opening every backend API call shares (push, ``app.api.backend``; resolve and consume,
``app.api.authorization``): read the body, open the request's connection, authorize the service access
token, check the fields the call requires."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Generic, Protocol, TypeVar

from fastapi import Request
from pydantic import BaseModel

from app.api.bodies import read_body
from app.api.deps import authorize_service
from app.core.errors import ApiBadRequest
from app.core.model import ServiceRecord
from app.db.engine import RequestConnection
from app.state import AppState

BodyT = TypeVar("BodyT", bound=BaseModel)
RequiredT = TypeVar("RequiredT")


@dataclass(frozen=True, slots=True)
class BackendCall(Generic[BodyT, RequiredT]):
    body: BodyT
    required: RequiredT  # the fields the call cannot do without, as ``require`` returned them
    service: ServiceRecord
    connection: RequestConnection


@asynccontextmanager
async def backend_call(
    request: Request,
    state: AppState,
    service_id: int,
    model: type[BodyT],
    *,
    require: Callable[[BodyT], RequiredT],
    allow_form: bool = False,
) -> AsyncIterator[BackendCall[BodyT, RequiredT]]:
    """The call, authorized, on its connection (given back when the block ends).

    The body is read first, so no connection waits on a slow upload, and its problems (``app.api.bodies``)
    and missing fields (``require`` raises ``ApiBadRequest``) are reported only once the caller is
    authorized: an unauthenticated caller learns nothing about its body. The token's service and the
    service come from the caches (``AppState.find_token_service``, ``AppState.find_service``)."""
    body = await read_body(request, model, allow_form=allow_form)
    async with state.request_connection() as connection:
        service = await authorize_service(
            request,
            state,
            service_id,
            token_service=partial(state.find_token_service, connection),
            find_service=partial(state.find_service, connection),
        )
        call = body.get()
        yield BackendCall(call, require(call), service, connection)


class _WithParameters(Protocol):
    @property
    def parameters(self) -> str | None: ...


def parameters_required(result_code: str) -> Callable[[_WithParameters], str]:
    """``require`` for a call whose body must carry ``parameters``."""

    def parameters(body: _WithParameters) -> str:
        if body.parameters is None:
            raise ApiBadRequest("the request body does not contain 'parameters'", result_code=result_code)
        return body.parameters

    return parameters
