"""``python -m dymu_rt.cli``: the same as the ``dymu-rt`` console script."""

from dymu_rt.cli.main import main

if __name__ == "__main__":
    main()
