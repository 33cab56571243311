from keras_segattn.models.deconvnet.deconvnet import build_deconvnet, deconvnet

__all__ = ["build_deconvnet", "deconvnet"]
