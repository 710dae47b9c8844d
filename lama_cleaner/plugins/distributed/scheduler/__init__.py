"""The scheduler process role: one thread that owns the journal and every dispatch decision.

``service`` is the loop (:class:`~.service.Scheduler`: sockets, rounds, public API); it composes
collaborators that share one explicit ``scheduler_state.SchedulerState`` and never send:
``node_handlers`` and ``producer_handlers`` (messages), ``requeue`` (retries, lost nodes),
``dispatcher``, ``timers`` and ``unschedulable`` (what runs each round), ``event_publishing``
(events and DONEs after the commit) and ``stats_reporting``. ``node_registry`` keeps per-node
records and credit; ``routing`` and ``retry_policy`` are pure decisions; ``main`` is
``lama-cleaner scheduler``. Every part logs as ``...scheduler.service``, as before the split.
"""
