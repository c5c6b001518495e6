"""Finding and loading MusicGen weights, processor and an optional LoRA adapter.

Nothing here touches the network unless the caller opts in (``allow_download=True``): weights
are looked up in the Hugging Face cache or a local folder, so a bedside machine without a
connection fails fast with a message that says what to fetch, instead of hanging.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musicmed_stream.errors import ConfigError, MusicMedError, WeightsNotFoundError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "facebook/musicgen-small"
ADAPTER_META = "musicmed_adapter.json"
INSTALL_HINT = "pip install 'musicmed-stream[musicgen]'"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")


class MissingDependencyError(MusicMedError, ImportError):
    """torch / transformers / peft are not installed."""


def missing_libraries(with_peft: bool = False) -> list[str]:
    """Names of the libraries MusicGen needs that do not import here (without importing them)."""
    names = ["torch", "transformers"] + (["peft"] if with_peft else [])
    return [name for name in names if importlib.util.find_spec(name) is None]


def require_libraries(with_peft: bool = False) -> None:
    """Raise :class:`MissingDependencyError` naming the install command if a library is missing."""
    missing = missing_libraries(with_peft)
    if missing:
        raise MissingDependencyError(f"MusicGen needs {', '.join(missing)}; install with: {INSTALL_HINT}")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def resolve_model_dir(model: str, allow_download: bool = False) -> Path:
    """Return the local folder holding ``model`` (a folder path or a Hugging Face model id).

    Parameters
    ----------
    model : str
        A local folder with ``config.json`` and weights, or a model id such as
        ``facebook/musicgen-small`` looked up in the Hugging Face cache.
    allow_download : bool
        Fetch a missing model id from the Hub (ignored when ``HF_HUB_OFFLINE`` is set).

    Raises
    ------
    WeightsNotFoundError
        The folder or the cached snapshot lacks the config or weights; the message says how to get them.
    """
    path = Path(model).expanduser()
    if path.exists() or not _looks_like_repo_id(model):
        return _check_folder(path, model)
    require_libraries()
    from huggingface_hub import snapshot_download

    download = allow_download and not _offline()
    try:
        folder = Path(snapshot_download(model, local_files_only=not download))
    except Exception as exc:  # the hub raises several unrelated types for "not cached"
        raise WeightsNotFoundError(_fetch_hint(model, f"{model!r} is not in the Hugging Face cache")) from exc
    return _check_folder(folder, model)


def _looks_like_repo_id(model: str) -> bool:
    return re.fullmatch(r"[\w.-]+/[\w.-]+", model) is not None and not model.startswith((".", "~"))


def _check_folder(folder: Path, model: str) -> Path:
    if not folder.is_dir():
        raise WeightsNotFoundError(_fetch_hint(model, f"model folder {folder} does not exist"))
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES[::2]))
    if not any((folder / name).is_file() for name in ("tokenizer.json", "spiece.model")):
        missing.append("tokenizer.json")
    if missing:
        raise WeightsNotFoundError(_fetch_hint(model, f"{folder} lacks {', '.join(missing)}"))
    return folder


def _fetch_hint(model: str, what: str) -> str:
    # A Hub id is "owner/name"; anything that looks like a filesystem path gets the default id.
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") != 1
    repo = DEFAULT_MODEL if looks_like_path or Path(model).expanduser().exists() else model
    return (
        f"MusicGen weights not found: {what}; fetch them with `hf download {repo}` "
        f"(or `huggingface-cli download {repo}`), or point --model at a folder saved with save_pretrained"
    )


@dataclass(frozen=True)
class AdapterInfo:
    """What a LoRA adapter folder says about its training, from ``musicmed_adapter.json``.

    Attributes
    ----------
    path : Path
        The adapter folder.
    base_model : str
        The model the adapter was trained on.
    tag_mapping : dict
        The tag mapping used to build the training prompts, in the format of
        ``musicmed_stream.emotion`` mapping files (``{"source", "tags": {tag: {"kind", "emotion"}}}``).
    label_stats : dict
        Counts in the training split: ``tracks`` and ``emotions`` per mood/emotion, and
        ``instruments`` / ``genres`` as ``{mood: {tag: count}}``.
    prompt_format : str
        The prompt template (``"mood, emotion, instrument, genre"``).
    """

    path: Path
    base_model: str = ""
    tag_mapping: dict[str, Any] = field(default_factory=dict)
    label_stats: dict[str, Any] = field(default_factory=dict)
    prompt_format: str = "mood, emotion, instrument, genre"
    extra: dict[str, Any] = field(default_factory=dict)

    def mapping(self) -> Any:
        """The training tag mapping as a ``TagMapping`` (the built-in one if none was stored)."""
        from musicmed_stream.emotion import load_tag_mapping, load_vocabulary, parse_tag_mapping

        if not self.tag_mapping:
            return load_tag_mapping()
        return parse_tag_mapping(self.tag_mapping, str(self.path / ADAPTER_META), load_vocabulary())

    def statistics(self) -> Any:
        """The training label statistics as the planner's ``TagStatistics`` (``None`` if absent)."""
        from musicmed_stream.planner.statistics import TagStatistics

        stats = self.label_stats
        if not stats.get("instruments") and not stats.get("genres"):
            return None
        return TagStatistics(
            instruments={k: dict(v) for k, v in stats.get("instruments", {}).items()},
            genres={k: dict(v) for k, v in stats.get("genres", {}).items()},
            tracks=dict(stats.get("tracks", {})),
            source=f"adapter {self.path}",
        )


