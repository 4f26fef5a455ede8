"""Layer 6, measurement: the harness every measurement shares, then ``imgbench compare``, parallel
reads, ``imgbench targets`` and the PNG trade-off. Imports only the layers below."""

from imgbench.core.usage import disk_usage  # noqa: E402 - ``imgbench.measure.disk_usage``, its name before the layers

__all__ = ["disk_usage"]
