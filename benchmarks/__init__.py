"""airspeed-velocity benchmarks for imgbench (see asv.conf.json and README "Benchmarks (asv)").

One module per operation; shared parameter axes, data and store-building live in
:mod:`benchmarks.helpers`. Benchmarks use only imgbench's public API plus
``imgbench.datasets`` and ``imgbench.storage.registry``.
"""
