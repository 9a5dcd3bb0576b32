"""``cclnn serve``: a local web page to upscale an image and compare the network with
bicubic, and the HTTP API behind it (needs the ``web`` extra: starlette, uvicorn,
python-multipart). Beside the CLI at the top of the layers: the library never imports it."""
from .app import ServeConfig, create_app

__all__ = ["ServeConfig", "create_app"]
