"""The built-in providers, registered through the same hook a third-party provider uses.

Importing this module imports no cloud SDK: each provider imports its client library when it is
built, so ``kubernetes``, ``boto3`` and the Function Compute SDK are needed only where configured
(the ``kubernetes``, ``aws`` and ``aliyun`` extras).
"""

from __future__ import annotations

from ...hookspecs import hookimpl
from .aliyun_fc import AliyunFcProvider
from .aws_lambda import AwsLambdaProvider
from .base import ScalingProvider
from .kubernetes import KubernetesProvider
from .local import LocalProvider


@hookimpl
def register_scaling_providers() -> list[type[ScalingProvider]]:
    return [LocalProvider, KubernetesProvider, AwsLambdaProvider, AliyunFcProvider]


def builtin_provider_classes() -> dict[str, type[ScalingProvider]]:
    """The built-in providers by name (for validation before a plugin manager exists)."""
    return {cls.name: cls for cls in register_scaling_providers()}
