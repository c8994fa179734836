"""recpipe: a Spark + Delta Lake + Horovod batch recommendation pipeline."""

from setuptools import find_namespace_packages, setup

setup(
    name="recpipe",
    version="0.1.0",
    description="Batch recommendation pipeline on Spark, Delta Lake and Horovod",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.12",
    package_dir={"": "libs"},
    # Namespace-aware discovery: a sub-package that lacks an __init__.py must still ship
    # (an empty wheel was caught by tests/integration/test_packaging.py).
    packages=find_namespace_packages("libs", include=["recpipe", "recpipe.*"], exclude=["*.__pycache__"]),
    include_package_data=True,
    package_data={
        "recpipe": ["py.typed", "log4j2.properties"],
        # the synthetic generator's word lists (recpipe.datasets.synthetic.common.load_words)
        "recpipe.datasets.synthetic": ["words/*.json", "words/*.txt"],
    },
    install_requires=[
        "pyspark>=4.0,<4.3",
        "delta-spark>=4.0,<4.5",
        "deltalake>=1.6,<1.7",
        "pyarrow==18.1.0",
        "numpy<2",
        "pandas>=2.2,<3",
        "pyyaml>=6",
        "great-expectations>=1.24,<1.25",
        # The stages' HTML reports (recpipe.reports) embed matplotlib figures.
        "matplotlib>=3.8",
    ],
    extras_require={
        # Horovod must be built against the installed TensorFlow: see `make setup` / stack.md.
        # MLflow experiment tracking (recpipe.model.tracking): the skinny client, plus SQLAlchemy and
        # alembic for its SQLite store (the embedded default). protobuf<5 is TensorFlow 2.17's bound,
        # spelled out for installs next to an installed TensorFlow (pip does not weigh its bound and
        # would take the newest opentelemetry-proto, and protobuf 7 with it).
        "train": [
            "tensorflow-cpu==2.17.1",
            "tf-keras==2.17.0",
            "horovod==0.28.1",
            "mlflow-skinny==3.18.0",
            "sqlalchemy>=2.0,<2.2",
            "alembic>=1.13,<2",
            "protobuf>=3.20.3,<5",
        ],
        "eval": ["scikit-learn>=1.4"],
        "dev": [
            "pytest>=8",
            "ruff>=0.6",
            # The type checker of `make lint` (pyproject.toml [tool.mypy]); pinned: a new mypy
            # finds new errors, so it is upgraded on purpose, with the fixes.
            "mypy==2.4.1",
            "nbformat>=5",
            "nbclient>=0.10",
            "ipykernel>=6",
            "psutil>=5",
            "venv-pack>=0.2",
        ],
    },
    entry_points={"console_scripts": ["recpipe=recpipe.cli:main"]},
)
