from __future__ import annotations

import pytest

from app.core.errors import ApiBadRequest, ApiNotFound
from app.db.repositories import RowLock
from app.management.context import MAX_PAGE, Page, any_service
from app.state import AppState


def test_a_page_defaults_to_five_rows() -> None:
    assert Page.asked(3, None) == Page(3, 8)


@pytest.mark.parametrize(("start", "end"), [(-1, 2), (5, 4), (0, MAX_PAGE + 1)])
def test_a_page_out_of_bounds_is_refused(start: int, end: int) -> None:
    with pytest.raises(ApiBadRequest, match="0 <= start <= end <= start"):
        Page.asked(start, end)


def test_the_largest_page() -> None:
    assert Page.asked(10, 10 + MAX_PAGE) == Page(10, 10 + MAX_PAGE)


@pytest.mark.parametrize("lock", [None, "share", "update"])
async def test_the_operator_reaches_no_service_that_does_not_exist(state: AppState, lock: RowLock | None) -> None:
    async with state.sessions.begin() as session:
        with pytest.raises(ApiNotFound, match="service 999 does not exist") as raised:
            await any_service(session, 999, lock=lock)
    assert raised.value.result_code == "A003202"
