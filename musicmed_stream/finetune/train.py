"""LoRA fine-tuning of the MusicGen decoder on MTG-Jamendo mood/theme tracks (peft + accelerate).

The method's recipe: LoRA on the decoder's attention projections (optionally its feed-forward
layers), prompts in the generation format, 30-s crops, EnCodec codes cached once, text dropout
so classifier-free guidance keeps working (a dropped prompt is the same null condition that
generation's guidance uses: zero text states, fully masked), AdamW with linear decay, 2 epochs
at a learning rate of 7e-6 by default.

The loop is a plain accelerate loop: mixed precision and several GPUs come from ``accelerate``
(``accelerate launch -m musicmed_stream.cli.main finetune ...``), checkpoints are
``accelerator.save_state`` folders (weights, optimizer, scheduler, RNG) plus the position in the
data, so an interrupted run resumes exactly where it stopped.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from musicmed_stream.audio_io import write_text_atomic
from musicmed_stream.emotion import TagMapping, load_tag_mapping
from musicmed_stream.engines.musicgen.loading import ADAPTER_META, require_libraries, resolve_model_dir
from musicmed_stream.errors import ConfigError
from musicmed_stream.finetune.data import (
    Example,
    SkipCounts,
    encode_examples,
    format_prompt,
    label_statistics,
    read_split,
)

log = logging.getLogger(__name__)

ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj")
FFN_MODULES = ("fc1", "fc2")
PRECISIONS = ("no", "fp16", "bf16")
STATE_FILE = "trainer_state.json"
LOG_FIELDS = ("step", "epoch", "loss", "lr", "seconds")


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything a fine-tuning run depends on (saved with the adapter).

    Attributes
    ----------
    jamendo : Path
        MTG-Jamendo metadata folder (TSVs, ``splits/``).
    audio : Path
        Folder of the audio files, laid out as the TSVs' ``PATH`` column (``48/948.mp3``).
    model : str
        Base MusicGen: model id in the Hugging Face cache or a local folder.
    out : Path
        Adapter output folder (also holds checkpoints, logs and the code cache).
    """

    jamendo: Path
    audio: Path
    model: str
    out: Path
    split: int = 0
    epochs: int = 2
    learning_rate: float = 7e-6
    batch_size: int = 4
    grad_accum: int = 1
    crop_seconds: float = 30.0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    ffn: bool = False
    text_dropout: float = 0.1
    warmup_steps: int = 0
    weight_decay: float = 0.0
    seed: int = 0
    mixed_precision: str = "no"
    checkpoint_every: int = 500
    validate_every: int = 0
    max_steps: int | None = None
    max_tracks: int | None = None
    validation_tags: tuple[str, ...] = ("calm", "happy", "sad", "energetic")
    validation_seconds: float = 5.0
    mapping: Path | None = None
    cache_dir: Path | None = None
    allow_download: bool = False
    cpu: bool = False
    resume: bool = True

    def validate(self) -> FinetuneConfig:
        """Raise ``ConfigError`` naming the first invalid option."""
        checks = {
            "epochs": self.epochs >= 1,
            "learning_rate": self.learning_rate > 0,
            "batch_size": self.batch_size >= 1,
            "grad_accum": self.grad_accum >= 1,
            "crop_seconds": self.crop_seconds > 0,
            "lora_r": self.lora_r >= 1,
            "lora_alpha": self.lora_alpha > 0,
            "lora_dropout": 0 <= self.lora_dropout < 1,
            "text_dropout": 0 <= self.text_dropout < 1,
            "warmup_steps": self.warmup_steps >= 0,
            "checkpoint_every": self.checkpoint_every >= 0,
            "validate_every": self.validate_every >= 0,
            "max_steps": self.max_steps is None or self.max_steps >= 1,
            "max_tracks": self.max_tracks is None or self.max_tracks >= 1,
            "split": self.split >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"finetune {name}={getattr(self, name)!r} is out of range")
        if self.mixed_precision not in PRECISIONS:
            raise ConfigError(f"finetune mixed_precision must be one of {', '.join(PRECISIONS)}")
        for name in ("jamendo", "audio"):
            if not Path(getattr(self, name)).is_dir():
                raise ConfigError(f"finetune --{name} folder {getattr(self, name)} does not exist")
        return self

    @property
    def target_modules(self) -> list[str]:
        return list(ATTENTION_MODULES + (FFN_MODULES if self.ffn else ()))


@dataclass
class FinetuneResult:
    """What a run did."""

    adapter_dir: Path
    steps: int
    examples: int
    skipped: dict[str, int]
    initial_loss: float
    final_loss: float
    history: list[dict[str, float]] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int = 0


