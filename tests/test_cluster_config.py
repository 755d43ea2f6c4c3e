"""cluster.yaml (the `ray up` config) checked with the Ray cluster launcher's own validation.

`ray up` (ray.autoscaler._private.commands._bootstrap_config) first runs `prepare_config` (merges
ray/autoscaler/<provider>/defaults.yaml, per-node-type worker limits, setup command merging) and then
`validate_config`, which checks the result against ray/autoscaler/ray-schema.json with jsonschema and
then checks head_node_type and the min_workers sum. Between the two it asks the cloud for instance
resources (AWS API calls, skipped here; every node type in cluster.yaml states its resources).
These tests call the same two functions, so a config that fails here fails `ray up` the same way.
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import ray.autoscaler._private.commands as launcher
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
CLUSTER_DOC = ROOT / "docs" / "cluster.md"
WILDCARD_HOSTS = {"0.0.0.0", "::", "[::]", "*", ""}


def load_cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def ray_validate(config: dict) -> dict:
    """What `ray up` does to a config before it contacts the cloud; returns the prepared config."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.fixture
def cluster() -> dict:
    return load_cluster()


@pytest.fixture
def prepared(cluster) -> dict:
    return ray_validate(cluster)


def node_types(config: dict) -> dict:
    return config["available_node_types"]


def gpu_worker_types(config: dict) -> dict:
    return {name: nt for name, nt in node_types(config).items() if name != config["head_node_type"] and nt.get("resources", {}).get("GPU", 0) >= 1}


def commands_running(commands: list[str], program: str) -> list[str]:
    return [c for c in commands if re.search(rf"(^|[;&|(\s]){re.escape(program)}\s", c)]


def flag_value(tokens: list[str], flag: str) -> str | None:
    """The value of `--flag VALUE` or `--flag=VALUE` in a token list."""
    for i, tok in enumerate(tokens):
        if tok == flag and i + 1 < len(tokens):
            return tokens[i + 1]
        if tok.startswith(flag + "="):
            return tok.split("=", 1)[1]
    return None


# --- the validator itself ---------------------------------------------------------------------


def test_uses_the_launchers_validator():
    assert launcher.validate_config is validate_config
    assert launcher.prepare_config is prepare_config
    assert (Path(ray.autoscaler.__file__).parent / "ray-schema.json").is_file()


def test_cluster_yaml_passes_ray_validation(prepared):
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


# --- broken copies must fail ------------------------------------------------------------------


def test_head_node_type_naming_a_missing_type_fails(cluster):
    cluster["head_node_type"] = "no_such_type"
    with pytest.raises(ValueError, match="head_node_type` must be one of"):
        ray_validate(cluster)


def test_head_node_type_removed_fails(cluster):
    # prepare_config fills AWS's default name (ray.head.default), which cluster.yaml does not define
    del cluster["head_node_type"]
    with pytest.raises(ValueError, match="head_node_type` must be one of"):
        ray_validate(cluster)


def test_head_node_type_entry_removed_fails(cluster):
    del cluster["available_node_types"][cluster["head_node_type"]]
    with pytest.raises(ValueError, match="head_node_type` must be one of"):
        ray_validate(cluster)


def test_validate_config_requires_head_node_type(prepared):
    del prepared["head_node_type"]
    with pytest.raises(ValueError, match="You must specify `head_node_type`"):
        validate_config(prepared)


def rename(mapping: dict, old: str, new: str) -> None:
    assert old in mapping, f"{old} not in config"
    mapping[new] = mapping.pop(old)


@pytest.mark.parametrize(
    ("where", "old", "new"),
    [
        ("top", "setup_commands", "setup_comands"),
        ("top", "head_start_ray_commands", "head_start_ray_command"),
        ("top", "worker_start_ray_commands", "worker_start_commands"),
        ("top", "idle_timeout_minutes", "idle_timeout_minute"),
        ("gpu", "min_workers", "min_worker"),
        ("gpu", "resources", "resource"),
        ("head", "node_config", "nodeconfig"),
    ],
)
def test_field_name_typo_fails(cluster, where, old, new):
    if where == "top":
        target = cluster
    elif where == "head":
        target = node_types(cluster)[cluster["head_node_type"]]
    else:
        target = next(iter(gpu_worker_types(cluster).values()))
    rename(target, old, new)
    with pytest.raises(jsonschema.ValidationError, match=re.escape(repr(new))):
        ray_validate(cluster)


def test_min_workers_above_max_workers_fails(cluster):
    gpu = next(iter(gpu_worker_types(cluster).values()))
    gpu["min_workers"] = cluster["max_workers"] + 1
    with pytest.raises(ValueError, match="max_workers"):
        ray_validate(cluster)


def test_fractional_gpu_count_fails(cluster):
    gpu = next(iter(gpu_worker_types(cluster).values()))
    gpu["resources"]["GPU"] = 0.5
    with pytest.raises(jsonschema.ValidationError):
        ray_validate(cluster)


# --- what cluster.yaml promises -----------------------------------------------------------------


def test_head_is_a_cpu_node(prepared):
    head = node_types(prepared)[prepared["head_node_type"]]
    assert "CPU" in head["resources"]
    assert head["resources"].get("GPU", 0) == 0


