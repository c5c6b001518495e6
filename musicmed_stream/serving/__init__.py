"""MusicGen as a shared service: a Ray Serve deployment that batches clips from many daemons.

``settings`` (the ``[serve]`` table) and ``protocol`` (the HTTP wire format) import without Ray;
``app`` builds the deployment and needs the ``serve`` extra (``pip install 'musicmed-stream[serve]'``).
The client side is :class:`musicmed_stream.engines.remote.RemoteEngine`.
"""

from musicmed_stream.serving.settings import GenerateServerConfig, ServeSettings, load_generate_server_config

__all__ = ["GenerateServerConfig", "ServeSettings", "load_generate_server_config"]