# -- batches -----------------------------------------------------------------------------


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled example indices for one epoch, in batches (same for the same seed and epoch)."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i : i + batch_size].tolist() for i in range(0, n, batch_size)]


def delayed_codes(net: Any, codes: Any) -> Any:
    """The delay-pattern sequence ``(B*K, frames+K)`` of codes ``(B, K, frames)``, start token first."""
    import torch

    b, k, frames = codes.shape
    pad = int(net.generation_config.decoder_start_token_id)
    ids = torch.cat([torch.full((b, k, 1), pad, dtype=torch.long, device=codes.device), codes.long()], dim=2)
    # With every code known the pattern mask *is* the delayed sequence (pad where delayed).
    _, pattern = net.decoder.build_delay_pattern_mask(ids.reshape(b * k, -1), pad, max_length=frames + k)
    return pattern


def make_batch(
    net: Any,
    tokenizer: Any,
    examples: list[Example],
    text_dropout: float,
    rng: np.random.Generator,
    device: Any,
) -> dict[str, Any]:
    """Model inputs with labels for a list of examples (codes cut to the shortest)."""
    import torch

    frames = min(e.codes.shape[1] for e in examples)
    codes = torch.from_numpy(np.stack([e.codes[:, :frames] for e in examples]).astype(np.int64)).to(device)
    text = tokenizer([format_prompt(*e.parts) for e in examples], padding=True, return_tensors="pt")
    mask = text["attention_mask"].clone()
    drop = torch.from_numpy(rng.random(len(examples)) < text_dropout)
    mask[drop] = 0  # the null condition of classifier-free guidance
    seq = delayed_codes(net, codes)
    b, k = codes.shape[:2]
    labels = seq[:, 1:].reshape(b, k, -1).transpose(1, 2)  # (B, steps, K); pads are ignored by the loss
    return {
        "input_ids": text["input_ids"].to(device),
        "attention_mask": mask.to(device),
        "decoder_input_ids": seq[:, :-1],
        "labels": labels,
    }


def dataset_loss(net: Any, tokenizer: Any, examples: list[Example], batch_size: int, device: Any) -> float:
    """Mean loss over all examples without dropout (model in eval mode, restored afterwards)."""
    import torch

    was_training = net.training
    net.eval()
    losses, weights = [], []
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            chunk = examples[i : i + batch_size]
            out = net(**make_batch(net, tokenizer, chunk, 0.0, rng, device))
            losses.append(float(out.loss))
            weights.append(len(chunk))
    net.train(was_training)
    return float(np.average(losses, weights=weights))


# -- setup ---------------------------------------------------------------------------------


def _load_base(cfg: FinetuneConfig) -> tuple[Any, Any, Path]:
    from transformers import AutoProcessor, MusicgenForConditionalGeneration
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder = resolve_model_dir(cfg.model, allow_download=cfg.allow_download)
    net = MusicgenForConditionalGeneration.from_pretrained(folder, local_files_only=True)
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    return net, processor, folder


def _add_lora(net: Any, cfg: FinetuneConfig) -> None:
    from peft import LoraConfig, get_peft_model

    for part in (net.text_encoder, net.audio_encoder, net.decoder):
        part.requires_grad_(False)
    if getattr(net, "enc_to_dec_proj", None) is not None:
        net.enc_to_dec_proj.requires_grad_(False)
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        bias="none",
    )
    net.decoder = get_peft_model(net.decoder, lora)


