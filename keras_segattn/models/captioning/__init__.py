"""Image captioning: Show, Attend and Tell (Xu et al., ICML 2015)."""

from keras_segattn.models.captioning.losses import (
    CaptionLoss,
    attention_entropy,
    caption_log_likelihood,
    doubly_stochastic_penalty,
    masked_caption_loss,
    reinforce_surrogate,
    reward_to_go_advantages,
    step_reinforce_surrogate,
    token_log_likelihood,
)
from keras_segattn.models.captioning.show_attend_tell import (
    CaptionDecoder,
    ShowAttendTell,
    check_vocabulary,
    encode_captions,
    show_attend_tell,
)

__all__ = [
    "CaptionDecoder",
    "CaptionLoss",
    "ShowAttendTell",
    "attention_entropy",
    "caption_log_likelihood",
    "check_vocabulary",
    "doubly_stochastic_penalty",
    "encode_captions",
    "masked_caption_loss",
    "reinforce_surrogate",
    "reward_to_go_advantages",
    "show_attend_tell",
    "step_reinforce_surrogate",
    "token_log_likelihood",
]
