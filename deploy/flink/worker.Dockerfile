# The Beam worker-pool sidecar of each TaskManager pod (flinkdeployment.yaml).
#
#   docker build -f deploy/flink/worker.Dockerfile -t registry.example.com/yuqing/beam-worker:0.1.0 .
#
# Beam's SDK image runs `--worker_pool` through its boot executable, which fetches
# each job's staged artifacts and pip-installs them (the --setup_file sdist) before
# the harness starts. Installing the project here too means that install finds every
# requirement already present: no PyPI access from the pods, fast worker start.
FROM apache/beam_python3.11_sdk:2.77.0
COPY setup.py pyproject.toml /opt/yuqing/
COPY pipelines /opt/yuqing/pipelines
COPY transforms /opt/yuqing/transforms
COPY schemas /opt/yuqing/schemas
COPY reports /opt/yuqing/reports
COPY sampledata /opt/yuqing/sampledata
RUN pip install --no-cache-dir /opt/yuqing && rm -rf /opt/yuqing
# The base image's ENTRYPOINT is /opt/apache/beam/boot; the pod passes --worker_pool.
