"""Layer 6, measurement: the harness every measurement shares, then ``imgbench compare``, parallel
reads, ``imgbench targets`` and the PNG trade-off. Imports only the layers below."""
