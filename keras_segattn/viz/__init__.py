"""Pictures: label maps, instances and attention drawn over their images."""

from keras_segattn.viz.attention import attention_figure
from keras_segattn.viz.instances import draw_instances
from keras_segattn.viz.overlay import (
    CAMVID_PALETTE,
    colorize,
    label_palette,
    overlay,
    panel_row,
    save_panels,
    save_png,
)
from keras_segattn.viz.transformer import save_transformer_grid

__all__ = [
    "attention_figure",
    "CAMVID_PALETTE",
    "colorize",
    "draw_instances",
    "label_palette",
    "overlay",
    "panel_row",
    "save_panels",
    "save_png",
    "save_transformer_grid",
]
