"""The daemon: :class:`~musicmed_stream.service.daemon.Daemon` (the ``SessionController``), its
configuration (:mod:`~musicmed_stream.service.config`) and the process around it
(:mod:`~musicmed_stream.service.runner`: signals, systemd notifications)."""
