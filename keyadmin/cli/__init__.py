"""The edge: typer commands, prompts, rendering and exit codes.

This is the only package that prints, prompts or exits. Modules here import
heavy libraries (fido2, cryptography, SQLAlchemy) inside command bodies only,
so that ``keyadmin --help`` starts fast.
"""
