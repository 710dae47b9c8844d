"""The scheduler process role: one thread that owns the journal and every dispatch decision.

``service`` is the loop (:class:`~.service.Scheduler`), assembled with ``scheduler_base`` from
``node_handlers`` and ``producer_handlers``; ``node_registry`` keeps per-node records and credit;
``routing`` and ``retry_policy`` are pure decisions; ``main`` is ``lama-cleaner scheduler``.
"""
