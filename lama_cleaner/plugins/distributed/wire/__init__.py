"""What travels between the scheduler, its nodes and its producers: the frame format
(``protocol``), sending a frame without blocking (``send``), ``tcp://`` endpoint rules (``endpoints``)
and heartbeat/reconnect timing (``liveness``). Pure or thin over ZeroMQ; knows no role.
"""
