"""The registry database: users, credentials, evidence, policy versions, the audit log.

sqlmodel tables stay inside this package; the functions here return frozen
dataclasses (keyadmin.store.records), never ORM rows.
"""
