"""The Kubernetes manifests of deploy/flink pass only runs the pipeline accepts, and
mount what they point at.

Each submitter container (one running ``deploy/portable.py`` or ``-m
pipelines.volume``) has its pipeline arguments rebuilt exactly as it would run them
(``portable.command_of``), then parsed by the pipeline's own option parser and
checked by ``pipelines.options.usage_errors``. Paths that exist only in the cluster
are moved under a temporary folder standing in for each mount (the input glob gets a
file, the landing folder and the key file are made): the check is that the option
combination is accepted. The mounts are checked from the manifests themselves: every
mounted volume is declared, claims exist, the key Secret is mounted where
``--pseudonym-key-file`` points on every container that runs Python steps, and the
submitters, the worker-pool sidecars and the job server share one volume at one path.
"""

import posixpath
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions

from pipelines.options import VolumeOptions, usage_errors
from pipelines.runners import streaming_runner_problems
from tests.conftest import PROJECT, TEST_KEY_HEX

sys.path.insert(0, str(PROJECT / "deploy"))
import portable  # noqa: E402

MANIFEST_DIR = PROJECT / "deploy" / "flink"
MANIFESTS = sorted(MANIFEST_DIR.glob("*.yaml"))
KEY_FLAG = "--pseudonym-key-file"
KEY_SECRET = "yuqing-pseudonym-key"
KEY_ITEM = "pseudonym.key"
# Options naming files or folders the pipeline reads or writes.
PATH_FLAGS = ("--input", "--landing", "--output", KEY_FLAG)


def load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def all_documents() -> list[tuple[str, dict]]:
    return [(path.name, doc) for path in MANIFESTS for doc in load(path)]


