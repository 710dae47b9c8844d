"""The web-side (producer) role: how a web server hands work to the scheduler.

``executor`` is :class:`~.executor.DistributedExecutor`, the web server's executor (it embeds a
scheduler unless told to use an external one); ``translate`` maps the server's task types to the
scheduler's messages and back; ``task_run`` is one blocking request's SUBMIT, wait and result;
``client`` is :class:`~.client.SchedulerClient`, the thread-safe connection to the scheduler, with
its ``result_slots``; ``local_nodes`` supervises the node subprocesses a web server starts for itself
(``--local-nodes``). A request goes executor -> client -> executor, once.
"""
