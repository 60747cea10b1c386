"""deploy/kubernetes: valid against Kubernetes' own schemas (bundled by kubernetes-validate, offline), and
consistent with the image, the entrypoint and the settings."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.cli import DEFAULT_PORT
from app.settings import FILE_SETTINGS, FILE_SUFFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
DOCKERFILE = (ROOT / "Dockerfile").read_text()
# The oldest Kubernetes release still supported upstream when this was written, and the newest bundled.
KUBERNETES_VERSIONS = ("1.32.0", kubernetes_validate.latest_version())
# Read by docker/entrypoint.sh, not by the settings.
ENTRYPOINT_VARIABLES = {"PAR_PORT", "PAR_SKIP_MIGRATE"}


def resources() -> dict[str, dict[str, Any]]:
    """Every resource of the kustomization, by kind."""
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    loaded: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((MANIFESTS / name).read_text()):
            assert document["kind"] not in loaded, f"two {document['kind']}s"
            loaded[document["kind"]] = document
    return loaded


RESOURCES = resources()
DEPLOYMENT = RESOURCES["Deployment"]
JOB = RESOURCES["Job"]
POD = DEPLOYMENT["spec"]["template"]["spec"]
[SERVER] = POD["containers"]
[MIGRATE] = JOB["spec"]["template"]["spec"]["containers"]


def environment(container: dict[str, Any]) -> dict[str, str]:
    return {variable["name"]: variable["value"] for variable in container.get("env", [])}


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    on_disk = {path.name for path in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk
    assert [image["name"] for image in kustomization["images"]] == [SERVER["image"]]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_each_manifest_is_valid_against_the_kubernetes_schema(kind: str, version: str) -> None:
    kubernetes_validate.validate(RESOURCES[kind], version, strict=True)


def test_the_schema_check_catches_a_misspelt_field() -> None:
    """strict: an unknown field fails, as a misspelt probe would otherwise be dropped without a word."""
    broken = copy.deepcopy(DEPLOYMENT)
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_probes_ask_the_health_endpoints_on_the_served_port() -> None:
    assert SERVER["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert SERVER["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert SERVER["startupProbe"]["httpGet"]["path"] == "/healthz"
    # /readyz answers (503) within its own bound: a probe timeout would say nothing more.
    assert SERVER["readinessProbe"]["timeoutSeconds"] > Settings().readyz_timeout_seconds
    [port] = SERVER["ports"]
    exposed = re.search(r"^EXPOSE (\d+)$", DOCKERFILE, re.MULTILINE)
    assert exposed is not None
    assert port["containerPort"] == int(environment(SERVER)["PAR_PORT"]) == int(exposed[1]) == DEFAULT_PORT
    probed = {SERVER[probe]["httpGet"]["port"] for probe in ("readinessProbe", "livenessProbe", "startupProbe")}
    assert probed == {port["name"]}
    assert [(p["port"], p["targetPort"]) for p in RESOURCES["Service"]["spec"]["ports"]] == [(8000, port["name"])]


def test_the_service_and_the_disruption_budget_select_the_servers_only() -> None:
    server_labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    job_labels = JOB["spec"]["template"]["metadata"]["labels"]
    for selector in (
        RESOURCES["Service"]["spec"]["selector"],
        RESOURCES["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= server_labels.items()
        assert not selector.items() <= job_labels.items()
    assert DEPLOYMENT["spec"]["selector"]["matchLabels"].items() <= server_labels.items()


def test_the_grace_period_outlasts_the_pre_stop_delay_and_the_shutdown_grace() -> None:
    shutdown_grace = int(environment(SERVER).get("PAR_SHUTDOWN_GRACE_SECONDS", Settings().shutdown_grace_seconds))
    assert shutdown_grace >= Settings().shutdown_grace_seconds
    command = SERVER["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert POD["terminationGracePeriodSeconds"] > int(command[1]) + shutdown_grace


def test_the_servers_leave_migrating_to_the_job() -> None:
    assert environment(SERVER)["PAR_SKIP_MIGRATE"] == "1"
    assert "command" not in SERVER and "args" not in SERVER  # the image's entrypoint serves
    assert MIGRATE["args"] == ["par-server", "migrate"] and "command" not in MIGRATE
    assert MIGRATE["image"] == SERVER["image"]
    assert JOB["spec"]["template"]["spec"]["restartPolicy"] in {"Never", "OnFailure"}


@pytest.mark.parametrize("container", [SERVER, MIGRATE], ids=["server", "migrate"])
def test_secrets_are_files_of_a_secret_volume_never_variables(container: dict[str, Any]) -> None:
    pod = POD if container is SERVER else JOB["spec"]["template"]["spec"]
    assert not [source for source in container.get("envFrom", []) if "secretRef" in source]
    assert not [variable for variable in container.get("env", []) if "valueFrom" in variable]
    secret_paths = {}
    for volume in pod["volumes"]:
        if "secret" in volume:
            [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
            assert mount["readOnly"] is True
            for item in volume["secret"]["items"]:
                secret_paths[f"{mount['mountPath']}/{item['path']}"] = volume["secret"]["secretName"]
    file_variables = {name: value for name, value in environment(container).items() if name.endswith(FILE_SUFFIX)}
    assert file_variables, "no secret is given as a file"
    for name, path in file_variables.items():
        assert name.removeprefix("PAR_").removesuffix(FILE_SUFFIX).lower() in FILE_SETTINGS
        assert path in secret_paths, f"{name} names {path}, which no secret volume provides"
    assert set(file_variables.values()) == set(secret_paths)  # each pod mounts only the secrets it reads
    if container is SERVER:
        assert {"PAR_DATABASE_URL_FILE", "PAR_ADMIN_TOKEN_FILE", "PAR_PEPPER_FILE"} <= set(file_variables)
    else:
        assert set(file_variables) == {"PAR_DATABASE_URL_FILE"}


def test_every_variable_is_a_setting_or_the_entrypoints() -> None:
    """A misspelt setting would be ignored (the settings ignore unknown PAR_ variables)."""
    known = {f"PAR_{field.upper()}" for field in Settings.model_fields}
    known |= {f"PAR_{field.upper()}{FILE_SUFFIX}" for field in FILE_SETTINGS} | ENTRYPOINT_VARIABLES
    for container in (SERVER, MIGRATE):
        assert set(environment(container)) <= known
    config = RESOURCES["ConfigMap"]["data"]
    assert set(config) <= known
    assert not {f"PAR_{field.upper()}" for field in FILE_SETTINGS} & set(config), "a secret in the ConfigMap"
    for container in (SERVER, MIGRATE):
        assert container["envFrom"] == [{"configMapRef": {"name": RESOURCES["ConfigMap"]["metadata"]["name"]}}]


@pytest.mark.parametrize("template", [DEPLOYMENT, JOB], ids=["server", "migrate"])
def test_the_pods_run_as_the_images_user_on_a_read_only_root_with_no_capabilities(template: dict[str, Any]) -> None:
    pod = template["spec"]["template"]["spec"]
    user = re.search(r"^USER (\d+):(\d+)$", DOCKERFILE, re.MULTILINE)
    assert user is not None
    context = pod["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (int(user[1]), int(user[2]))
    assert context["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    [container] = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # What the process writes (temporary files, the metrics of --workers processes) goes to /tmp.
    [tmp] = [mount for mount in container["volumeMounts"] if mount["mountPath"] == "/tmp"]  # noqa: S108
    assert [volume for volume in pod["volumes"] if volume["name"] == tmp["name"]][0].keys() == {"name", "emptyDir"}
