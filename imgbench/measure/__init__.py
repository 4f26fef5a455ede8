"""Layer 6, measurement: the harness every measurement shares, then ``imgbench compare``, parallel
reads, ``imgbench targets`` and the PNG trade-off. Imports only the layers below."""

from imgbench.core.usage import disk_usage

__all__ = ["disk_usage"]
