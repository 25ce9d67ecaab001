#!/usr/bin/env bash
# Fetch everything a local Flink cluster for Beam Python needs into a cache folder.
#
#   deploy/flink/setup.sh            # idempotent; prints KEY=path lines it made
#
# - Flink $FLINK_VERSION from PyPI, without installing it into any env: the
#   apache-flink-libraries package carries lib/ (flink-dist), opt/, plugins/; the
#   apache-flink wheel carries bin/ and conf/. Their declared dependencies clash
#   with Beam's, hence `pip download --no-deps` and unpacking into a FLINK_HOME.
# - Beam's shaded Flink job server jar, same version as the venv's apache-beam,
#   from Maven Central via `mvn dependency:copy`; or the file named by
#   BEAM_FLINK_JOB_SERVER_JAR (a jar fetched elsewhere, e.g. from a mirror).
#
# Exit codes: 0 all there; 2 a registry could not be reached; 3 Flink is ready
# but the job server jar is not served by the Maven registry (see the message).
# Environment: YUQING_CACHE, FLINK_VERSION, BEAM_VERSION, MAVEN_ARGS,
# BEAM_FLINK_JOB_SERVER_JAR, FLINK_CONF_EXTRA ("key=value key=value").
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

command -v java >/dev/null || die "java not found (Flink $FLINK_VERSION needs Java 11+, 17 preferred)"
[[ -x "$PYTHON" ]] || die "project venv python not found at $PYTHON"
BEAM_VERSION="${BEAM_VERSION:-$(beam_version)}"

published="$("$PYTHON" -c 'from apache_beam.options.pipeline_options import FlinkRunnerOptions as F; print(" ".join(F.PUBLISHED_FLINK_VERSIONS))' 2>/dev/null)"
[[ " $published " == *" $FLINK_MINOR "* ]] ||
  die "apache-beam $BEAM_VERSION publishes job servers for Flink $published, not $FLINK_MINOR"

mkdir -p "$FLINK_CACHE"/{downloads,jars,log,run,tmp,checkpoints}

# --- Flink distribution -------------------------------------------------------
if [[ -f "$FLINK_HOME/.complete" ]]; then
  log "Flink $FLINK_VERSION already unpacked in $FLINK_HOME"
else
  dl="$FLINK_CACHE/downloads/$FLINK_VERSION"
  mkdir -p "$dl"
  log "downloading apache-flink(-libraries)==$FLINK_VERSION from PyPI (~320 MB)"
  if ! "$PYTHON" -m pip download --quiet --no-deps --dest "$dl" \
      "apache-flink==$FLINK_VERSION" "apache-flink-libraries==$FLINK_VERSION"; then
    log "error: pip download from PyPI failed"
    exit 2
  fi
  staging="$FLINK_HOME.partial"
  rm -rf "$staging"
  "$PYTHON" - "$dl" "$staging" "$FLINK_VERSION" <<'PY'
"""Unpack Flink's dist folders out of the two PyPI archives (wheel or sdist)."""
import sys, tarfile, zipfile
from pathlib import Path, PurePosixPath

src, dest, version = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
DIRS = {"bin", "conf", "lib", "opt", "plugins", "licenses", "log"}
# The folder holding lib/flink-dist-*.jar (libraries) or bin/config.sh (apache-flink)
MARKERS = ("lib/flink-dist", "bin/config.sh")

def members(path):
    if path.name.endswith(".whl") or path.suffix == ".zip":
        z = zipfile.ZipFile(path)
        return [(i.filename, lambda i=i: z.read(i)) for i in z.infolist()
                if not i.is_dir()]
    t = tarfile.open(path)
    return [(m.name, lambda m=m: t.extractfile(m).read()) for m in t.getmembers()
            if m.isfile()]

