"""Scaling providers: the interface (``base.py``) and the built-in implementations, one per platform."""
