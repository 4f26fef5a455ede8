"""Layer 5, adapters between stores and the world: conversion from folders and stores, image sources,
built-in datasets, PyTorch, Dask clusters, describe/verify. Imports only the layers below
(:mod:`imgbench.api`, :mod:`imgbench.sharded`, :mod:`imgbench.storage`, :mod:`imgbench.core`)."""