def test_gpu_worker_type_exists_and_autoscales(prepared):
    gpus = gpu_worker_types(prepared)
    assert gpus, "no worker node type with GPU in its resources"
    for name, nt in gpus.items():
        assert nt["resources"]["CPU"] >= 1, name
        assert nt["node_config"]["InstanceType"], name
        assert nt["min_workers"] < nt["max_workers"] <= prepared["max_workers"], f"{name}: nothing left to autoscale"
    # service.num_gpus "auto" and victim training look at the GPUs of the nodes that are up when
    # the sweep starts (ray.cluster_resources()), so one GPU worker must be up from the start
    assert sum(nt["min_workers"] for nt in gpus.values()) >= 1


def test_head_start_commands_restart_ray_with_token_auth(prepared):
    cmds = prepared["head_start_ray_commands"]
    assert cmds[0].strip() == "ray stop"
    starts = [c for c in cmds if "ray start" in c]
    assert len(starts) == 1 and "--head" in starts[0]
    assert "RAY_AUTH_MODE=token" in starts[0]
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in starts[0]


def mlflow_server_argv(command: str) -> list[str] | None:
    """The argv of `mlflow server` in a shell command, looking inside `sh -c '...'` strings too."""
    tokens = shlex.split(command)
    for i, tok in enumerate(tokens):
        if tok == "mlflow" and tokens[i + 1 : i + 2] == ["server"]:
            return tokens[i:]
        if "mlflow server" in tok and tok != command:
            return mlflow_server_argv(tok)
    return None


def test_head_starts_mlflow_on_a_private_address(prepared):
    mlflow = commands_running(prepared["head_start_ray_commands"], "mlflow")
    assert len(mlflow) == 1, "exactly one head start command should start `mlflow server`"
    outer = shlex.split(mlflow[0])
    assert "nohup" in outer and outer.index("nohup") < outer.index("&"), "mlflow server must be backgrounded with nohup"
    argv = mlflow_server_argv(mlflow[0])
    assert argv is not None
    host = flag_value(argv, "--host") or flag_value(argv, "-h")
    assert host is not None, "mlflow server without --host binds 127.0.0.1, out of the workers' reach"
    assert host not in WILDCARD_HOSTS, f"mlflow has no auth; never bind it to {host!r}"
    assert host.startswith("$"), "bind to the head's own (private) IP, computed on the node"
    assert flag_value(argv, "--port") == "5000"
    assert flag_value(argv, "--backend-store-uri") == "sqlite:///$HOME/mlflow/mlflow.db"
    # workers must not write artifacts to a path only the head has: proxy them through the server
    assert flag_value(argv, "--artifacts-destination") is not None
    assert "--no-serve-artifacts" not in argv
    assert "--disable-security-middleware" not in argv
    allowed = flag_value(argv, "--allowed-hosts")
    if allowed is not None:
        assert not set(allowed.split(",")) & WILDCARD_HOSTS, f"--allowed-hosts {allowed!r} lets any Host header in"
    assert not any(t in WILDCARD_HOSTS - {""} for t in argv)
    # the URI that `sslsteal sweep --tracking-uri` needs is left on the head
    assert "~/mlflow/tracking_uri" in mlflow[0]


def test_workers_join_the_head_with_token_auth(prepared):
    cmds = prepared["worker_start_ray_commands"]
    assert cmds[0].strip() == "ray stop"
    starts = [c for c in cmds if "ray start" in c]
    assert len(starts) == 1
    assert "--head" not in starts[0]
    assert "--address=$RAY_HEAD_IP:6379" in starts[0]
    assert "RAY_AUTH_MODE=token" in starts[0]


def test_auth_token_reaches_every_node(prepared):
    assert prepared["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"
    assert any("RAY_AUTH_MODE=token" in c and ".bashrc" in c for c in prepared["setup_commands"])


def test_nodes_install_this_working_tree(prepared):
    mounts = prepared["file_mounts"]
    remote = next(r for r, local in mounts.items() if local in (".", "./"))
    assert any(f"pip install -e {remote}" in c for c in prepared["setup_commands"])
    assert ".gitignore" in prepared["rsync_filter"]
    # the head's autoscaler needs boto3 to launch EC2 workers
    assert any("boto3" in c for c in prepared["head_setup_commands"])


def test_no_ports_opened_to_the_outside(cluster):
    # Ray's AWS security group opens only SSH to the outside unless the provider adds rules
    assert "IpPermissions" not in cluster["provider"].get("security_group", {})


# --- docs/cluster.md ------------------------------------------------------------------------------


def doc_yaml_block(heading: str) -> dict:
    text = CLUSTER_DOC.read_text()
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert match, f"no yaml block under {heading!r} in docs/cluster.md"
    return yaml.safe_load(match.group(1))


def test_on_prem_snippet_in_docs_passes_ray_validation(cluster):
    snippet = doc_yaml_block("## On-prem machines")
    assert snippet["provider"]["type"] == "local"
    config = copy.deepcopy(cluster)
    # as the doc says: the local provider defines its single node type itself
    for key in ("available_node_types", "head_node_type", "head_setup_commands"):
        config.pop(key)
    config.update(snippet)
    prepared = ray_validate(config)
    workers = prepared["available_node_types"][prepared["head_node_type"]]
    assert workers["max_workers"] == len(snippet["provider"]["worker_ips"])


def test_local_provider_rejects_node_types(cluster):
    snippet = doc_yaml_block("## On-prem machines")
    cluster.update(snippet)
    with pytest.raises(Exception, match="available_node_types is not supported"):
        ray_validate(cluster)
