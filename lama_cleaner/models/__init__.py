"""Inpainting models: the base class with the HD strategies, the registry, the manager and the built-ins."""