def _encoder(net: Any, device: Any):
    import torch

    def encode(crop: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            values = torch.from_numpy(crop)[None, None].to(device)
            return net.audio_encoder.encode(values).audio_codes[0, 0].cpu().numpy()

    return encode


def _latest_checkpoint(folder: Path) -> Path | None:
    found = sorted(p for p in folder.glob("step-*") if (p / STATE_FILE).is_file())
    return found[-1] if found else None


def save_adapter(
    net: Any, cfg: FinetuneConfig, mapping: TagMapping, stats: dict[str, Any], extra: dict[str, Any]
) -> Path:
    """Write the LoRA weights, ``musicmed_adapter.json`` and ``tag_mapping.json`` to ``cfg.out``."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    net.decoder.save_pretrained(out)
    meta = {
        "base_model": cfg.model,
        "prompt_format": "mood, emotion, instrument, genre",
        "tag_mapping": mapping.to_dict(),
        "label_stats": stats,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
    } | extra
    write_text_atomic(out / ADAPTER_META, json.dumps(meta, indent=2))
    write_text_atomic(out / "tag_mapping.json", json.dumps(mapping.to_dict(), indent=2))
    return out


# -- validation ----------------------------------------------------------------------------


def validation_pass(
    net: Any,
    processor: Any,
    mapping: TagMapping,
    stats: dict[str, Any],
    tags: tuple[str, ...],
    seconds: float,
    seed: int,
) -> dict[str, Any] | None:
    """Generate a short clip per validation mood tag and score it with the evaluation module.

    Returns ``None`` (after a log line) when the evaluation module or its models are missing.
    """
    try:
        from musicmed_stream.evaluation.backends import features_tag_scores
        from musicmed_stream.evaluation.features import estimate_va, extract_features
        from musicmed_stream.evaluation.recognition import auprc_macro, hamming_score, one_hot, predict
    except ImportError as exc:
        log.info("validation scoring skipped: evaluation module unavailable (%s)", exc)
        return None
    import torch

    tags = tuple(t for t in tags if (e := mapping.get(t)) is not None and e.emotion is not None)
    if not tags:
        log.info("validation scoring skipped: no validation tag is a mood tag of the mapping")
        return None
    prompts = []
    for tag in tags:
        instruments = stats.get("instruments", {}).get(tag, {})
        genres = stats.get("genres", {}).get(tag, {})
        emotion = mapping.get(tag).emotion.name  # type: ignore[union-attr]
        prompts.append(format_prompt(tag, emotion, next(iter(instruments), ""), next(iter(genres), "")))
    rate = int(net.config.audio_encoder.frame_rate)
    was_training = net.training
    net.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            inputs = processor(text=prompts, padding=True, return_tensors="pt").to(net.device)
            audio = net.generate(
                **inputs, do_sample=True, guidance_scale=3.0, max_new_tokens=int(seconds * rate)
            )
        sample_rate = int(net.config.audio_encoder.sampling_rate)
        clips = [a[0].float().cpu().numpy() for a in audio]
        points = [estimate_va(extract_features(c, sample_rate)) for c in clips]
    except ImportError as exc:
        log.info("validation scoring skipped: %s", exc)
        return None
    finally:
        net.train(was_training)
    scores = features_tag_scores(points, {t: mapping.va(t) for t in tags})
    truth = one_hot(list(tags), list(tags))
    return {
        "auprc": auprc_macro(truth, scores),
        "hamming": hamming_score(truth, predict(scores)),
        "va": {t: [p.valence, p.arousal] for t, p in zip(tags, points, strict=True)},
    }


# -- the run -------------------------------------------------------------------------------


def finetune(
    cfg: FinetuneConfig, on_step: Callable[[dict[str, float]], None] | None = None
) -> FinetuneResult:
    """Fine-tune LoRA adapters on the MusicGen decoder; see the module docstring.

    ``on_step`` is called with each logged row (step, epoch, loss, lr, seconds) after the step's
    checkpoint is written, e.g. for progress display.

    Raises
    ------
    ConfigError
        For invalid options, missing split files, or no usable training audio at all.
    WeightsNotFoundError
        If the base model is not on this machine.
    """
    cfg.validate()
    require_libraries(with_peft=True)
    import torch
    from accelerate import Accelerator
    from transformers import get_linear_schedule_with_warmup

    mapping = load_tag_mapping(cfg.mapping) if cfg.mapping else load_tag_mapping()
    tracks = read_split(cfg.jamendo, cfg.split, "train")
    if cfg.max_tracks:
        tracks = tracks[: cfg.max_tracks]
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum, cpu=cfg.cpu
    )
    net, processor, _ = _load_base(cfg)
    net.audio_encoder.to(accelerator.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    examples, skipped = encode_examples(
        tracks,
        cfg.audio,
        mapping,
        _encoder(net, accelerator.device),
        int(net.config.audio_encoder.sampling_rate),
        cfg.cache_dir or out / "code_cache",
        cfg.model,
        seed=cfg.seed,
        seconds=cfg.crop_seconds,
    )
    if not examples:
        raise ConfigError(
            f"no usable training audio among {len(tracks)} tracks in {cfg.audio} "
            f"(skipped: {skipped.to_dict()})"
        )
    stats = label_statistics([e.track for e in examples], mapping)
    torch.manual_seed(cfg.seed)
    _add_lora(net, cfg)
    net.to(accelerator.device)
    batches_per_epoch = math.ceil(len(examples) / cfg.batch_size / accelerator.num_processes)
    total_steps = cfg.epochs * math.ceil(batches_per_epoch / cfg.grad_accum)
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, cfg.warmup_steps, total_steps)
    net, optimizer, scheduler = accelerator.prepare(net, optimizer, scheduler)
    model = accelerator.unwrap_model(net)
    tokenizer = processor.tokenizer
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    accelerator.register_save_state_pre_hook(_keep_trainable(trainable))

    step, start_epoch, start_batch = 0, 0, 0
    checkpoints = out / "checkpoints"
    latest = _latest_checkpoint(checkpoints) if cfg.resume else None
    if latest is not None:
        accelerator.load_state(str(latest), strict=False)
        state = json.loads((latest / STATE_FILE).read_text(encoding="utf-8"))
        step, start_epoch, start_batch = state["step"], state["epoch"], state["batch"]
        log.info("resuming from %s (step %d)", latest, step)
    resumed_from = step

    initial_loss = dataset_loss(model, tokenizer, examples, cfg.batch_size, accelerator.device)
    writer = _tensorboard(out / "tensorboard") if accelerator.is_main_process else None
    log_path = out / "train_log.csv"
    history: list[dict[str, float]] = []
    validation: list[dict[str, Any]] = []
    began = time.perf_counter()
    net.train()
    done = step >= total_steps
    for epoch in range(start_epoch, cfg.epochs):
        if done:
            break
        batches = epoch_batches(len(examples), cfg.batch_size, cfg.seed, epoch)
        batches = batches[accelerator.process_index :: accelerator.num_processes]
        for b, indices in enumerate(batches):
            if epoch == start_epoch and b < start_batch:
                continue
            # Text dropout drawn from (seed, epoch, batch): the same after a resume.
            rng = np.random.default_rng([cfg.seed, epoch, b, accelerator.process_index])
            with accelerator.accumulate(net):
                chosen = [examples[i] for i in indices]
                batch = make_batch(model, tokenizer, chosen, cfg.text_dropout, rng, accelerator.device)
                loss = net(**batch).loss
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            step += 1
            row = {
                "step": step,
                "epoch": epoch,
                "loss": float(accelerator.gather(loss.detach()[None]).mean()),
                "lr": float(scheduler.get_last_lr()[0]),
                "seconds": round(time.perf_counter() - began, 3),
            }
            history.append(row)
            if accelerator.is_main_process:
                _log_row(log_path, row, writer)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                _checkpoint(accelerator, checkpoints, step, epoch, b + 1)
            if cfg.validate_every and step % cfg.validate_every == 0 and accelerator.is_main_process:
                scores = validation_pass(
                    model, processor, mapping, stats, cfg.validation_tags, cfg.validation_seconds, cfg.seed
                )
                if scores is not None:
                    validation.append({"step": step} | scores)
                    _log_validation(step, scores, writer)
            if on_step is not None:
                on_step(row)
            if step >= total_steps:
                done = True
                break
    final_loss = dataset_loss(model, tokenizer, examples, cfg.batch_size, accelerator.device)
    accelerator.wait_for_everyone()
    if writer is not None:
        writer.close()
    if accelerator.is_main_process:
        save_adapter(
            model,
            cfg,
            mapping,
            stats,
            {
                "skipped": skipped.to_dict(),
                "steps": step,
                "initial_loss": initial_loss,
                "final_loss": final_loss,
            },
        )
    return FinetuneResult(
        out,
        step,
        len(examples),
        skipped.to_dict(),
        initial_loss,
        final_loss,
        history,
        validation,
        resumed_from,
    )


def _tensorboard(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        log.info("TensorBoard logging skipped: %s", exc)
        return None
    return SummaryWriter(str(folder))


def _log_row(path: Path, row: dict[str, float], writer: Any) -> None:
    new = not path.is_file()
    with path.open("a", newline="", encoding="utf-8") as handle:
        out = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
        if new:
            out.writeheader()
        out.writerow(row)
    if writer is not None:
        writer.add_scalar("train/loss", row["loss"], row["step"])
        writer.add_scalar("train/lr", row["lr"], row["step"])


def _log_validation(step: int, scores: dict[str, Any], writer: Any) -> None:
    log.info("step %d validation: auprc %.3f hamming %.3f", step, scores["auprc"], scores["hamming"])
    if writer is not None:
        writer.add_scalar("validation/auprc", scores["auprc"], step)
        writer.add_scalar("validation/hamming", scores["hamming"], step)


def _keep_trainable(names: set[str]):
    """A save-state hook: checkpoints hold the LoRA weights only, not the frozen base model."""

    def hook(models: list[Any], weights: list[dict[str, Any]], output_dir: str) -> None:
        for state in weights:
            for key in [k for k in state if k not in names]:
                del state[key]

    return hook


def _checkpoint(accelerator: Any, folder: Path, step: int, epoch: int, batch: int) -> None:
    target = folder / f"step-{step:08d}"
    accelerator.save_state(str(target))
    if accelerator.is_main_process:
        state = {"step": step, "epoch": epoch, "batch": batch}
        write_text_atomic(target / STATE_FILE, json.dumps(state))


__all__ = [
    "FinetuneConfig",
    "FinetuneResult",
    "SkipCounts",
    "dataset_loss",
    "delayed_codes",
    "epoch_batches",
    "finetune",
    "make_batch",
    "save_adapter",
    "validation_pass",
]
