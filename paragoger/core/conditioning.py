"""Text -> embeddings the way AUTOMATIC1111 builds them, over the checkpoint's own text encoders.

A prompt is parsed into weighted runs, tokenized, cut into 75-token chunks (a comma among the last 20 tokens
moves the rest to the next chunk; BREAK forces a new chunk), each chunk wrapped as start + 75 + end/padding = 77
and encoded on its own; the chunk outputs are concatenated. Weights are applied after the encoder ("Original"
emphasis: multiply, then restore the mean). For a plain prompt of at most 75 tokens this gives exactly the
embedding diffusers' pipelines compute, which the reference tests rely on.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from paragoger.prompts.attention import parse_attention

CHUNK_LENGTH = 75
COMMA_BACKTRACK = 20
EMPHASIS_MODES = ("Original", "No norm", "None")


@dataclass
class TextConditioning:
    """One encoded text: ``embeds`` (1, 77*chunks, dim); ``pooled`` (1, dim) for SDXL, else None."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None

    @property
    def chunks(self) -> int:
        return self.embeds.shape[1] // (CHUNK_LENGTH + 2)


@dataclass
class _Chunk:
    tokens: list[int]
    weights: list[float]


class _ChunkedTokenizer:
    """Turns weighted text runs into 75-token chunks for one tokenizer."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        vocab = tokenizer.get_vocab()
        self.comma = vocab.get(",</w>")
        self.start = tokenizer.bos_token_id
        self.end = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.end

    def chunks(self, text: str) -> tuple[list[_Chunk], int]:
        """The chunks of ``text`` and its token count (what the UI counter shows)."""
        runs = parse_attention(text)
        texts = [run_text for run_text, _ in runs]
        tokenized = self.tokenizer(texts, truncation=False, add_special_tokens=False)["input_ids"]
        chunks: list[_Chunk] = []
        tokens: list[int] = []
        weights: list[float] = []
        last_comma = -1
        total = 0

        def close_chunk(is_last: bool = False):
            nonlocal tokens, weights, last_comma
            pad = CHUNK_LENGTH - len(tokens)
            chunks.append(_Chunk(tokens + [self.end] * pad, weights + [1.0] * pad))
            tokens, weights, last_comma = [], [], -1

        for ids, (run_text, weight) in zip(tokenized, runs):
            if run_text == "BREAK" and weight == -1:
                close_chunk()
                continue
            for token in ids:
                total += 1
                if token == self.comma:
                    last_comma = len(tokens)
                elif len(tokens) == CHUNK_LENGTH and last_comma != -1 and len(tokens) - last_comma <= COMMA_BACKTRACK:
                    # Move the words after the last comma to the next chunk, so a phrase is not cut in two.
                    keep = last_comma + 1
                    moved_tokens, moved_weights = tokens[keep:], weights[keep:]
                    tokens, weights = tokens[:keep], weights[:keep]
                    close_chunk()
                    tokens, weights = moved_tokens, moved_weights
                if len(tokens) == CHUNK_LENGTH:
                    close_chunk()
                tokens.append(token)
                weights.append(weight)
        if tokens or not chunks:
            close_chunk(is_last=True)
        return chunks, total

    def ids_and_weights(self, chunk: _Chunk) -> tuple[list[int], list[float]]:
        ids = [self.start] + chunk.tokens + [self.end]
        if self.pad != self.end:
            # Tokenizers that pad with another token (OpenCLIP's "!") keep one end token after the text.
            first_end = ids.index(self.end, 1)
            ids = ids[: first_end + 1] + [self.pad] * (len(ids) - first_end - 1)
        return ids, [1.0] + chunk.weights + [1.0]


class PromptEncoder:
    """Encodes texts for one generation with one checkpoint; each distinct text is encoded once."""

    def __init__(self, components, *, clip_skip: int = 1, emphasis: str = "Original"):
        self.components = components
        self.clip_skip = max(1, int(clip_skip))
        self.emphasis = emphasis
        self.tokenizers = [_ChunkedTokenizer(components.tokenizer)]
        self.encoders = [components.text_encoder]
        if components.text_encoder_2 is not None:
            self.tokenizers.append(_ChunkedTokenizer(components.tokenizer_2))
            self.encoders.append(components.text_encoder_2)
        self._cache: dict[str, TextConditioning] = {}
        self.encoder_calls = 0

    def token_count(self, text: str) -> tuple[int, int]:
        """(tokens, limit) as A1111's counter shows them: ``80/150`` for an 80-token prompt."""
        chunks, total = self.tokenizers[0].chunks(text)
        return total, max(1, len(chunks)) * CHUNK_LENGTH

    def encode(self, text: str) -> TextConditioning:
        if text not in self._cache:
            self._cache[text] = self._encode(text)
        return self._cache[text]

    def empty_chunk(self) -> TextConditioning:
        return self.encode("")

    @torch.no_grad()
    def _encode(self, text: str) -> TextConditioning:
        per_encoder = []
        pooled = None
        for tokenizer, encoder in zip(self.tokenizers, self.encoders):
            chunk_embeds = []
            chunks, _ = tokenizer.chunks(text)
            for index, chunk in enumerate(chunks):
                ids, weights = tokenizer.ids_and_weights(chunk)
                hidden, chunk_pooled = self._run_encoder(encoder, ids)
                chunk_embeds.append(self._apply_emphasis(hidden, weights))
                if index == 0 and chunk_pooled is not None:
                    pooled = chunk_pooled
            per_encoder.append(torch.cat(chunk_embeds, dim=1))
        embeds = torch.cat(per_encoder, dim=-1) if len(per_encoder) > 1 else per_encoder[0]
        return TextConditioning(embeds=embeds, pooled=pooled if self.components.is_sdxl else None)

    def _run_encoder(self, encoder, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.encoder_calls += 1
        input_ids = torch.tensor([ids], device=encoder.device)
        if self.components.is_sdxl:
            # SDXL uses the penultimate layer of both encoders, without the final layer norm.
            out = encoder(input_ids, output_hidden_states=True)
            pooled = out[0] if out[0].ndim == 2 else None
            return out.hidden_states[-(self.clip_skip + 1)], pooled
        if self.clip_skip == 1:
            return encoder(input_ids)[0], None
        out = encoder(input_ids, output_hidden_states=True)
        hidden = out.hidden_states[-self.clip_skip]
        # transformers 5 flattened CLIPTextModel (no ``.text_model``); older versions nest it.
        text_model = getattr(encoder, "text_model", encoder)
        return text_model.final_layer_norm(hidden), None

    def _apply_emphasis(self, hidden: torch.Tensor, weights: list[float]) -> torch.Tensor:
        if self.emphasis == "None" or all(w == 1.0 for w in weights):
            return hidden
        multipliers = torch.tensor(weights, dtype=hidden.dtype, device=hidden.device).reshape(1, -1, 1)
        if self.emphasis == "No norm":
            return hidden * multipliers
        original_mean = hidden.mean()
        weighted = hidden * multipliers
        return weighted * (original_mean / weighted.mean())


def pad_to_chunks(embeds: torch.Tensor, chunks: int, empty: torch.Tensor) -> torch.Tensor:
    """``embeds`` lengthened to ``chunks`` chunks by appending the empty prompt's chunk, so that texts of
    different lengths (positive, negative, scheduled parts) can share one UNet batch."""
    missing = chunks - embeds.shape[1] // empty.shape[1]
    return torch.cat([embeds, *[empty.to(embeds.dtype)] * missing], dim=1) if missing > 0 else embeds
