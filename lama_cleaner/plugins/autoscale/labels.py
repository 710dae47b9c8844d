"""Node labels that tie a registered node to the instance a provider launched.

A provider starts an instance and passes it these labels (``--labels`` of ``lama-cleaner node``,
the invocation payload of a serverless function, or the pod's own name through the Kubernetes
downward API). The node advertises them in HELLO, so the autoscaler can match what registered
against what it launched, and knows which nodes it may drain and release.
"""

from __future__ import annotations

from collections.abc import Mapping

PROVIDER_LABEL = "autoscale.provider"
INSTANCE_LABEL = "autoscale.instance"
PROVIDER_ENV = "LAMA_CLEANER_AUTOSCALE_PROVIDER"
INSTANCE_ENV = "LAMA_CLEANER_AUTOSCALE_INSTANCE"
"""Environment variables a platform may set instead of ``--labels`` (e.g. a pod's name from the downward API)."""


def instance_labels(provider: str, instance_id: str | None) -> dict[str, str]:
    """The labels a node started by ``provider`` as ``instance_id`` advertises."""
    labels = {PROVIDER_LABEL: provider}
    if instance_id:
        labels[INSTANCE_LABEL] = instance_id
    return labels


def labels_argument(labels: Mapping[str, str]) -> str:
    """``{"a": "1", "b": "2"}`` -> ``"a=1,b=2"``, the syntax of ``lama-cleaner node --labels``."""
    for key, value in labels.items():
        if not key or any(c in key + value for c in ",="):
            raise ValueError(f"label {key!r}={value!r} cannot be passed on a command line (no ',' or '=' allowed)")
    return ",".join(f"{key}={value}" for key, value in labels.items())


def provider_of(labels: Mapping[str, str]) -> str | None:
    """The provider that started a node, or None for a node the autoscaler did not start."""
    return labels.get(PROVIDER_LABEL) or None


def instance_of(labels: Mapping[str, str]) -> str | None:
    """The instance id a node advertises, or None."""
    return labels.get(INSTANCE_LABEL) or None


def labels_from_environment(env: Mapping[str, str]) -> dict[str, str]:
    """Labels from :data:`PROVIDER_ENV`/:data:`INSTANCE_ENV`, for the node's ``node_labels`` hook."""
    provider = env.get(PROVIDER_ENV, "").strip()
    if not provider:
        return {}
    return instance_labels(provider, env.get(INSTANCE_ENV, "").strip() or None)
