"""The node process role: a worker that pulls tasks from the scheduler and runs them.

``agent`` is the node's poll loop (:class:`~.agent.Node`: sockets, credit, reconnects);
``current_work`` what it holds now; ``child`` its handle on the inference process, whose side is
``inference``; ``capabilities`` what the node can run and advertises; ``main`` is ``lama-cleaner node``
(which applies ``..malloc_tuning``).
"""
