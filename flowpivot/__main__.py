"""``python -m flowpivot``, and the file ``spark-submit`` runs (docs/scale.md): the ``flowpivot`` command."""

from flowpivot.cli import main

if __name__ == "__main__":
    main()
