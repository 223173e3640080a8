"""A Flask-Security-Too application, unmodified: its own fsqla_v3 models on SQLite, its own
WebAuthn endpoints. Run by tests/apps under .venv-apps/flask (scripts/setup-apps.sh), never
imported by keyadmin's test process.

    python flask_app.py create-user DB EMAIL PASSWORD   # through Flask-Security's datastore;
                                                        # prints the user's WebAuthn user handle
    python flask_app.py serve DB PORT                   # until killed
"""

from __future__ import annotations

import sys

from flask import Flask
from flask_security import Security, SQLAlchemyUserDatastore, hash_password
from flask_security.models import fsqla_v3 as fsqla
from flask_sqlalchemy import SQLAlchemy


def make_app(db_path: str) -> tuple[Flask, SQLAlchemy, SQLAlchemyUserDatastore]:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="lab-only-secret",
        SECURITY_PASSWORD_SALT="lab-only-salt",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{db_path}",
        SECURITY_WEBAUTHN=True,
        SECURITY_WAN_ALLOW_AS_FIRST_FACTOR=True,
        SECURITY_WAN_RP_NAME="keyadmin lab",
        WTF_CSRF_ENABLED=False,
    )
    db = SQLAlchemy(app)
    fsqla.FsModels.set_db_info(db)

    class Role(db.Model, fsqla.FsRoleMixin):  # type: ignore[name-defined,misc]
        pass

    class User(db.Model, fsqla.FsUserMixin):  # type: ignore[name-defined,misc]
        pass

    class WebAuthn(db.Model, fsqla.FsWebAuthnMixin):  # type: ignore[name-defined,misc]
        pass

    datastore = SQLAlchemyUserDatastore(db, User, Role, WebAuthn)
    app.security = Security(app, datastore)  # type: ignore[attr-defined]

    @app.route("/")
    def home() -> str:
        return "<!doctype html><title>lab app</title><p>lab app</p>"

    with app.app_context():
        db.create_all()
    return app, db, datastore


def main(argv: list[str]) -> int:
    cmd, db_path = argv[0], argv[1]
    app, db, datastore = make_app(db_path)
    if cmd == "create-user":
        with app.app_context():
            user = datastore.create_user(email=argv[2], password=hash_password(argv[3]))
            db.session.commit()
            print(user.fs_webauthn_user_handle)
        return 0
    if cmd == "serve":
        from werkzeug.serving import make_server

        server = make_server("127.0.0.1", int(argv[2]), app, threaded=True)
        print("ready", flush=True)
        server.serve_forever()
        return 0
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
