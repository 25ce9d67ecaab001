# The image of the Beam worker-pool sidecar of each TaskManager pod and of the
# submitter Jobs (flinkdeployment.yaml, batch-job.yaml).
#
#   docker build -f deploy/flink/worker.Dockerfile -t registry.example.com/yuqing/beam-worker:0.1.0 .
#
# Beam's SDK image runs `--worker_pool` through its boot executable, which fetches
# each job's staged artifacts and pip-installs them (the --setup_file sdist) before
# the harness starts. Installing the project here too means that install finds every
# requirement already present: no PyPI access from the pods, fast worker start.
# The source stays in /opt/yuqing for the submitters: deploy/portable.py stages
# /opt/yuqing/setup.py with each job.
FROM apache/beam_python3.11_sdk:2.77.0
COPY setup.py pyproject.toml /opt/yuqing/
COPY pipelines /opt/yuqing/pipelines
COPY transforms /opt/yuqing/transforms
COPY schemas /opt/yuqing/schemas
COPY reports /opt/yuqing/reports
COPY sampledata /opt/yuqing/sampledata
COPY deploy/portable.py /opt/yuqing/deploy/portable.py
RUN pip install --no-cache-dir /opt/yuqing
# The base image's ENTRYPOINT is /opt/apache/beam/boot; the sidecar passes
# --worker_pool, the submitters replace the command with python.
