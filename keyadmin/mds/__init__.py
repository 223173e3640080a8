"""FIDO Metadata Service (MDS3): download, JWS verification against pinned roots, CRLs,
freshness, tolerant per-entry parsing, and the fast index (keyadmin.store.mds_index).

Import-light on purpose: heavy libraries (cryptography, SQLAlchemy) are imported inside the
functions that need them, so a metadata lookup stays fast.
"""
