"""Text -> embeddings the way AUTOMATIC1111 builds them, over the checkpoint's own text encoders.

A prompt is parsed into weighted runs, tokenized, cut into 75-token chunks (a comma among the last 20 tokens
moves the rest to the next chunk; BREAK forces a new chunk), each chunk wrapped as start + 75 + end/padding = 77
and encoded on its own; the chunk outputs are concatenated. Weights are applied after the encoder ("Original"
emphasis: multiply, then restore the mean). For a plain prompt of at most 75 tokens this gives exactly the
embedding diffusers' pipelines compute, which the reference tests rely on.

Textual-inversion embeddings (``embeddings={name: Embedding}``): where a run's tokens contain the tokens of an
embedding's name (matched on token ids, longest name first, as A1111 does), the embedding's vectors take their
place. The vectors of one embedding always stay in one chunk: when they do not fit in the current chunk, it is
closed and they start the next; a comma backtrack moves them along with the words they belong to. The token
counter counts their vectors. Chunks holding an embedding are encoded from input vectors built here (token
embeddings with the embedding's rows put in, then the encoder's own position embedding, layers and final norm):
the shared encoder and tokenizer are never changed, not even for a moment. Chunks without one take the ordinary
``encoder(input_ids)`` path.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from paragoger.errors import UserError
from paragoger.model_manager.configs import clip_clean_text
from paragoger.prompts.attention import parse_attention

CHUNK_LENGTH = 75
COMMA_BACKTRACK = 20
EMPHASIS_MODES = ("Original", "No norm", "Ignore")


@dataclass
class TextConditioning:
    """One encoded text: ``embeds`` (1, 77*chunks, dim); ``pooled`` (1, dim) for SDXL, else None."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None

    @property
    def chunks(self) -> int:
        return self.embeds.shape[1] // (CHUNK_LENGTH + 2)


# Token id put where an embedding's vectors go (A1111 uses 0 as well); never the end token, so the pooled output
# is still taken at the end of the text.
_EMBEDDING_PLACEHOLDER = 0


@dataclass
class _Chunk:
    tokens: list[int]
    weights: list[float]
    # (offset in ``tokens``, embedding): where an embedding's vectors replace the placeholder tokens.
    fixes: list = field(default_factory=list)


