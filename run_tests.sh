#!/usr/bin/env bash
# Set up and run the whole test suite, as CI does (.ci/run calls exactly this):
# the linter and the formatter's check first, then pytest.
#
#   ./run_tests.sh                 # everything
#   ./run_tests.sh -k privacy      # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")"
# The object-store tests need SeaweedFS, built from Go sources once (many minutes
# cold): the build starts now, in the background, and the tests wait for it.
deploy/seaweedfs/build.sh --background
scripts/bootstrap.sh test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
