"""The production description stays in step with the project."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_copies_every_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set(re.findall(r"^COPY (\w+) \1$", (ROOT / "Dockerfile").read_text(), re.M))
    assert copied == packages


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_describes_the_scaled_out_set_up():
    services = _compose()["services"]
    assert {"postgres", "redis", "rasa", "migrate", "bot-1", "bot-2", "app", "worker", "nginx"} == set(services)
    for name in ("bot-1", "bot-2", "app", "worker"):
        service = services[name]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
        assert service["env_file"] == [".env"], name  # one QINGLANG_DATA_KEY for every replica
        assert service["environment"]["QINGLANG_REDIS_URL"] == "redis://redis:6379/0", name
        assert service["stop_grace_period"] == "40s", name
    for name in ("bot-1", "bot-2"):
        assert services[name]["command"] == ["qinglang", "serve", "--only", "bot", "--no-migrate"]
        assert services[name]["environment"]["QINGLANG_BOT_MODE"] == "webhook"
        assert "/readyz" in services[name]["healthcheck"]["test"][-1]
    assert services["app"]["command"] == ["qinglang", "serve", "--only", "web", "--no-migrate"]
    assert services["worker"]["command"] == ["qinglang", "worker"]
    port = services["worker"]["environment"]["QINGLANG_WORKER_PORT"]  # its own /readyz and /metrics
    assert f"127.0.0.1:{port}/readyz" in services["worker"]["healthcheck"]["test"][-1]
    assert services["rasa"]["build"]["dockerfile"] == "deploy/rasa/Dockerfile"
    for name, service in services.items():
        for key in service.get("environment", {}):
            assert key.startswith(("QINGLANG_", "POSTGRES_", "RASA_")), (name, key)


def test_nginx_sends_the_webhook_to_both_bot_replicas():
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    upstream = re.search(r"upstream qinglang_bot \{(.*?)\}", conf, re.S).group(1)
    assert re.findall(r"server (\S+):8080", upstream) == ["bot-1", "bot-2"]
    webhook = re.search(r"location = /telegram/webhook \{(.*?)\}", conf, re.S).group(1)
    assert "proxy_pass http://qinglang_bot;" in webhook
    assert "http_503" in webhook and "non_idempotent" in webhook  # a replica shutting down: the other one
    assert re.search(r"location = /metrics \{\s*return 404;", conf)
    login = re.search(r"location = /login \{(.*?)\}", conf, re.S).group(1)
    assert "limit_req zone=qinglang_login" in login  # password spraying from one address
    nginx = _compose()["services"]["nginx"]
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in nginx["volumes"]
    # the app believes nginx's X-Forwarded-For, and only nginx's
    trusted = _compose()["services"]["app"]["environment"]["QINGLANG_TRUSTED_PROXIES"]
    assert trusted == nginx["networks"]["default"]["ipv4_address"] + "/32"


def _compose_command() -> list[str] | None:
    """`docker compose` (the plugin), else Debian's `docker-compose` 1.29, which checks the file against
    the Compose Specification's schema too; scripts/test.sh installs the latter."""
    import shutil
    import subprocess

    docker = shutil.which("docker")
    if docker is not None and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def _compose_config(tmp_path: Path, text: str):
    import subprocess

    command = _compose_command()
    if command is None:
        if os.environ.get("CI") == "true":
            pytest.fail("neither `docker compose` nor docker-compose is installed (scripts/test.sh installs it)")
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    (tmp_path / "docker-compose.yml").write_text(text)  # beside an .env of its own, not the checkout's
    (tmp_path / ".env").write_text("QINGLANG_BOT_TOKEN=123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ\n")
    return subprocess.run([*command, "-f", str(tmp_path / "docker-compose.yml"), "config", "--quiet"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_docker_compose_config_accepts_the_file(tmp_path):
    result = _compose_config(tmp_path, (ROOT / "docker-compose.yml").read_text())
    assert result.returncode == 0, result.stderr


def test_docker_compose_config_would_catch_a_mistake(tmp_path):
    """The validator really reads the services: a misspelt key is refused."""
    text = (ROOT / "docker-compose.yml").read_text().replace("    restart: unless-stopped\n",
                                                              "    restrat: unless-stopped\n", 1)
    result = _compose_config(tmp_path, text)
    assert result.returncode != 0 and "restrat" in (result.stderr + result.stdout)


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
