"""Tables on an object store (``s3://``, ``gs://``), read without Beam: the pointer
``_current.json`` names the published run (``transforms.object_store`` writes it
last), pyarrow's filesystems read the pointer and list the run's files, polars
scans the Parquet with ``storage_options``.

Credentials and endpoint come from the environment, as boto3 takes them:
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_REGION`` (or ``AWS_DEFAULT_REGION``) and, for a server other than AWS,
``AWS_ENDPOINT_URL``. Other schemes use pyarrow's and polars' own lookup.
"""

import json
import os
import re

import pyarrow.fs as pafs

from schemas.tables import CURRENT_POINTER

SCHEME_PATTERN = re.compile(r"^(?P<scheme>[a-zA-Z][-a-zA-Z0-9+.]*)://")
S3_ENVIRONMENT = {
    "aws_endpoint_url": "AWS_ENDPOINT_URL",
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws_session_token": "AWS_SESSION_TOKEN",
    "aws_region": "AWS_REGION",
}


def scheme(path: str) -> str | None:
    """``s3`` for ``s3://bucket/x`` (as Beam's ``FileSystems.get_scheme``); None
    for a local path."""
    match = SCHEME_PATTERN.match(path.strip())
    return match.group("scheme") if match else None


def is_remote(path: str) -> bool:
    return scheme(path) is not None


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *(part.strip("/") for part in parts)])


def storage_options(path: str) -> dict | None:
    """polars' ``storage_options`` for ``path``: for ``s3://`` the environment's
    endpoint, keys and region; an empty dict for other schemes (polars looks for
    their credentials itself); None for a local path."""
    name = scheme(path)
    if name is None:
        return None
    if name != "s3":
        return {}
    options = {
        key: os.environ[env] for key, env in S3_ENVIRONMENT.items() if env in os.environ
    }
    if "aws_region" not in options and "AWS_DEFAULT_REGION" in os.environ:
        options["aws_region"] = os.environ["AWS_DEFAULT_REGION"]
    if options.get("aws_endpoint_url", "").startswith("http://"):
        options["aws_allow_http"] = "true"
    return options


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's filesystem for ``path`` and the path inside it."""
    name = scheme(path)
    inner = path.split("://", 1)[1]
    if name != "s3":
        return pafs.FileSystem.from_uri(path)
    options = storage_options(path)
    endpoint = options.get("aws_endpoint_url")
    arguments = {
        "access_key": options.get("aws_access_key_id"),
        "secret_key": options.get("aws_secret_access_key"),
        "session_token": options.get("aws_session_token"),
        "region": options.get("aws_region"),
    }
    if endpoint:
        endpoint_scheme, _, address = endpoint.partition("://")
        arguments.update(endpoint_override=address, scheme=endpoint_scheme)
    arguments = {key: value for key, value in arguments.items() if value}
    return pafs.S3FileSystem(**arguments), inner


def read_text(path: str) -> str:
    store, inner = filesystem(path)
    with store.open_input_stream(inner) as handle:
        return handle.read().decode("utf-8")


def list_files(folder: str) -> list[str]:
    """Every file under ``folder``, at any depth, as full ``scheme://`` paths."""
    store, inner = filesystem(folder)
    prefix = folder.split("://", 1)[0] + "://"
    selector = pafs.FileSelector(
        inner.rstrip("/"), recursive=True, allow_not_found=True
    )
    return sorted(
        prefix + info.path
        for info in store.get_file_info(selector)
        if info.type == pafs.FileType.File
    )


def read_pointer(output: str) -> dict | None:
    """``_current.json`` of ``output``, or None when no run was published there."""
    try:
        return json.loads(read_text(join(output, CURRENT_POINTER)))
    except FileNotFoundError:
        return None


def output_problem(output: str) -> str | None:
    """Why the reports cannot read the object-store output ``output`` (one line):
    no filesystem for its scheme here, the pointer unreadable (credentials, a
    missing bucket), or no run published there yet; None when its pointer reads."""
    try:
        pointer = read_pointer(output)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        text = " ".join(str(error).split())
        return f"cannot read {CURRENT_POINTER} ({text[:200]})"
    if pointer is None:
        return f"no run was published there (no {CURRENT_POINTER})"
    return None


def resolve(output: str) -> str:
    """The folder of the run ``output``'s pointer names now, or ``output`` itself
    when none was published."""
    pointer = read_pointer(output)
    return output if pointer is None else join(output, pointer["folder"])
