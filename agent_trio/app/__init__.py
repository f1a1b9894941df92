"""The HTTP room: the Quart-Trio app and its routes.

``agent_trio.app:app`` is the app Hypercorn serves; it opens nothing until its
lifespan starts, and reads its settings then.
"""

from agent_trio.app._context import running_service
from agent_trio.app._errors import ApiError
from agent_trio.app._factory import create_app

__all__ = ["ApiError", "app", "create_app", "running_service"]

app = create_app(owns_process=True)
