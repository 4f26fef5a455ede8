"""Layer 1, the contract and safe I/O: the Store base class, errors, image rules, checksums, codecs,
atomic publication and own-file access. Imports nothing else from imgbench."""
