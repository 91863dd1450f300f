"""Following a listing's page tokens to its end."""

from __future__ import annotations

from taskgrove import AsyncClient


async def every_page(client: AsyncClient, page_size: int, **filters: object) -> list[str]:
    """Ids of every page of a ListTasks, in order; no page is larger than `page_size`."""
    ids: list[str] = []
    token = ""
    while True:
        page, token = await client.list_tasks_page(
            page_size=page_size,
            page_token=token,
            **filters,  # type: ignore[arg-type]
        )
        assert len(page) <= page_size
        ids.extend(task.id for task in page)
        if not token:
            return ids
