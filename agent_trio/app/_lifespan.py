"""Running the service inside Quart-Trio's lifespan nursery."""

from __future__ import annotations

import logging

import trio

from agent_trio._settings import Settings
from agent_trio.app._streams import OpenStreams
from agent_trio.service import Service, ServiceHooks, serve_service

__all__ = ["STOP_MARGIN", "ServiceRunner"]

log = logging.getLogger("agent_trio.app")

#: after the orderly close's deadline, how long the cancelled close steps may take:
#: each is shielded under its own, shorter deadline (the engine's, 5 + 8 s by
#: default, is the longest); 15 + 14 s stays within hypercorn.toml's
#: ``shutdown_timeout`` (30 s)
STOP_MARGIN = 14.0
#: how long the open chat streams may take to end (each stores its interrupted answer
#: under a 5 s deadline of its own) before the service closes regardless
STREAMS_DEADLINE = 10.0


class ServiceRunner:
    """Starts :func:`serve_service` in a nursery and stops it on request.

    The one place that knows the running service: :attr:`service` is the service
    from the moment it is ready until :meth:`stop` begins, ``None`` otherwise.
    ``start`` returns only once every resource is ready, or raises why not;
    ``stop`` first ends the open chat streams (:attr:`streams`, within
    :data:`STREAMS_DEADLINE`), then asks the service to close and waits until it
    has, within ``SHUTDOWN_TIMEOUT_SECONDS``; past that the service is cancelled,
    and its shielded close steps get :data:`STOP_MARGIN` more.
    """

    def __init__(self, hooks: ServiceHooks | None) -> None:
        self._hooks = hooks
        self._done = trio.Event()
        self._scope = trio.CancelScope()
        self._service: Service | None = None
        self._shutdown_timeout: float | None = None
        self._stopping = False
        #: the app's open chat streams; closed as the server begins to stop
        self.streams = OpenStreams()

    @property
    def service(self) -> Service | None:
        """The running service, or ``None`` before it is ready and once it is stopping."""
        return self._service

    async def start(self, nursery: trio.Nursery, settings: Settings) -> Service:
        self._shutdown_timeout = settings.shutdown_timeout_seconds
        service: Service = await nursery.start(self._run, settings)
        self._service = service
        return service

    async def _run(
        self,
        settings: Settings,
        *,
        task_status: trio.TaskStatus[Service] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            with self._scope:
                await serve_service(settings, hooks=self._hooks, task_status=task_status)
        finally:
            self._service = None
            self._done.set()

    async def stop(self) -> None:
        """Close the service, if it was started; idempotent.

        Shielded, under its own deadline: the lifespan's own cancellation (Quart-Trio
        cancels its nursery at shutdown) does not cut the orderly close short.
        """
        service, self._service = self._service, None
        timeout = self._shutdown_timeout
        if timeout is None or self._stopping:
            return  # never started, or stopped already
        self._stopping = True
        with trio.CancelScope(shield=True, deadline=trio.current_time() + timeout + STOP_MARGIN):
            self.streams.close()
            with trio.move_on_after(STREAMS_DEADLINE):
                await self.streams.wait_ended()
            if self.streams.open:
                log.warning("%d chat streams did not end in time", self.streams.open)
            if service is not None:
                service.request_stop()
            with trio.move_on_after(timeout):
                await self._done.wait()
            if not self._done.is_set():
                log.warning(
                    "the service did not close within %.0f s (SHUTDOWN_TIMEOUT_SECONDS); "
                    "cancelling it",
                    timeout,
                )
                self._scope.cancel()
                await self._done.wait()
        if not self._done.is_set():
            log.error("the service did not finish closing within %.0f s more; left it", STOP_MARGIN)
