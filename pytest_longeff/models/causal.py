"""A decoder-only model behind the cell's seq2seq contract: the prompt (query and document) followed by the target,
the loss on the target alone, greedy generation with the KV cache after the prompt."""

from __future__ import annotations

from typing import Any

import torch

from pytest_longeff.data.tokenizer import PAD_ID

__all__ = ["CausalLMAsSeq2Seq"]


def _left_aligned(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows rearranged so that their padding comes first and their tokens keep their order (a prompt continues at its
    right end), whichever side the tokenizer padded."""
    if bool(mask.all()):
        return ids, mask
    index = torch.argsort(mask, dim=1, stable=True)  # zeros (padding) first, each group in its order
    return ids.gather(1, index), mask.gather(1, index)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding."""
    return (mask.cumsum(dim=1) - 1).clamp(min=0)


class CausalLMAsSeq2Seq(torch.nn.Module):
    """A ``transformers`` causal LM behind the cell's seq2seq contract (see the module's docstring).

    ``forward(input_ids, attention_mask, labels)``: the sequence is the prompt followed by the target; the loss is
    the mean cross-entropy of the target tokens alone, from logits computed at those positions only (the prompt's
    logits, a vocabulary-wide row per prompt token, are never made: at 8192 tokens and a 150k vocabulary they would
    be 5 GB a row). ``logits`` are the target positions' (position t predicts label t), as a seq2seq model's are.
    ``generate`` returns a start column of padding, then the new tokens.
    """

    def __init__(self, causal_lm: Any) -> None:
        super().__init__()
        self.causal_lm = causal_lm
        self.main_input_name = "input_ids"

    @property
    def config(self) -> Any:
        return self.causal_lm.config

    @property
    def generation_config(self) -> Any:
        return self.causal_lm.generation_config

    @generation_config.setter
    def generation_config(self, value: Any) -> None:
        self.causal_lm.generation_config = value

    @property
    def architecture(self) -> str:
        """The wrapped model's class, for the record."""
        return type(self.causal_lm).__name__

    def set_attn_implementation(self, implementation: str) -> None:
        self.causal_lm.set_attn_implementation(implementation)

    @property
    def checkpointing_target(self) -> Any:
        """The model transformers' activation checkpointing is turned on in (the wrapped causal LM)."""
        return self.causal_lm

    def save_pretrained(self, folder: Any, **kwargs: Any) -> None:
        self.causal_lm.save_pretrained(folder, **kwargs)

    def tie_weights(self) -> None:
        self.causal_lm.tie_weights()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                **kwargs: Any) -> Any:
        from transformers.modeling_outputs import CausalLMOutput

        prompt, prompt_mask = _left_aligned(input_ids, attention_mask)
        width = labels.shape[1]
        target_in = labels.masked_fill(labels == -100, PAD_ID)
        ids = torch.cat([prompt, target_in], dim=1)
        if bool(prompt_mask.all()):
            # No padding before the target: causal attention never looks right, so the target's trailing padding
            # changes nothing that is scored, and no mask lets SDPA take its fused causal path.
            mask = position_ids = None
        else:
            mask = torch.cat([prompt_mask, torch.ones_like(labels)], dim=1)
            position_ids = _positions(mask)
        out = self.causal_lm(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False,
                             logits_to_keep=width + 1)
        logits = out.logits[:, :width]  # position P-1+t predicts label t
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                 ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        prompt, prompt_mask = _left_aligned(input_ids, attention_mask)
        out = self.causal_lm.generate(input_ids=prompt, attention_mask=prompt_mask, **kwargs)
        # A start column of padding, then the new tokens: as an encoder-decoder's output reads (its decoder start
        # token, then the new tokens), and nothing of the prompt is decoded as part of the prediction.
        pad = self.config.pad_token_id if self.config.pad_token_id is not None else self.config.eos_token_id
        start = torch.full((out.shape[0], 1), int(pad), dtype=out.dtype, device=out.device)
        return torch.cat([start, out[:, prompt.shape[1]:]], dim=1)

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        """The prompt's forward with the KV cache kept (what generation does before its first token); returns the
        cache."""
        prompt, prompt_mask = _left_aligned(input_ids, attention_mask)
        out = self.causal_lm(input_ids=prompt, attention_mask=prompt_mask, position_ids=_positions(prompt_mask),
                             use_cache=True, logits_to_keep=1)
        return out.cache
