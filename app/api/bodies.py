"""Reading /api request bodies into models, with ResultError answers for anything malformed.

Bodies are read before the caller is authenticated (so no database connection waits on a slow upload)
but their problems are reported only after: an unauthenticated caller learns nothing but 401.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

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
        try:
            raw = json.loads(await request.body())
            # "\ud800" is valid JSON but not Unicode text (RFC 8259 §8.2): refuse it here rather than
            # fail with UnicodeEncodeError when it is stored or echoed.
            json.dumps(raw, ensure_ascii=False).encode("utf-8")
        except (ValueError, RecursionError):  # UnicodeDecodeError/UnicodeEncodeError are ValueErrors
            raise ApiBadRequest("the request body is not valid JSON") from None
    elif allow_form and media_type == "application/x-www-form-urlencoded":
        form = await request.form()
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