class _ChunkedTokenizer:
    """Turns weighted text runs into 75-token chunks for one tokenizer."""

    def __init__(self, tokenizer, embeddings: dict | None = None):
        self.tokenizer = tokenizer
        vocab = tokenizer.get_vocab()
        self.comma = vocab.get(",</w>")
        self.start = tokenizer.bos_token_id
        self.end = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.end
        # first token id -> [(token ids of the name, embedding)], longest name first
        self.embedding_lookup: dict[int, list] = {}
        for name, embedding in (embeddings or {}).items():
            ids = tokenizer([name], truncation=False, add_special_tokens=False)["input_ids"][0]
            if ids:
                self.embedding_lookup.setdefault(ids[0], []).append((list(ids), embedding))
        for candidates in self.embedding_lookup.values():
            candidates.sort(key=lambda candidate: len(candidate[0]), reverse=True)

    def _embedding_at(self, ids: list[int], position: int):
        for name_ids, embedding in self.embedding_lookup.get(ids[position], ()):
            if ids[position:position + len(name_ids)] == name_ids:
                return embedding, len(name_ids)
        return None, 1

    def chunks(self, text: str) -> tuple[list[_Chunk], int]:
        """The chunks of ``text`` and its token count (what the UI counter shows)."""
        runs = parse_attention(text)
        # CLIP's own tokenizer (and A1111 through it) repairs text with ftfy, unescapes HTML and collapses
        # whitespace before encoding; transformers 5 no longer does, so it is done here for identical ids.
        texts = [clip_clean_text(run_text) for run_text, _ in runs]
        tokenized = self.tokenizer(texts, truncation=False, add_special_tokens=False)["input_ids"]
        chunks: list[_Chunk] = []
        tokens: list[int] = []
        weights: list[float] = []
        fixes: list = []
        last_comma = -1
        total = 0

        def close_chunk(is_last: bool = False):
            nonlocal tokens, weights, fixes, last_comma
            pad = CHUNK_LENGTH - len(tokens)
            chunks.append(_Chunk(tokens + [self.end] * pad, weights + [1.0] * pad, fixes))
            tokens, weights, fixes, last_comma = [], [], [], -1

        for ids, (run_text, weight) in zip(tokenized, runs):
            if run_text == "BREAK" and weight == -1:
                close_chunk()
                continue
            position = 0
            while position < len(ids):
                embedding, length = self._embedding_at(ids, position) if self.embedding_lookup else (None, 1)
                if embedding is not None:
                    count = embedding.count
                    if count > CHUNK_LENGTH:
                        raise UserError("embedding_too_long", name=embedding.name, count=count, limit=CHUNK_LENGTH)
                    total += count
                    if len(tokens) + count > CHUNK_LENGTH:
                        close_chunk()  # an embedding is never split across chunks
                    fixes.append((len(tokens), embedding))
                    tokens.extend([_EMBEDDING_PLACEHOLDER] * count)
                    weights.extend([weight] * count)
                    position += length
                    continue
                token = ids[position]
                position += 1
                total += 1
                if token == self.comma:
                    last_comma = len(tokens)
                elif len(tokens) == CHUNK_LENGTH and last_comma != -1 and len(tokens) - last_comma <= COMMA_BACKTRACK:
                    # Move the words after the last comma to the next chunk, so a phrase is not cut in two.
                    keep = last_comma + 1
                    moved_tokens, moved_weights = tokens[keep:], weights[keep:]
                    moved_fixes = [(offset - keep, e) for offset, e in fixes if offset >= keep]
                    tokens, weights = tokens[:keep], weights[:keep]
                    fixes = [(offset, e) for offset, e in fixes if offset < keep]
                    close_chunk()
                    tokens, weights, fixes = moved_tokens, moved_weights, moved_fixes
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

    def __init__(self, components, *, clip_skip: int = 1, emphasis: str = "Original", embeddings: dict | None = None):
        """``embeddings``: ``{name: Embedding}`` (``EmbeddingLibrary.for_components``); ones whose widths do not
        fit this checkpoint's text encoders are ignored. ``used_embeddings`` collects the ones the encoded texts
        used, in order of first use (for the ``TI hashes`` infotext field)."""
        self.components = components
        self.clip_skip = max(1, int(clip_skip))
        self.emphasis = emphasis
        self.encoders = [components.text_encoder]
        if components.text_encoder_2 is not None:
            self.encoders.append(components.text_encoder_2)
        widths = tuple(_token_embedding(encoder).weight.shape[1] for encoder in self.encoders)
        self.embeddings = {name: e for name, e in (embeddings or {}).items() if tuple(e.dims) == widths}
        self.tokenizers = [_ChunkedTokenizer(components.tokenizer, self.embeddings)]
        if components.text_encoder_2 is not None:
            self.tokenizers.append(_ChunkedTokenizer(components.tokenizer_2, self.embeddings))
        self.used_embeddings: dict = {}
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
        for encoder_index, (tokenizer, encoder) in enumerate(zip(self.tokenizers, self.encoders)):
            chunk_embeds = []
            chunks, _ = tokenizer.chunks(text)
            for index, chunk in enumerate(chunks):
                ids, weights = tokenizer.ids_and_weights(chunk)
                if chunk.fixes:
                    hidden, chunk_pooled = self._run_encoder_with_vectors(encoder, ids, chunk.fixes, encoder_index)
                    for _, embedding in chunk.fixes:
                        self.used_embeddings.setdefault(embedding.name, embedding)
                else:
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

    def _run_encoder_with_vectors(self, encoder, ids: list[int], fixes: list, encoder_index: int
                                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``_run_encoder`` for a chunk holding embeddings: the same computation, from input vectors.

        transformers 5's CLIPTextModel.forward takes no ``inputs_embeds``, so its steps are taken here with the
        encoder's own submodules (only read): token embedding, the embeddings' rows put in, position embedding,
        the causal mask transformers builds, each layer, final norm, pooling at the end token, projection.
        For a chunk without embeddings this equals ``encoder(input_ids)`` exactly (tested).
        """
        from transformers.masking_utils import create_causal_mask

        self.encoder_calls += 1
        core = getattr(encoder, "text_model", encoder)
        input_ids = torch.tensor([ids], device=encoder.device)
        token_embeds = core.embeddings.token_embedding(input_ids)
        for offset, embedding in fixes:
            vectors = embedding.vectors[encoder_index]
            start = offset + 1  # after the start token
            token_embeds[0, start:start + vectors.shape[0]] = vectors.to(token_embeds.device, token_embeds.dtype)
        hidden = core.embeddings(inputs_embeds=token_embeds)
        mask = create_causal_mask(config=core.config, inputs_embeds=hidden, attention_mask=None, cache=None)
        states = [hidden]
        for layer in core.encoder.layers:
            hidden = layer(hidden, mask, is_causal=True)
            states.append(hidden)
        last = core.final_layer_norm(hidden)
        if self.components.is_sdxl:
            pooled = None
            if hasattr(encoder, "text_projection"):
                pooled = encoder.text_projection(last[:, _end_position(core, input_ids)])
            return states[-(self.clip_skip + 1)], pooled
        if self.clip_skip == 1:
            return last, None
        return core.final_layer_norm(states[-self.clip_skip]), None

    def _apply_emphasis(self, hidden: torch.Tensor, weights: list[float]) -> torch.Tensor:
        if self.emphasis in ("Ignore", "None") or all(w == 1.0 for w in weights):
            return hidden
        multipliers = torch.tensor(weights, dtype=hidden.dtype, device=hidden.device).reshape(1, -1, 1)
        if self.emphasis == "No norm":
            return hidden * multipliers
        original_mean = hidden.mean()
        weighted = hidden * multipliers
        return weighted * (original_mean / weighted.mean())


def _token_embedding(encoder):
    return getattr(encoder, "text_model", encoder).embeddings.token_embedding


def _end_position(core, input_ids: torch.Tensor) -> int:
    """Where CLIPTextModel takes its pooled output: the highest id for configs with the old end id 2, else the
    first end token."""
    if core.config.eos_token_id == 2:
        return int(input_ids[0].argmax())
    return int((input_ids[0] == core.config.eos_token_id).int().argmax())


def pad_to_chunks(embeds: torch.Tensor, chunks: int, empty: torch.Tensor) -> torch.Tensor:
    """``embeds`` lengthened to ``chunks`` chunks by appending the empty prompt's chunk, so that texts of
    different lengths (positive, negative, scheduled parts) can share one UNet batch."""
    missing = chunks - embeds.shape[1] // empty.shape[1]
    return torch.cat([embeds, *[empty.to(embeds.dtype)] * missing], dim=1) if missing > 0 else embeds



def plain_token_count(text: str, tokenizer) -> tuple[int, int]:
    """The counter before any model is loaded, with a plain CLIP tokenizer (the same vocabulary everywhere)."""
    chunks, total = _ChunkedTokenizer(tokenizer).chunks(text)
    return total, max(1, len(chunks)) * CHUNK_LENGTH
