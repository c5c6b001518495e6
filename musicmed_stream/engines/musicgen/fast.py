"""Static decoding for MusicGen: static KV cache, batched guidance, in-graph sampling, CUDA graphs.

``MusicgenForConditionalGeneration.generate`` spends most of a step in Python and kernel launches
(a 24-layer decoder is ~500 small kernels per token, each a few microseconds of GPU work), so on
a GPU it is launch-bound. This module runs the same decoder modules (the weights, LoRA layers
included, are the model's own) with every per-step buffer allocated once:

- self-attention keys/values go to a preallocated cache at the step's position;
- cross-attention keys/values of the (padded) text are computed once per clip;
- the conditional and unconditional rows of classifier-free guidance are one batch of 2;
- sampling is Gumbel-max over the top-k logits with noise drawn up front from the clip's seeded
  ``torch.Generator`` (exactly sampling from the top-k softmax, and independent of global RNG);
- MusicGen's codebook delay pattern is applied in the step, so the whole step is one CUDA graph,
  replayed once per token; the host only checks the cancel flag and copies finished columns
  for the streamer every few steps.

On CPU the same step runs eagerly (no graph); it is what the tests compare with ``generate``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


def attend(
    attn: Any,
    x: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor,
    heads: int,
    head_dim: int,
) -> torch.Tensor:
    """One of MusicGen's attention blocks on cached keys and values: ``attn``'s query projection of
    ``x`` against ``k``/``v`` (``(batch, heads, positions, head_dim)``) under ``mask``, projected out."""
    b, t, _ = x.shape
    q = attn.q_proj(x).view(b, t, heads, head_dim).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scaling)
    return attn.out_proj(out.transpose(1, 2).reshape(b, t, heads * head_dim))


@dataclass(frozen=True)
class SamplingConfig:
    top_k: int
    temperature: float
    guidance_scale: float


def gumbel_noise(seed: int, positions: int, codebooks: int, topk: int) -> torch.Tensor:
    """Gumbel noise ``(positions, codebooks, topk)`` of one clip, from its own seeded CPU generator.

    Drawn up front and per clip, so a clip's tokens depend on its seed only (not on global RNG
    state, nor on the other clips decoded beside it in a batch).
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    uniform = torch.rand((positions, codebooks, topk), generator=gen).clamp_(1e-12, 1 - 1e-7)
    return -torch.log(-torch.log(uniform))


