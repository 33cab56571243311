"""The leaf of the package: argument checks, the one caption vocabulary,
NumPy instance structures and the one `.keras` reader. It imports nothing
else from keras_segattn."""
