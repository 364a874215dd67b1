"""The host side of ``pymlc gateway``: model containers launched through the Docker engine
behind the runtime's routing gateway (``pymlc.runtime_stub.gateway``).

Host-side only, like the compiler and ``pymlc.image``: nothing here is copied into images.
"""

from __future__ import annotations

from .launcher import LABEL, Launcher, ModelImage
from .service import GatewayOptions, RoutesError, load_routes, run_gateway

__all__ = ["LABEL", "GatewayOptions", "Launcher", "ModelImage", "RoutesError", "load_routes",
           "run_gateway"]
