"""The README's quick-start commands behave as documented where they can run here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jwt

REPO = Path(__file__).resolve().parent.parent


def test_mint_token_prints_the_settings_of_local_settings_example(tmp_path: Path) -> None:
    example = json.loads((REPO / "local.settings.json.example").read_text())["Values"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AAD_")}
    # As the app would see them: the example's values (the environment wins over any
    # local.settings.json a developer has).
    env.update({k: v for k, v in example.items() if k.startswith("AAD_")})
    env["LOCAL_DEV_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "mint_token.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    printed = dict(re.findall(r'^\s+"(\w+)": "([^"]*)",$', result.stderr, re.MULTILINE))
    assert set(printed) == {"AAD_TENANT_IDS", "AAD_AUDIENCES", "AAD_JWKS_URI"}
    assert printed == {name: example[name] for name in printed}
    claims = jwt.decode(result.stdout.strip(), options={"verify_signature": False})
    assert claims["tid"] == example["AAD_TENANT_IDS"].split(",")[0]
    assert claims["aud"] == example["AAD_AUDIENCES"].split(",")[0]


def test_mint_token_fails_loudly(tmp_path: Path) -> None:
    (tmp_path / "signing-key.pem").write_text("not a key")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "mint_token.py"), "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert result.stdout == ""  # no token, so TOKEN=$(...) is empty and the error shows
    assert "signing-key.pem" in result.stderr or "Error" in result.stderr


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "scripts/test" in ci
    commands = [line.split("#")[0].strip() for line in readme.splitlines()]
    assert "scripts/test" in commands
    assert "scripts/start" in commands


def test_deploy_doc_names_every_function_the_app_declares() -> None:
    """docs/deploy.md says what `func azure functionapp list-functions` should show."""
    import function_app
    from tests.worker_rpc import worker

    # The worker's own listing, as the host gets it (indexing the app twice would fail).
    names = {m.name for m in worker().load_app(function_app.app)}
    assert len(names) >= 2
    doc = (REPO / "docs" / "deploy.md").read_text()
    section = doc[doc.index("list-functions") : doc.index("## Send a test alert")]
    assert {n for n in names if f"`{n}`" not in section} == set()


def _needs(*selection: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "selection_needs.py"), *selection],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    return result.stdout.split()


def test_scripts_test_installs_only_what_the_selection_needs() -> None:
    # CI (.ci/run runs scripts/test without arguments) installs every tool, checkov included.
    assert _needs() == ["checkov", "chromium"]
    assert _needs("tests/test_board_browser.py", "-k", "csp") == ["chromium"]
    assert _needs("tests/test_board_server.py") == []
    assert _needs("tests/test_self_contained.py") == []
    assert _needs("tests/test_infra.py", "-k", "parses") == []  # pycep only, in .venv
    assert _needs("tests/test_infra.py", "-k", "checkov_passes") == ["checkov"]
    script = (REPO / "scripts" / "test").read_text()
    assert 'scripts/selection_needs.py "$@"' in script
    assert "install-checkov.sh\n" not in script  # no unconditional install left


def test_installers_use_the_python_setup_env_chose() -> None:
    installer = (REPO / "scripts" / "install-checkov.sh").read_text()
    assert "python3.11" not in installer
    assert '.venv/bin/python"' in installer
