"""docker-compose.yml is locked down by default (issue 14). No Docker engine runs here, so
the file and the load-test Dockerfile are parsed and checked: ports published on the
loopback interface only, the serving image pinned by a version tag (or a digest), the
load-test client running as a non-root user. Each check is also run on a bad example, so
that a check that cannot fail would show."""
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = ("127.0.0.1", "::1", "[::1]", "localhost")


def _interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` / ``${VAR}`` with an empty environment: the default
    a plain ``docker compose up`` uses."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}",
                  lambda m: m.group(1) or "", str(value))


def exposed_ports(compose: dict) -> list:
    """(service, port entry) of every published port not bound to a loopback address."""
    bad = []
    for name, service in compose.get("services", {}).items():
        if service.get("network_mode") == "host":
            bad.append((name, "network_mode: host"))
        for port in service.get("ports", []):
            if isinstance(port, dict):  # long syntax
                host_ip = port.get("host_ip")
            else:  # short syntax: [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]
                spec = _interpolate(port).split("/")[0]
                if spec.startswith("["):  # [::1]:8500:8500
                    host_ip = spec[:spec.index("]") + 1]
                else:
                    parts = spec.split(":")
                    host_ip = parts[0] if len(parts) == 3 else None
            if host_ip not in LOOPBACK:
                bad.append((name, port))
    return bad


def unpinned_images(compose: dict) -> list:
    """Images without an explicit version tag (or with ``latest``); a digest is fine."""
    bad = []
    for name, service in compose.get("services", {}).items():
        image = _interpolate(service.get("image", ""))
        if not image:
            continue
        if re.search(r"@sha256:[0-9a-f]{64}$", image):
            continue
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if not tag or tag == "latest" or not re.search(r"\d", tag):
            bad.append((name, image))
    return bad


def _is_root(user: str) -> bool:
    name = _interpolate(user).split(":")[0].strip()
    return name in ("", "root", "0")


def dockerfile_user(text: str) -> str:
    """The user the image's final stage runs as (``root`` when no USER follows FROM)."""
    user = "root"
    for line in text.splitlines():
        words = line.strip().split()
        if not words:
            continue
        if words[0].upper() == "FROM":
            user = "root"
        elif words[0].upper() == "USER" and len(words) > 1:
            user = words[1]
    return user


def root_services(compose: dict, root: Path, services=None) -> list:
    """Built services (or ``services``) that run as root: the compose ``user:`` if set,
    else the Dockerfile's last USER."""
    bad = []
    for name, service in compose.get("services", {}).items():
        if services is not None and name not in services:
            continue
        if "user" in service:
            user = str(service["user"])
        elif "build" in service:
            build = service["build"]
            context = root / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile",
                                                                               "Dockerfile")
            user = dockerfile_user((context / dockerfile).read_text())
        else:
            user = "root"
        if _is_root(user):
            bad.append((name, user))
    return bad


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_ports_are_published_on_loopback_only(compose):
    assert compose["services"]["serving"]["ports"], "the server publishes its ports"
    assert exposed_ports(compose) == []


def test_serving_image_is_pinned(compose):
    assert unpinned_images(compose) == []


def test_loadtest_runs_as_non_root(compose):
    assert root_services(compose, ROOT, services=["loadtest"]) == []
    # the image itself too, for `docker run` without compose's user:
    assert not _is_root(dockerfile_user((ROOT / "serving" / "Dockerfile").read_text()))


def test_checks_catch_an_open_stack(tmp_path):
    """The same checks flag what the locked-down file must not contain."""
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim\nUSER app\nFROM python:3.11\n")
    open_stack = yaml.safe_load("""
    services:
      a: {image: "tensorflow/serving", ports: ["8500:8500", "0.0.0.0:8501:8501", "9000"]}
      b: {image: "tensorflow/serving:latest", network_mode: host}
      c: {image: "x:2.1", ports: [{target: 1, published: 1}, "${IP:-0.0.0.0}:2:2"],
          build: {context: ., dockerfile: Dockerfile}}
      d: {image: "x:2.1@sha256:%s", user: "${U:-0}", ports: ["127.0.0.1:3:3", "[::1]:4:4"]}
    """ % ("a" * 64))
    assert [s for s, _ in exposed_ports(open_stack)] == ["a", "a", "a", "b", "c", "c"]
    assert [s for s, _ in unpinned_images(open_stack)] == ["a", "b"]
    assert [s for s, _ in root_services(open_stack, tmp_path)] == ["a", "b", "c", "d"]
