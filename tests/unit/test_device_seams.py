"""Where the device seam runs: only keyadmin/device/ drives python-fido2's client and unwraps
its errors; flows receive a Device and an Interaction (read from the source's AST)."""

from __future__ import annotations

import ast
from pathlib import Path

import keyadmin

PACKAGE = Path(keyadmin.__file__).parent
#: python-fido2's client and its errors: what a ceremony needs, and what device/ unwraps
CEREMONY_NAMES = {"Fido2Client", "DefaultClientDataCollector", "ClientError", "CtapError"}


def _imports(path: Path) -> set[tuple[str, str]]:
    """(module, name) for every ``from module import name`` in ``path``, nested ones too."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.update((node.module, alias.name) for alias in node.names)
    return found


def test_only_device_builds_the_fido2_client_or_unwraps_its_errors() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = path.relative_to(PACKAGE).parts[0]
        if part in ("device", "sim"):  # the device port, and the software key's own side
            continue
        for module, name in _imports(path):
            if module.startswith("fido2") and name in CEREMONY_NAMES:
                offenders.append(f"{path.relative_to(PACKAGE)}: {module}.{name}")
    assert offenders == []


def test_the_flows_that_talk_to_a_key_take_the_typed_ports() -> None:
    """enrol, step-up, selftest and prepare annotate their key as Device and their PIN
    prompt as Interaction (not Any): mypy then checks every caller against the protocols."""
    wanted = {
        "enrol.py": ("enrol", {"session": "Device", "interaction": "Interaction"}),
        "stepup.py": ("step_up", {"session": "Device", "interaction": "Interaction"}),
        "selftest.py": ("run_selftest", {"device": "Device", "interaction": "Interaction"}),
        "prepare.py": ("prepare", {"session": "Device", "policy": "Policy"}),
    }
    for module, (function, params) in wanted.items():
        tree = ast.parse((PACKAGE / "flows" / module).read_text())
        fn = next(
            n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function
        )
        args = {a.arg: a for a in fn.args.args + fn.args.kwonlyargs}
        for name, annotation in params.items():
            assert args[name].annotation is not None, (module, name)
            assert ast.unparse(args[name].annotation) == annotation, (module, name)
