"""A local, file-backed, Hugging Face Hub-compatible server (huggingface.co is unreachable here).

``start_server(root, port=0, token=...)`` runs it on a background thread; ``hubtune hub serve`` in the
foreground. The clients (huggingface_hub, transformers, datasets) talk to it through ``HF_ENDPOINT``.
"""

from hubtune.hub_server.app import ServerConfig, make_app
from hubtune.hub_server.runner import RunningServer, start_server
from hubtune.hub_server.store import HubStore

__all__ = ["HubStore", "RunningServer", "ServerConfig", "make_app", "start_server"]
