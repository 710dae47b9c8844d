"""A chaos soak through the whole distributed stack, shared by the test suite and the benchmark.

``tests/integration/distributed/test_chaos_short.py`` runs it small (one server kill, one node kill,
one link cut) and asserts the zero figures; ``benchmarks/chaos.py`` runs it with 2,000 tasks and
many faults and prints the table. One module per idea:

- ``workload``: the deterministic task inputs and the result each one must produce;
- ``cluster``: the real processes (web server with its embedded scheduler and journal on disk,
  node subprocesses behind loopback TCP proxies) and the faults done to them;
- ``proxied_node``: the node launcher that makes a node reach its queue through its proxy too;
- ``clients``: client threads that submit with idempotency keys, retry with the same key, follow
  each task to its end and check its image;
- ``faults``: the seeded fault plan, triggered by progress rather than by the clock;
- ``verdict``: the figures (lost, delivered twice, wrong, recovery times) from what the clients
  saw and what the journal holds;
- ``soak``: the run itself, start to verdict.
"""
