"""Audit: a hash-chained, append-only, Merkle-proved log of changes and money flow.

This package depends on nothing else in the product, so that it can be used, and verified, alone.
"""
