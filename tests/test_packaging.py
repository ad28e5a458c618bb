"""The built wheel holds what an installed Sanad reads outside a checkout: the seed articles and the
LLM prompts (the repository's top-level ``seeds/`` and ``prompts/``, shipped as ``rag/seeds`` and
``rag/prompts``), the reader's weights, the chat's assets and the eval's data; and the installed
package finds its seeds and prompts inside itself, through `importlib.resources`.

The wheel is built offline from a copy of the checkout (setuptools leaves a ``build/`` folder behind).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rag.config import REPO_ROOT

LEFT_OUT = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                  "out", "bench", "tests", "docs", ".sanad")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    shutil.copytree(REPO_ROOT, work / "source", ignore=LEFT_OUT)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(work / "dist"), str(work / "source")], check=True, capture_output=True, timeout=300)
    (built,) = (work / "dist").glob("sanad-*.whl")
    return built


def test_the_wheel_holds_the_seed_articles_and_the_prompts(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    seeds = sorted(path.name for path in (REPO_ROOT / "seeds").iterdir() if path.is_file())
    prompts = sorted(path.name for path in (REPO_ROOT / "prompts").glob("*.txt"))
    assert seeds and prompts
    assert [f"rag/seeds/{name}" for name in seeds if f"rag/seeds/{name}" not in names] == []
    assert [f"rag/prompts/{name}" for name in prompts if f"rag/prompts/{name}" not in names] == []
    assert {"rag/reader_model/reader.json", "rag/reader_model/reader.safetensors", "ui/style.css",
            "eval/datasets/seeds_qa.jsonl"} <= names


def test_the_installed_package_finds_its_seeds_and_prompts_inside_itself(wheel, tmp_path):
    installed = tmp_path / "site-packages"  # the wheel unpacked, as pip installs it; no checkout beside it
    zipfile.ZipFile(wheel).extractall(installed)
    code = ("from rag.config import DEFAULT_CORPUS; from rag.llm import PROMPTS, prompt; "
            "print(DEFAULT_CORPUS); print(PROMPTS); assert prompt('system_ar') and prompt('user_en')")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(installed)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(installed / "rag" / "seeds"), str(installed / "rag" / "prompts")]
