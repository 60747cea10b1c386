"""Reading /api request bodies into models, with ResultError answers for anything malformed.

Bodies are read before the caller is authenticated (so no database connection waits on a slow upload)
but their problems are reported only after: an unauthenticated caller learns nothing but 401.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.formparsers import MultiPartException

from app.core import json_input
from app.core.errors import ApiBadRequest

ModelT = TypeVar("ModelT", bound=BaseModel)
LIST_FIELDS = frozenset({"clientCertificatePath"})


@dataclass(frozen=True, slots=True)
class Body(Generic[ModelT]):
    model: ModelT | None
    error: ApiBadRequest | None

    def get(self) -> ModelT:
        """The model, or the body's problem raised now that the caller is authenticated."""
        if self.error is not None:
            raise self.error
        assert self.model is not None
        return self.model


async def read_body(request: Request, model: type[ModelT], *, allow_form: bool = False) -> Body[ModelT]:
    try:
        return Body(await _parse(request, model, allow_form=allow_form), None)
    except ApiBadRequest as error:
        return Body(None, error)


async def _parse(request: Request, model: type[ModelT], *, allow_form: bool) -> ModelT:
    """JSON (what the SDKs send) or, where ``allow_form``, a form (the Authlete spec lists both)."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    raw: Any
    if media_type == "application/json":
        raw = _json_body(await request.body())
    elif allow_form and media_type == "application/x-www-form-urlencoded":
        try:
            form = await request.form()
        except MultiPartException as error:  # more fields than Starlette reads (1000)
            raise ApiBadRequest(f"the form body cannot be read: {error.message}") from None
        # As at the RFC endpoint (app.core.params): a field given twice is refused, never one value kept.
        repeated = next((key for key in form if key not in LIST_FIELDS and len(form.getlist(key)) > 1), None)
        if repeated is not None:
            raise ApiBadRequest(f"the '{repeated[:40]}' field is included more than once")
        raw = {key: form.getlist(key) if key in LIST_FIELDS else form.get(key) for key in form}
    else:
        accepted = "application/json or application/x-www-form-urlencoded" if allow_form else "application/json"
        raise ApiBadRequest(f"the request body must be {accepted}")
    if not isinstance(raw, dict):
        raise ApiBadRequest("the request body must be a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ApiBadRequest(f"invalid '{field}': {first['msg']}") from None


def _json_body(body: bytes) -> Any:
    """``app.core.json_input``: no NaN, NUL, unpaired surrogate (RFC 8259 §8.2) or deep nesting, refused
    here rather than failing when stored or echoed."""
    try:
        return json_input.loads(body)
    except json_input.JsonInputError as error:
        raise ApiBadRequest(f"the request body is not acceptable JSON: {error}") from None


class _SafeJsonRequest(Request):
    """A request whose ``json()`` (what FastAPI reads body parameters with) is ``_json_body``."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = _json_body(await self.body())
        return self._json


class SafeJsonRoute(APIRoute):
    """Routes whose JSON body parameters are read by ``_json_body`` (the management API). FastAPI turns
    any error while reading the body into a 400 "error parsing the body" whose cause is the error;
    ``app.api.errors`` answers with the cause (``ApiBadRequest``, or ``RequestTooLarge`` from
    ``app.api.body_size``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def safe_json_handler(request: Request) -> Response:
            return await handler(_SafeJsonRequest(request.scope, request.receive))

        return safe_json_handler
