"""The Chalice project that gets packaged for Lambda: the app, its config, the org's policy, its requirements.

The repository root is not packaged directly: Chalice bundles only what a project folder holds
(`app.py`, `chalicelib/`, `vendor/`, `requirements.txt`), and each org brings its own policy file.
"""
from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

POLICY_FILE = "netimmune-policy.yaml"
# Chalice copies vendor/ to the root of the deployment package, which Lambda unpacks in /var/task.
POLICY_PATH = f"/var/task/{POLICY_FILE}"

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def runtime_requirements(pyproject: dict) -> list[str]:
    """The project's dependencies less Chalice, whose runtime Chalice adds to the package itself."""
    def name(requirement: str) -> str:
        return re.sub(r"[-_.]+", "-", _NAME.match(requirement).group(1)).lower()
    return [r for r in pyproject["project"]["dependencies"] if name(r) != "chalice"]


def stage_app(dest: Path, policy: Path, with_dependencies: bool, repo: Path = REPO) -> Path:
    """Lay out the Chalice project in `dest` (which must not exist) and return it.

    Without dependencies the package holds the app's own code only: enough for a template,
    not for a running function; `make deploy` always packages them.
    """
    dest.mkdir(parents=True)
    shutil.copy2(repo / "app.py", dest / "app.py")
    shutil.copytree(repo / "chalicelib", dest / "chalicelib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (dest / ".chalice").mkdir()
    shutil.copy2(repo / ".chalice" / "config.json", dest / ".chalice" / "config.json")
    (dest / "vendor").mkdir()
    shutil.copy2(policy, dest / "vendor" / POLICY_FILE)
    if with_dependencies:
        pyproject = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
        (dest / "requirements.txt").write_text("\n".join(runtime_requirements(pyproject)) + "\n")
    return dest