def load_adapter_info(folder: str | os.PathLike[str]) -> AdapterInfo:
    """Read and validate an adapter folder's ``musicmed_adapter.json`` and ``adapter_config.json``.

    Raises
    ------
    WeightsNotFoundError
        If the folder or its PEFT files are missing.
    ConfigError
        If ``musicmed_adapter.json`` is malformed.
    """
    folder = Path(folder).expanduser()
    if not (folder / "adapter_config.json").is_file():
        raise WeightsNotFoundError(
            f"LoRA adapter folder {folder} lacks adapter_config.json; "
            "pass the --out folder of `musicmed-stream finetune`"
        )
    meta_path = folder / ADAPTER_META
    if not meta_path.is_file():
        log.warning("adapter %s has no %s: tag mapping and label statistics unknown", folder, ADAPTER_META)
        return AdapterInfo(path=folder)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {meta_path}: {exc}") from exc
    if not isinstance(meta, dict):
        raise ConfigError(f"{meta_path} must hold a JSON object")
    mapping = meta.get("tag_mapping", {})
    stats = meta.get("label_stats", {})
    if not isinstance(mapping, dict) or not isinstance(stats, dict):
        raise ConfigError(f"{meta_path}: tag_mapping and label_stats must be objects")
    for key in ("instruments", "genres"):
        if not isinstance(stats.get(key, {}), dict):
            raise ConfigError(f"{meta_path}: label_stats.{key} must be an object of mood -> counts")
    known = {"base_model", "tag_mapping", "label_stats", "prompt_format"}
    info = AdapterInfo(
        path=folder,
        base_model=str(meta.get("base_model", "")),
        tag_mapping=mapping,
        label_stats=stats,
        prompt_format=str(meta.get("prompt_format", "mood, emotion, instrument, genre")),
        extra={k: v for k, v in meta.items() if k not in known},
    )
    if mapping:
        info.mapping()  # validates against the emotion vocabulary (MappingError, a ConfigError)
    return info


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` if available, else ``mps``, else ``cpu``; other names are checked."""
    if device not in DEVICES and not device.startswith("cuda:"):
        raise ConfigError(f"musicgen device {device!r}: choose one of {', '.join(DEVICES)} (or cuda:N)")
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"musicgen device {device!r}: CUDA is not available on this machine")
    return device


def resolve_dtype(dtype: str, device: str) -> Any:
    """``auto`` -> bfloat16 on CUDA with bf16 support, float16 on other GPUs, float32 on CPU."""
    if dtype not in DTYPES:
        raise ConfigError(f"musicgen dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def musicgen_unavailable_reason(
    model: str = DEFAULT_MODEL,
    adapter: str | None = None,
    device: str = "auto",
    require_gpu: bool = False,
    allow_download: bool = False,
    **_other: Any,
) -> str | None:
    """Why MusicGen cannot serve with these options, or ``None`` if it can.

    Cheap: checks imports, local files and the device without loading any weights.
    """
    adapter = adapter or None
    missing = missing_libraries(with_peft=adapter is not None)
    if missing:
        return f"{', '.join(missing)} not installed ({INSTALL_HINT})"
    try:
        resolve_model_dir(model, allow_download=allow_download)
        if adapter is not None:
            load_adapter_info(adapter)
        resolved = resolve_device(device)
    except MusicMedError as exc:
        return str(exc)
    if require_gpu and resolved == "cpu":
        return "no GPU found and require_gpu is set"
    return None


@dataclass
class LoadedMusicgen:
    """A MusicGen model ready to generate, with its processor and where it came from."""

    model: Any
    processor: Any
    device: str
    dtype: Any
    folder: Path
    adapter: AdapterInfo | None = None

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.audio_encoder.sampling_rate)

    @property
    def frame_rate(self) -> int:
        return int(self.model.config.audio_encoder.frame_rate)

    @property
    def num_codebooks(self) -> int:
        return int(self.model.decoder.num_codebooks)

    @property
    def max_positions(self) -> int:
        return int(self.model.config.decoder.max_position_embeddings)


def load_musicgen(
    model: str = DEFAULT_MODEL,
    adapter: str | os.PathLike[str] | None = None,
    device: str = "auto",
    dtype: str = "auto",
    allow_download: bool = False,
    merge_adapter: bool = True,
) -> LoadedMusicgen:
    """Load MusicGen (+ processor, + optional LoRA adapter on the decoder) for inference.

    The text encoder and decoder run in ``dtype`` (half precision on a GPU by default); EnCodec
    stays in float32, where its LSTM and convolutions are cheap and exact enough to matter for
    the audio prompt's codes. ``merge_adapter=False`` keeps the LoRA layers separate (exactly the
    trained computation, slightly slower).
    """
    require_libraries(with_peft=adapter is not None)
    folder = resolve_model_dir(model, allow_download=allow_download)
    adapter_info = load_adapter_info(adapter) if adapter is not None else None
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)

    from transformers import AutoProcessor, MusicgenForConditionalGeneration
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        net = MusicgenForConditionalGeneration.from_pretrained(folder, local_files_only=True)
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    except OSError as exc:
        raise WeightsNotFoundError(_fetch_hint(model, f"cannot load {folder}: {exc}")) from exc
    if adapter_info is not None:
        from peft import PeftModel

        net.decoder = PeftModel.from_pretrained(net.decoder, str(adapter_info.path), is_trainable=False)
        if merge_adapter:
            # Merged LoRA weights generate like the adapter (to rounding) and cost nothing per step.
            net.decoder = net.decoder.merge_and_unload()
    net.eval().to(device)
    net.text_encoder.to(torch_dtype)
    net.decoder.to(torch_dtype)
    if getattr(net, "enc_to_dec_proj", None) is not None:
        net.enc_to_dec_proj.to(torch_dtype)
    return LoadedMusicgen(net, processor, device, torch_dtype, folder, adapter_info)
