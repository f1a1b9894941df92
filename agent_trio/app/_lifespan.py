"""Running the service inside Quart-Trio's lifespan nursery."""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from agent_trio._settings import Settings
from agent_trio.service import Service, ServiceHooks, serve_service

__all__ = ["ServiceRunner"]

log = logging.getLogger("agent_trio.app")


class ServiceRunner:
    """Starts :func:`serve_service` in a nursery and stops it on request.

    ``start`` returns only once every resource is ready, or raises why not;
    ``stop`` asks the service to close and waits until it has.
    """

    def __init__(self, load_settings: Callable[[], Settings], hooks: ServiceHooks | None) -> None:
        self._load_settings = load_settings
        self._hooks = hooks
        self._done = trio.Event()
        self.service: Service | None = None

    async def start(self, nursery: trio.Nursery) -> Service:
        settings = self._load_settings()
        self.service = await nursery.start(self._run, settings)
        return self.service

    async def _run(
        self,
        settings: Settings,
        *,
        task_status: trio.TaskStatus[Service] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            await serve_service(settings, hooks=self._hooks, task_status=task_status)
        finally:
            self._done.set()

    async def stop(self) -> None:
        if self.service is None:
            return
        self.service.request_stop()
        await self._done.wait()
