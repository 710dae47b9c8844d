"""Serverless instances: the invocation payload (``payload.py``) and, later, the handler they run."""