found = set()
for archive in sorted(src.iterdir()):
    if f"-{version}" not in archive.name:
        continue
    entries = members(archive)
    roots = {n[: n.index(m)] for n, _ in entries for m in MARKERS if m in n}
    for name, read in entries:
        root = next((r for r in roots if name.startswith(r)), None)
        if root is None:
            continue
        rel = PurePosixPath(name[len(root):])
        if not rel.parts or rel.parts[0] not in DIRS:
            continue
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(read())
        found.add(rel.parts[0])
for need in ("bin", "conf", "lib"):
    if need not in found:
        sys.exit(f"no {need}/ found in the apache-flink archives in {src}")
for script in (dest / "bin").iterdir():
    script.chmod(0o755)
PY
  mkdir -p "$staging/log"
  rm -rf "$FLINK_HOME"
  mv "$staging" "$FLINK_HOME"
  touch "$FLINK_HOME/.complete"
  rm -rf "$dl"  # 320 MB; the unpacked FLINK_HOME is what counts
  log "unpacked Flink $FLINK_VERSION into $FLINK_HOME"
fi

# --- configuration (rewritten on every run, from the distribution's own) ------
# shellcheck disable=SC2086  # FLINK_CONF_EXTRA is a list of key=value words
conf_file="$("$PYTHON" "$FLINK_DEPLOY_DIR/flink_conf.py" "$FLINK_HOME" \
  "$FLINK_CONF_DIR" "$FLINK_CACHE" \
  "rest.port=$FLINK_REST_PORT" "taskmanager.numberOfTaskSlots=$FLINK_TASK_SLOTS" \
  ${FLINK_CONF_EXTRA:-})"

# --- Beam Flink job server jar --------------------------------------------------
jar="$(job_server_jar)"
artifact="org.apache.beam:beam-runners-flink-$FLINK_MINOR-job-server:$BEAM_VERSION"
status=0
if [[ -s "$jar" ]]; then
  log "job server jar already cached: $jar"
elif [[ -n "${BEAM_FLINK_JOB_SERVER_JAR:-}" ]]; then
  [[ -s "$BEAM_FLINK_JOB_SERVER_JAR" ]] || die "BEAM_FLINK_JOB_SERVER_JAR=$BEAM_FLINK_JOB_SERVER_JAR is not a file"
  cp "$BEAM_FLINK_JOB_SERVER_JAR" "$jar.partial" && mv "$jar.partial" "$jar"
  log "copied job server jar from $BEAM_FLINK_JOB_SERVER_JAR"
else
  command -v mvn >/dev/null || die "mvn not found (needed to fetch $artifact)"
  log "fetching $artifact from Maven Central (shaded jar, ~200 MB)"
  mvn_log="$FLINK_CACHE/log/mvn-job-server.log"
  # shellcheck disable=SC2086  # MAVEN_ARGS may hold several words (-s settings.xml)
  if mvn -B -U ${MAVEN_ARGS:-} \
      org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
      -Dartifact="$artifact" -DoutputDirectory="$FLINK_JAR_DIR" \
      -Dmdep.overWriteReleases=false >"$mvn_log" 2>&1; then
    log "fetched $jar"
  elif grep -qE "Could not (find|resolve) artifact|was not found in" "$mvn_log"; then
    status=3
    log "error: the Maven registry does not serve $artifact (log: $mvn_log)."
    log "  Beam Python and its job server must be the same version. Put the jar"
    log "  there yourself (BEAM_FLINK_JOB_SERVER_JAR=/path/to/jar $0), or point"
    log "  Maven at a mirror that has it (MAVEN_ARGS='-s settings.xml' $0)."
  else
    status=2
    log "error: could not reach the Maven registry (log: $mvn_log)"
    tail -5 "$mvn_log" >&2
  fi
fi

echo "FLINK_VERSION=$FLINK_VERSION"
echo "BEAM_VERSION=$BEAM_VERSION"
echo "FLINK_HOME=$FLINK_HOME"
echo "FLINK_CONF=$conf_file"
echo "FLINK_LOG_DIR=$FLINK_LOG_DIR"
echo "JOB_SERVER_JAR=$([[ -s "$jar" ]] && echo "$jar" || echo "MISSING:$jar")"
exit "$status"
