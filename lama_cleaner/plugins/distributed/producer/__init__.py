"""The web-side (producer) role: how a web server hands work to the scheduler.

``executor`` is :class:`~.executor.DistributedExecutor`, the web server's executor (it embeds a
scheduler unless told to use an external one); ``client`` is :class:`~.client.SchedulerClient`, the
thread-safe connection to the scheduler; ``local_nodes`` supervises the node subprocesses a web
server starts for itself (``--local-nodes``).
"""
