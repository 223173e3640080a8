"""Step-up's split (challenge / admission / completion) keeps every name where callers import it,
and the registry handle keeps a URL's password out of its repr."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_public_names_are_the_same_objects_from_every_old_import_path() -> None:
    import keyadmin.stepup as package
    from keyadmin.stepup import admission, api, challenge, completion

    homes = {
        "begin": challenge,
        "binding": challenge,
        "Limits": challenge,
        "StepUpChallenge": challenge,
        "MAX_ACTION_CHARS": challenge,
        "MAX_CHALLENGE_ID_CHARS": challenge,
        "policy_admits": admission,
        "ADMIT_CACHE_TTL_SECONDS": admission,
        "finish": completion,
        "StepUpResult": completion,
    }
    for name, home in homes.items():
        assert getattr(api, name) is getattr(home, name), name
        if name in package.__all__:
            assert getattr(package, name) is getattr(home, name), name
    assert {"begin", "finish", "Limits", "StepUpChallenge", "StepUpResult"} <= set(package.__all__)


def test_registry_handle_wraps_a_url_once_and_hides_its_password() -> None:
    from keyadmin.store.db import Registry

    registry = Registry.of("postgresql://keyadmin:s3cret-pw@db.example/keyadmin")
    assert Registry.of(registry) is registry
    assert registry.url == "postgresql://keyadmin:s3cret-pw@db.example/keyadmin"
    assert "s3cret-pw" not in repr(registry) and "s3cret-pw" not in str(registry)
    assert repr(registry) == "Registry(postgresql://…)"


def test_a_status_change_without_a_registry_id_is_not_found(tmp_path: Path) -> None:
    """``change_status`` takes an ORM row's id, which is optional until the row is stored."""
    from keyadmin.store import registry
    from keyadmin.store.db import Registry

    with Registry(f"sqlite:///{tmp_path / 'registry.db'}").transaction() as s:
        with pytest.raises(registry.NotFound):
            registry.change_status(s, None, "suspend", reason="lost", actor="desk")
