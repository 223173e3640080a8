"""A Django application with django-otp-webauthn, unmodified: its own migrations on the
private PostgreSQL server, its own passwordless WebAuthn endpoints. Run by tests/apps under
.venv-apps/django (scripts/setup-apps.sh), never imported by keyadmin's test process.

    python django_app.py migrate DB_URL
    python django_app.py create-user DB_URL NAME PASSWORD   # through Django's user manager
    python django_app.py serve DB_URL PORT                  # until killed

DB_URL: postgresql+psycopg://USER@HOST:PORT/NAME (tests/support/postgres.py). The lab app
leaves out CSRF middleware (its JSON calls come from the test's page script).
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

import django
from django.conf import settings


def configure(db_url: str, port: int = 0) -> None:
    u = urlsplit(db_url)
    settings.configure(
        DEBUG=False,
        SECRET_KEY="lab-only-secret",
        ALLOWED_HOSTS=["localhost", "127.0.0.1"],
        USE_TZ=True,
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django_otp",
            "django_otp_webauthn",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django_otp.middleware.OTPMiddleware",
        ],
        AUTHENTICATION_BACKENDS=[
            "django.contrib.auth.backends.ModelBackend",
            "django_otp_webauthn.backends.WebAuthnBackend",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": u.path.lstrip("/"),
                "USER": u.username or "postgres",
                "HOST": u.hostname,
                "PORT": str(u.port),
            }
        },
        OTP_WEBAUTHN_RP_ID="localhost",
        OTP_WEBAUTHN_RP_NAME="keyadmin lab",
        OTP_WEBAUTHN_ALLOWED_ORIGINS=[f"http://localhost:{port}"] if port else [],
        LOGIN_REDIRECT_URL="/",
    )
    django.setup()


def home(request):  # type: ignore[no-untyped-def]
    from django.http import HttpResponse

    return HttpResponse("<!doctype html><title>lab app</title><p>lab app</p>")


def _urls() -> list:  # type: ignore[type-arg]
    from django.urls import include, path

    return [
        path("webauthn/", include("django_otp_webauthn.urls", namespace="otp_webauthn")),
        path("", home),
    ]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name == "urlpatterns":  # the URLconf, built once Django is set up
        return _urls()
    raise AttributeError(name)


def main(argv: list[str]) -> int:
    cmd, db_url = argv[0], argv[1]
    configure(db_url, int(argv[2]) if cmd == "serve" else 0)
    if cmd == "migrate":
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        return 0
    if cmd == "create-user":
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_user(username=argv[2], password=argv[3])
        print(user.pk)
        return 0
    if cmd == "serve":
        from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
        from django.core.wsgi import get_wsgi_application

        server = ThreadedWSGIServer(("127.0.0.1", int(argv[2])), WSGIRequestHandler)
        server.set_app(get_wsgi_application())
        print("ready", flush=True)
        server.serve_forever()
        return 0
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
