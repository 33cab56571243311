"""Pictures: label maps coloured and blended over their images."""

from keras_segattn.viz.overlay import colorize, label_palette, overlay, save_panels

__all__ = ["colorize", "label_palette", "overlay", "save_panels"]
