"""A Kubernetes API server emulator for tests: a generic object store over real HTTP.

kubernetes_asyncio and kubectl talk to it as to a cluster. See `server.ApiServer`
for the public interface and `docs`-level notes in each module for what is and is
not reproduced.
"""

from canaryd.sandbox.apiserver.faults import Faults, RequestRecord
from canaryd.sandbox.apiserver.server import ApiServer

__all__ = ["ApiServer", "Faults", "RequestRecord"]
