"""Beam's external SDK worker pool, bound to one address (loopback by default).

Same servicer as ``python -m apache_beam.runners.worker.worker_pool_main
--service_port=50000`` (what the Beam SDK container runs with ``--worker_pool``), but
that module listens on every interface, and whoever reaches the port can make it run
code. Locally we keep it on loopback beside the TaskManager:

    python deploy/flink/worker_pool.py --bind localhost:50000

Each StartWorker request from a TaskManager forks ``python -c "...SdkHarness(...)"``:
``python`` is looked up on PATH, so PATH must start with the project venv's bin/, and
the harness imports pipeline code from PYTHONPATH/cwd (it does not install staged
``--setup_file`` packages; the SDK container's boot executable does, see README.md).
"""

import argparse
import logging
import signal
import sys

import grpc
from apache_beam.portability.api import beam_fn_api_pb2_grpc
from apache_beam.runners.worker.worker_pool_main import (
    BeamFnExternalWorkerPoolServicer,
    kill_process_gracefully,
)
from apache_beam.utils import thread_pool_executor


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="localhost:50000", help="host:port")
    parser.add_argument(
        "--container_executable",
        help="Beam container boot executable, to retrieve and install staged "
        "artifacts before each worker starts (as the SDK image does).",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )

    pool = BeamFnExternalWorkerPoolServicer(
        use_process=True, container_executable=args.container_executable
    )
    server = grpc.server(
        thread_pool_executor.shared_unbounded_instance(),
        options=[
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.http2.max_ping_strikes", 0),
        ],
    )
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(pool, server)
    try:
        port = server.add_insecure_port(args.bind)
    except RuntimeError as err:  # grpc raises on a taken port
        sys.exit(f"worker pool: cannot bind {args.bind}: {err}")
    if not port:
        sys.exit(f"worker pool: cannot bind {args.bind}")
    server.start()
    logging.info("Beam worker pool listening on %s", args.bind)

    def shutdown(signum, _frame):
        logging.info(
            "signal %s: stopping %d SDK worker(s)", signum, len(pool._worker_processes)
        )
        server.stop(grace=2)
        for process in list(pool._worker_processes.values()):
            kill_process_gracefully(process)
        sys.exit(0)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
