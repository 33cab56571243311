"""One protocol for scoring, a module per task: `semantic` (accuracy and IoU
from one confusion matrix, at the labels' resolution), `instance` (COCOeval
mask and box AP, mAP^r at 0.5 and 0.7), `captioning` (BLEU / METEOR / CIDEr
and attention localisation); and `predictors`, what a semantic score is
taken of: the model on the whole image, on object proposals (DeconvNet),
or an ensemble."""

from keras_segattn.evaluation.captioning import (
    attended_cells,
    attention_localization,
    evaluate_captioner,
    score_captions,
)
from keras_segattn.evaluation.instance import (
    evaluate_instance_model,
    evaluate_instances,
    predict_instances,
)
from keras_segattn.evaluation.predictors import (
    EnsembleSegmenter,
    ProposalWise,
    WholeImage,
    output_probabilities,
    predict_scores,
    proposal_probabilities,
)
from keras_segattn.evaluation.semantic import evaluate_segmentation, format_report

__all__ = [
    "EnsembleSegmenter",
    "ProposalWise",
    "WholeImage",
    "attended_cells",
    "attention_localization",
    "evaluate_captioner",
    "evaluate_instance_model",
    "evaluate_instances",
    "evaluate_segmentation",
    "format_report",
    "output_probabilities",
    "predict_instances",
    "predict_scores",
    "proposal_probabilities",
    "score_captions",
]
