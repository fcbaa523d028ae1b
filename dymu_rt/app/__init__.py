"""The use cases, one function each for the CLI: ``demo`` (end to end), ``check`` (is this
bundle safe to ship), ``compare`` (methods side by side), ``run_images`` (images at a
preference -> outputs and PNGs), ``inspect`` (describe a bundle). They sit over both wings
and under the CLI (``.importlinter``: ``top``)."""
