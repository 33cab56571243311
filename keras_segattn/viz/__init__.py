"""Pictures: label maps coloured and blended over their images."""

from keras_segattn.viz.overlay import colorize, label_palette, overlay, save_panels
from keras_segattn.viz.transformer import save_transformer_grid

__all__ = ["colorize", "label_palette", "overlay", "save_panels", "save_transformer_grid"]