def pod_specs(doc: dict) -> list[tuple[str, dict]]:
    """(where, pod spec) of every pod a manifest document makes."""
    kind, spec = doc["kind"], doc.get("spec", {})
    name = (
        f"{kind}/{doc['metadata'].get('name') or doc['metadata'].get('generateName')}"
    )
    if kind in ("Job", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        return [(name, spec["template"]["spec"])]
    if kind == "CronJob":
        return [(name, spec["jobTemplate"]["spec"]["template"]["spec"])]
    if kind == "Pod":
        return [(name, spec)]
    if kind == "FlinkDeployment":
        found = []
        for part in ("podTemplate", "jobManager", "taskManager"):
            holder = spec.get(part, {})
            template = holder if part == "podTemplate" else holder.get("podTemplate")
            if template:
                found.append((f"{name} {part}", template.get("spec", {})))
        return found
    return []


def containers(pod: dict) -> list[dict]:
    return pod.get("initContainers", []) + pod.get("containers", [])


def pipeline_argv(container: dict) -> list[str] | None:
    """The arguments ``pipelines.volume`` gets from this container, or None when it
    runs no pipeline."""
    words = [str(word) for word in container.get("command", [])] + [
        str(word) for word in container.get("args", [])
    ]
    for index, word in enumerate(words):
        if word.endswith("portable.py"):
            return portable.command_of(words[index + 1 :])[3:]
        if word == "pipelines.volume" and words[index - 1 : index] == ["-m"]:
            return words[index + 1 :]
    return None


def flag_value(argv: list[str], flag: str) -> list[str]:
    """Every value given to ``flag`` (``--flag=v`` or ``--flag v``), in order."""
    values = []
    for index, word in enumerate(argv):
        if word.startswith(flag + "="):
            values.append(word.split("=", 1)[1])
        elif word == flag and index + 1 < len(argv):
            values.append(argv[index + 1])
    return values


def mounts_of(pod: dict, container: dict) -> dict[str, dict]:
    """mountPath -> the volume mounted there."""
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    return {
        mount["mountPath"]: volumes.get(mount["name"], {})
        for mount in container.get("volumeMounts", [])
    }


def volume_under(path: str, mounts: dict[str, dict]) -> tuple[str, dict] | None:
    """The (mountPath, volume) holding ``path``, deepest mount first."""
    for mount_path in sorted(mounts, key=len, reverse=True):
        if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
            return mount_path, mounts[mount_path]
    return None


def claim(volume: dict) -> str | None:
    return (volume.get("persistentVolumeClaim") or {}).get("claimName")


def secret_holds(volume: dict, secret: str, item: str) -> bool:
    """Whether ``volume`` is ``secret`` and exposes its key ``item`` as a file."""
    source = volume.get("secret") or {}
    if source.get("secretName") != secret:
        return False
    items = source.get("items")
    return items is None or any(
        entry["key"] == item and entry["path"] == item for entry in items
    )


def key_problems(pod: dict, container: dict, key_file: str) -> list[str]:
    """Why ``key_file`` is not the key Secret's file in this container."""
    held = volume_under(key_file, mounts_of(pod, container))
    if held is None:
        return [f"{KEY_FLAG} {key_file}: nothing is mounted there"]
    mount_path, volume = held
    item = posixpath.relpath(key_file, mount_path)
    if not secret_holds(volume, KEY_SECRET, item):
        return [f"{KEY_FLAG} {key_file}: not the file {item} of Secret {KEY_SECRET}"]
    return []


def mount_problems(pod: dict, claims: set[str]) -> list[str]:
    """Mounts of undeclared volumes, and claims no manifest declares."""
    declared = {volume["name"] for volume in pod.get("volumes", [])}
    problems = [
        f"container {container['name']} mounts undeclared volume {mount['name']}"
        for container in containers(pod)
        for mount in container.get("volumeMounts", [])
        if mount["name"] not in declared
    ]
    problems += [
        f"volume {volume['name']} claims undeclared {claim(volume)}"
        for volume in pod.get("volumes", [])
        if claim(volume) and claim(volume) not in claims
    ]
    return problems


def stub_cluster_paths(
    argv: list[str], mounts: dict[str, dict], root: Path
) -> list[str]:
    """``argv`` with every path under a mount moved under ``root``, and what those
    paths must hold made there: a file for the input glob, the landing folder, the
    key file."""
    stubbed = []
    for word in argv:
        flag, sep, value = word.partition("=")
        held = volume_under(value, mounts) if sep and flag in PATH_FLAGS else None
        if held:
            value = str(root) + value
            word = f"{flag}={value}"
            target = Path(value)
            if flag == "--input":
                target = target.parent / target.name.replace("*", "posts")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(b"")
            elif flag == "--landing":
                target.mkdir(parents=True, exist_ok=True)
            elif flag == KEY_FLAG:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(TEST_KEY_HEX + "\n")
        stubbed.append(word)
    return stubbed


def option_problems(argv: list[str]) -> list[str]:
    """What the pipeline says about ``argv`` before it runs anything."""
    options = PipelineOptions(argv)
    return usage_errors(options.view_as(VolumeOptions)) + streaming_runner_problems(
        options
    )


def submitters() -> list[tuple[str, dict, dict, list[str]]]:
    """(where, pod, container, pipeline argv) of every container submitting a run."""
    found = []
    for name, doc in all_documents():
        for where, pod in pod_specs(doc):
            for container in containers(pod):
                argv = pipeline_argv(container)
                if argv is not None:
                    found.append((f"{name} {where}", pod, container, argv))
    return found


def worker_pools() -> list[tuple[str, dict, dict]]:
    """(where, pod, container) of every Beam worker pool (``--worker_pool``)."""
    return [
        (f"{name} {where}", pod, container)
        for name, doc in all_documents()
        for where, pod in pod_specs(doc)
        for container in containers(pod)
        if "--worker_pool" in container.get("args", [])
    ]


def declared(kind: str) -> dict[str, dict]:
    return {
        doc["metadata"]["name"]: doc
        for _, doc in all_documents()
        if doc["kind"] == kind and "name" in doc["metadata"]
    }


SUBMITTERS = submitters()


def test_the_deployment_has_a_streaming_and_a_batch_submitter():
    modes = {
        "streaming" if "--streaming" in argv else "batch" for *_, argv in SUBMITTERS
    }
    assert modes == {"streaming", "batch"}, [where for where, *_ in SUBMITTERS]
    assert worker_pools(), "no worker-pool sidecar (--worker_pool) in the manifests"


@pytest.mark.parametrize(
    "where, pod, container, argv", SUBMITTERS, ids=[s[0] for s in SUBMITTERS]
)
def test_submitted_options_are_accepted_by_the_pipeline(
    where, pod, container, argv, tmp_path
):
    stubbed = stub_cluster_paths(argv, mounts_of(pod, container), tmp_path)
    assert option_problems(stubbed) == []
    portable_options = PipelineOptions(stubbed).view_as(PortableOptions)
    assert portable_options.environment_type == "EXTERNAL"
    # The job endpoint is a Service of the manifests, on one of its ports.
    host, _, port = portable_options.job_endpoint.rpartition(":")
    services = declared("Service")
    assert host in services, f"{host} is no Service of deploy/flink"
    assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}


