"""yuqing: a streaming public-opinion monitor on Apache Beam.

``pip install -e .[test]`` for development; ``--setup_file ./setup.py`` ships the
packages to Flink's Python workers, which need only ``install_requires``.
"""

import setuptools

REQUIRED = [
    # Beam's Python SDK must match the Flink job server jar (deploy/flink); the tests
    # run on exactly this release.
    "apache-beam>=2.77.0,<2.78",
    "datasketches>=5.2,<6",
    "jieba>=0.42.1,<0.43",
    "rjieba>=0.2.2,<0.3",
    "orjson>=3.10,<4",
    # Masking personal information: numbering plans and ID/card checksums.
    "phonenumbers>=8.13,<10",
    "polars>=1.30,<3",
    "pyarrow>=18,<26",
    "python-stdnum>=1.20,<3",
]

EXTRAS = {
    "test": [
        "pytest>=8,<10",
        "hypothesis>=6.100,<7",
        "psutil>=5.9,<8",
        "nbclient>=0.10,<0.12",
        "ipykernel>=6.29,<8",
        "matplotlib>=3.8,<4",
        # Noto Sans SC (SIL OFL) for Chinese chart labels: reports.fonts selects it.
        "pylopdf-fonts-zh-cn>=0.1.1,<0.2",
        "ruff>=0.6",
        # tests/test_object_store.py writes to a local S3 server.
        "apache-beam[aws]>=2.77.0,<2.78",
    ],
    # s3:// input and output through Beam's S3 filesystem (boto3).
    "s3": ["apache-beam[aws]>=2.77.0,<2.78"],
    "notebook": [
        "jupyterlab>=4,<5",
        "ipykernel>=6.29,<8",
        "matplotlib>=3.8,<4",
        "pylopdf-fonts-zh-cn>=0.1.1,<0.2",
    ],
    "report": ["matplotlib>=3.8,<4", "pylopdf-fonts-zh-cn>=0.1.1,<0.2"],
    "benchmark": ["psutil>=5.9,<8", "pyinstrument>=4.6,<6"],
}

setuptools.setup(
    name="yuqing",
    version="0.1.0",
    description="Streaming public-opinion volume, topics and bursts from social posts",
    python_requires=">=3.11,<3.14",
    packages=setuptools.find_packages(
        include=["pipelines*", "transforms*", "schemas*", "reports*", "sampledata*"]
    ),
    package_data={"transforms": ["resources/*"], "reports": ["fonts/*"]},
    install_requires=REQUIRED,
    extras_require=EXTRAS,
)
