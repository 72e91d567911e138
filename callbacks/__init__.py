"""Lightning callbacks of the zoo (installed as ``zoo.callbacks``)."""

from zoo.callbacks.hub_publish import HubPublish  # noqa: E402

__all__ = ["HubPublish"]
