"""keyadmin: enrol, verify and audit FIDO2 hardware security keys.

This package's top level stays import-light: ``keyadmin --help`` and
``keyadmin --version`` must not pull in fido2, cryptography or SQLAlchemy.
"""

__version__ = "0.1.0"