@pytest.mark.parametrize(
    "where, pod, container, argv", SUBMITTERS, ids=[s[0] for s in SUBMITTERS]
)
def test_submitters_read_the_key_from_the_mounted_secret(where, pod, container, argv):
    key_files = flag_value(argv, KEY_FLAG)
    assert key_files, f"{where}: no {KEY_FLAG}"
    assert key_problems(pod, container, key_files[-1]) == []


def test_every_python_worker_mounts_the_key_where_submitters_point():
    key_files = {flag_value(argv, KEY_FLAG)[-1] for *_, argv in SUBMITTERS}
    assert len(key_files) == 1, key_files
    (key_file,) = key_files
    for where, pod, container in worker_pools():
        assert key_problems(pod, container, key_file) == [], where


def test_data_paths_are_on_one_volume_shared_with_workers_and_job_server():
    pools = worker_pools()
    for where, pod, container, argv in SUBMITTERS:
        mounts = mounts_of(pod, container)
        for flag in ("--input", "--landing", "--output"):
            for value in flag_value(argv, flag):
                held = volume_under(value, mounts)
                assert held and claim(held[1]), f"{where}: {flag} {value} not shared"
                mount_path, volume = held
                for pool_where, pool_pod, pool in pools:
                    pool_mounts = mounts_of(pool_pod, pool)
                    assert claim(pool_mounts.get(mount_path, {})) == claim(volume), (
                        f"{pool_where} does not mount {claim(volume)} at {mount_path}"
                    )
    # Staged artifacts: written by the job server, read by every TaskManager.
    servers = [
        (where, pod, container)
        for _, doc in all_documents()
        for where, pod in pod_specs(doc)
        for container in containers(pod)
        if flag_value(container.get("args", []), "--artifacts-dir")
    ]
    assert servers, "no job server with --artifacts-dir"
    task_managers = [
        (where, pod, container)
        for _, doc in all_documents()
        for where, pod in pod_specs(doc)
        if where.endswith("taskManager")
        for container in containers(pod)
        if container["name"] == "flink-main-container"
    ]
    assert task_managers
    for where, pod, container in servers:
        artifacts = flag_value(container["args"], "--artifacts-dir")[-1]
        mount_path, volume = volume_under(artifacts, mounts_of(pod, container))
        assert claim(volume), f"{where}: --artifacts-dir {artifacts} is not shared"
        for tm_where, tm_pod, tm in task_managers:
            assert claim(mounts_of(tm_pod, tm).get(mount_path, {})) == claim(volume), (
                f"{tm_where} cannot read the staged artifacts in {artifacts}"
            )


@pytest.mark.parametrize("path", MANIFESTS, ids=[path.name for path in MANIFESTS])
def test_every_mounted_volume_is_declared(path):
    claims = set(declared("PersistentVolumeClaim"))
    for doc in load(path):
        for where, pod in pod_specs(doc):
            assert mount_problems(pod, claims) == [], f"{path.name} {where}"


# The checks can fail: each catches what it is for.


def test_streaming_with_input_is_refused(tmp_path):
    streaming = next(s for s in SUBMITTERS if "--streaming" in s[3])
    _, pod, container, argv = streaming
    argv = stub_cluster_paths(argv, mounts_of(pod, container), tmp_path)
    problems = option_problems([*argv, f"--input={tmp_path}/*.jsonl"])
    assert any("--input is for batch runs" in line for line in problems), problems


def test_a_key_file_outside_the_secret_is_reported():
    _, pod, container, _ = SUBMITTERS[0]
    assert key_problems(pod, container, "/data/pseudonym.key")
    assert key_problems(pod, container, "/etc/elsewhere/pseudonym.key")


def test_an_undeclared_volume_is_reported():
    pod = {
        "containers": [
            {"name": "c", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}
        ],
        "volumes": [{"name": "y", "persistentVolumeClaim": {"claimName": "nope"}}],
    }
    assert len(mount_problems(pod, claims=set())) == 2


def test_the_submitter_exits_2_when_no_job_service_answers():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    result = subprocess.run(
        [
            sys.executable,
            str(PROJECT / "deploy" / "portable.py"),
            f"--job-endpoint=localhost:{port}",
            "--",
            "--input=x",
            "--output=y",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"error: no job service answers on localhost:{port}"
    )
