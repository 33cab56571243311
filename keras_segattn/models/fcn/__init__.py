from keras_segattn.models.fcn.fcn import build_fcn, fcn8s, fcn16s, fcn32s

__all__ = ["build_fcn", "fcn8s", "fcn16s", "fcn32s"]
