"""The use cases, one function each for the CLI: ``demo`` (end to end), ``check`` (is this
bundle safe to ship), ``compare`` (methods side by side), ``run_images`` (images at a
preference -> outputs and PNGs), ``inspect`` (describe a bundle), ``train`` (a run folder
trained or resumed: the public :func:`dymu_rt.train`). They sit over both wings
and under the CLI (``.importlinter``: ``top``)."""
