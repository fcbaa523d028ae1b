"""The train wing's training loops: the anchor net, the hypernets, PHN-BN, the static methods.

The public door is :func:`dymu_rt.train` (:func:`dymu_rt.app.train.train`); the run folder
they write is :mod:`dymu_rt.run`. (This package was ``dymu_rt.train`` before issue 26; the
name now belongs to the function.)
"""
