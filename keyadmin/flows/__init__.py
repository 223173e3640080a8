"""Use cases: plain functions that take their collaborators and return result dataclasses."""