class StaticMusicgenDecoder:
    """Token generation for one ``MusicgenForConditionalGeneration`` with static buffers.

    Parameters
    ----------
    net : MusicgenForConditionalGeneration
        The loaded model (decoder possibly with merged or unmerged LoRA).
    sampling : SamplingConfig
    max_text_tokens : int
        Text prompts are padded (or cut) to this many tokens so the graph's shapes never change.
    use_cuda_graph : bool, optional
        Capture the step as a CUDA graph (default: on CUDA devices).
    compile_step : bool
        Compile the step with ``torch.compile`` (Inductor fuses the layer norms, residual adds and
        activations into fewer kernels) before capturing it.
    """

    def __init__(
        self,
        net: Any,
        sampling: SamplingConfig,
        max_text_tokens: int = 64,
        use_cuda_graph: bool | None = None,
        compile_step: bool = False,
    ) -> None:
        self.net = net
        self.sampling = sampling
        causal_lm = net.decoder
        base = getattr(causal_lm, "get_base_model", lambda: causal_lm)()
        self.decoder = base.model.decoder
        self.lm_heads = base.lm_heads
        cfg = net.config.decoder
        self.K = int(cfg.num_codebooks)
        self.V = int(cfg.vocab_size)
        self.H = int(cfg.num_attention_heads)
        self.D = int(cfg.hidden_size) // self.H
        self.T = int(cfg.max_position_embeddings)
        self.S = max_text_tokens
        self.device = next(self.decoder.parameters()).device
        self.dtype = next(self.decoder.parameters()).dtype
        self.B = 2 if sampling.guidance_scale > 1 else 1
        self.topk = sampling.top_k if 0 < sampling.top_k < self.V else self.V
        self.use_graph = self.device.type == "cuda" if use_cuda_graph is None else use_cuda_graph
        n_layers = len(self.decoder.layers)
        shape = (self.B, self.H, self.T, self.D)
        dev, dt = self.device, self.dtype
        self.k_cache = [torch.zeros(shape, device=dev, dtype=dt) for _ in range(n_layers)]
        self.v_cache = [torch.zeros(shape, device=dev, dtype=dt) for _ in range(n_layers)]
        xshape = (self.B, self.H, self.S, self.D)
        self.cross_k = [torch.zeros(xshape, device=dev, dtype=dt) for _ in range(n_layers)]
        self.cross_v = [torch.zeros(xshape, device=dev, dtype=dt) for _ in range(n_layers)]
        self.cross_mask = torch.zeros((self.B, 1, 1, self.S), device=dev, dtype=torch.bool)
        self.positions = torch.arange(self.T, device=dev)
        self.pos = torch.zeros(1, device=dev, dtype=torch.long)
        self.tok = torch.zeros((self.B, self.K), device=dev, dtype=torch.long)
        self.seq = torch.zeros((self.K, self.T), device=dev, dtype=torch.long)
        self.pattern = torch.full((self.K, self.T), -1, device=dev, dtype=torch.long)
        self.noise = torch.zeros((self.T, self.K, self.topk), device=dev, dtype=torch.float32)
        self.graph: torch.cuda.CUDAGraph | None = None
        self._step_fn = torch.compile(self._step, dynamic=False) if compile_step else self._step

    # -- the model's computation on static buffers -------------------------------------------

    def _attend(self, attn: Any, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor):
        return attend(attn, x, k, v, mask, self.H, self.D)

    def _forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, t, V)`` of tokens ``(B, K, t)`` at ``positions`` (t,), filling the cache."""
        dec = self.decoder
        b, _, t = tokens.shape
        h = sum(dec.embed_tokens[k](tokens[:, k]) for k in range(self.K))
        h = h + dec.embed_positions.weights.index_select(0, positions).to(h.dtype)
        self_mask = (self.positions[None, :] <= positions[:, None])[None, None]
        for i, layer in enumerate(dec.layers):
            x = layer.self_attn_layer_norm(h)
            sa = layer.self_attn
            k = sa.k_proj(x).view(b, t, self.H, self.D).transpose(1, 2)
            v = sa.v_proj(x).view(b, t, self.H, self.D).transpose(1, 2)
            self.k_cache[i].index_copy_(2, positions, k)
            self.v_cache[i].index_copy_(2, positions, v)
            h = h + self._attend(sa, x, self.k_cache[i], self.v_cache[i], self_mask)
            x = layer.encoder_attn_layer_norm(h)
            h = h + self._attend(layer.encoder_attn, x, self.cross_k[i], self.cross_v[i], self.cross_mask)
            x = layer.final_layer_norm(h)
            h = h + layer.fc2(layer.activation_fn(layer.fc1(x)))
        h = dec.layer_norm(h)
        return torch.stack([head(h) for head in self.lm_heads], dim=1)

    def _step(self) -> None:
        """One token: logits at ``pos``, guidance, top-k Gumbel sampling, delay pattern, advance."""
        logits = self._forward(self.tok[:, :, None], self.pos)[:, :, 0].float()  # (B, K, V)
        if self.B == 2:
            logits = logits[1] + self.sampling.guidance_scale * (logits[0] - logits[1])
        else:
            logits = logits[0]
        logits = logits / self.sampling.temperature
        nxt = self.pos + 1
        gumbel = self.noise.index_select(0, self.pos)[0]  # (K, topk)
        if self.topk < self.V:
            values, indices = torch.topk(logits, self.topk, dim=-1)
            choice = indices.gather(-1, (values + gumbel).argmax(-1, keepdim=True))[:, 0]
        else:
            choice = (logits + gumbel).argmax(-1)
        forced = self.pattern.index_select(1, nxt)[:, 0]
        token = torch.where(forced == -1, choice, forced)
        self.seq.index_copy_(1, nxt, token[:, None])
        self.tok.copy_(token[None, :].expand(self.B, -1))
        self.pos.add_(1)

    # -- per clip -------------------------------------------------------------------------

    def _set_text(self, encoder_hidden: torch.Tensor, mask: torch.Tensor) -> None:
        """Cross-attention keys/values for ``encoder_hidden`` (1, s, d) (already projected)."""
        s = min(encoder_hidden.shape[1], self.S)
        hidden = torch.zeros((self.B, self.S, encoder_hidden.shape[-1]), device=self.device, dtype=self.dtype)
        hidden[0, :s] = encoder_hidden[0, :s].to(self.dtype) * mask[0, :s, None].to(self.dtype)
        self.cross_mask.zero_()
        self.cross_mask[0, 0, 0, :s] = mask[0, :s].bool()
        if self.B == 2:
            # The unconditional row attends to zeros (as transformers' guidance does); a single
            # unmasked key keeps the softmax defined and its output zero.
            self.cross_mask[1, 0, 0, 0] = True
        for i, layer in enumerate(self.decoder.layers):
            ea = layer.encoder_attn
            self.cross_k[i].copy_(ea.k_proj(hidden).view(self.B, self.S, self.H, self.D).transpose(1, 2))
            self.cross_v[i].copy_(ea.v_proj(hidden).view(self.B, self.S, self.H, self.D).transpose(1, 2))

    def _capture(self) -> None:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        saved = [b.clone() for b in (self.pos, self.tok, self.seq)]
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._step_fn()
        torch.cuda.current_stream().wait_stream(stream)
        for buf, old in zip((self.pos, self.tok, self.seq), saved, strict=True):
            buf.copy_(old)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._step_fn()
        for buf, old in zip((self.pos, self.tok, self.seq), saved, strict=True):
            buf.copy_(old)

    @torch.inference_mode()
    def generate(
        self,
        encoder_hidden: torch.Tensor,
        text_mask: torch.Tensor,
        prompt_codes: torch.Tensor | None,
        frames: int,
        seed: int,
        cancel: threading.Event | Any | None = None,
        on_columns: Callable[[torch.Tensor], None] | None = None,
        columns_every: int = 25,
    ) -> tuple[torch.Tensor, bool]:
        """Delayed token columns ``(K, cols)`` (column 0 = start token) and whether it was cancelled.

        ``prompt_codes`` ``(K, s)`` are the audio prompt's codes; ``frames`` new frames follow them.
        ``on_columns`` receives new columns (on the CPU) every ``columns_every`` steps.
        """
        pad = int(self.net.generation_config.decoder_start_token_id)
        s = 0 if prompt_codes is None else prompt_codes.shape[1]
        total = 1 + s + frames + self.K - 1
        if total > self.T:
            raise ValueError(f"{total} token columns exceed the model's {self.T} positions")
        start = torch.full((self.K, 1), pad, dtype=torch.long, device=self.device)
        ids = start if prompt_codes is None else torch.cat([start, prompt_codes.to(self.device)], dim=1)
        ids, pattern = self.net.decoder.build_delay_pattern_mask(ids, pad, max_length=total)
        self.pattern.fill_(-1)
        self.pattern[:, :total] = pattern
        self.seq.zero_()
        first = ids.shape[1]  # columns known before sampling (start token + prompt)
        self.seq[:, :first] = ids
        self.noise.copy_(gumbel_noise(seed, self.T, self.K, self.topk))
        self._set_text(encoder_hidden, text_mask)
        for cache in (*self.k_cache, *self.v_cache):
            cache.zero_()
        if first > 1:  # prefill all known columns but the last, in one pass
            known = ids[None, :, : first - 1].expand(self.B, -1, -1)
            self._forward(known, self.positions[: first - 1])
        self.tok.copy_(ids[None, :, first - 1].expand(self.B, -1))
        self.pos.fill_(first - 1)
        if self.use_graph and self.graph is None:
            self._capture()
        sent, done = 0, first
        while done < total:
            if self.graph is not None:
                self.graph.replay()
            else:
                self._step_fn()
            done += 1
            if (done - first) % columns_every == 0 or done == total:
                if cancel is not None and cancel.is_set():
                    return self.seq[:, :done].clone(), True
                if on_columns is not None:
                    on_columns(self.seq[:, sent:done].cpu())
                    sent = done
        return self.seq[:, :total].clone(), False
