"""The ``autoscale`` plugin: start and stop nodes so capacity follows each queue's backlog.

- ``policy.py`` decides (a pure function of what the scheduler reports and the time);
- ``providers/`` start and release instances (local processes, Kubernetes, AWS Lambda, Function Compute),
  registered through the plugin's own hook (``hookspecs.py``);
- ``fallback.py`` moves capacity to the next provider when one errors, and back when it recovers;
- ``tracking.py`` follows each launched instance until it registers and until it leaves;
- ``autoscaler.py`` puts them together: one evaluation observes, decides and acts.
"""
