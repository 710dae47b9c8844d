"""Packaging for lama-cleaner (distributed edition).

Torch is optional: the cv2 model and the whole distributed system run without it. Install the
``[torch]`` extra for the LaMa model (``pip install -e .[torch]`` takes the CPU build pinned here).

The journal's SQL migrations live in the top-level ``migrations/`` folder (one source of truth) and
are installed as the package ``lama_cleaner.migrations``, so that a wheel carries them: without them
the distributed scheduler cannot open its journal.
"""

from pathlib import Path

from setuptools import find_namespace_packages, setup

HERE = Path(__file__).parent

setup(
    name="lama-cleaner",
    version="2.0.0.dev0",
    description="Lama Cleaner compatible inpainting server with a distributed ZeroMQ task backend",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # Namespace discovery: folders of static assets (server/static, a plugin's dashboard) are packages too.
    packages=[
        *find_namespace_packages(include=["lama_cleaner", "lama_cleaner.*"], exclude=["*.__pycache__"]),
        "lama_cleaner.migrations",
    ],
    package_dir={"lama_cleaner.migrations": "migrations"},
    include_package_data=True,
    package_data={"lama_cleaner": ["**/static/*", "**/static/**/*"], "lama_cleaner.migrations": ["*.sql"]},
    install_requires=[
        "flask>=2.3",
        "flask-cors>=4",
        "flask-socketio>=5.3",
        "simple-websocket>=1.0",
        "pluggy>=1.3",
        "pillow>=10",
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "pyzmq>=25",
        "orjson>=3.8",
        "marshmallow>=3.20",
        "apispec>=6",
        "requests>=2.31",
        "python-socketio[client]>=5.9",
        "piexif>=1.1",
        "tqdm>=4.66",
        # The built-in plugins: monitor (loguru, prometheus-client), autoscale and monitor jobs (apscheduler 3),
        # and the production web server (gunicorn's threaded worker, which Flask-SocketIO supports).
        "loguru>=0.7",
        "prometheus-client>=0.17",
        "apscheduler>=3.10,<4",
        "gunicorn>=21.2",
    ],
    extras_require={
        "torch": ["torch==2.13.0"],
        # Scaling providers of the autoscale plugin (each SDK only where that provider is used).
        "kubernetes": ["kubernetes>=28"],
        "aws": ["boto3>=1.28"],
        "aliyun": ["alibabacloud-fc20230330>=4"],
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.2",
            "playwright>=1.40",
            "openapi-spec-validator>=0.7",
            "schemathesis>=3.25",
            "ruff==0.17.6",  # pinned: scripts/test.sh fails on lint or format drift, which rule updates would move
            "hypothesis>=6.100",
            "kubernetes>=28",
            "boto3>=1.28",
            "alibabacloud-fc20230330>=4",
        ],
        "bench": ["celery>=5.3", "redis>=5"],
    },
    entry_points={"console_scripts": ["lama-cleaner=lama_cleaner.cli:entry_point"]},
)
