"""Alert rules, their state machine, the evaluation job and the sinks notifications go to."""
