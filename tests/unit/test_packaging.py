"""The production description stays in step with the project."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_copies_every_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set(re.findall(r"^COPY (\w+) \1$", (ROOT / "Dockerfile").read_text(), re.M))
    assert copied == packages


def test_compose_file_describes_database_cache_and_app():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "app", "migrate"} <= set(services)
    assert services["app"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name, service in services.items():
        for key in service.get("environment", {}):
            assert key.startswith(("QINGLANG_", "POSTGRES_")), (name, key)


def test_wheel_carries_the_data_files(tmp_path):
    """An installed (not editable) copy needs its YAML, catalogs, training data and templates."""
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q",
                    "-w", str(tmp_path)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("qinglang-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "routing/data/units.yaml", "routing/data/rules.yaml", "intake/data/deadlines.yaml",
        "db/migrations/script.py.mako", "db/migrations/env.py",
        "qinglang/locales/en/LC_MESSAGES/qinglang.mo",
        "nlu/rasa/config.yml", "nlu/rasa/data/kinds.yml", "nlu/rasa/data/categories/price.yml",
        "nlu/rasa/userdict/userdict.txt",
    }
    assert expected <= names, sorted(expected - names)
    migrations = {n for n in names if n.startswith("db/migrations/versions/0")}
    assert len(migrations) == len(list((ROOT / "db" / "migrations" / "versions").glob("0*.py")))
