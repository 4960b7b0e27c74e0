"""``qsbr-conformance bench``: what CPython's QSBR costs, and what the suite costs.

- :mod:`.native`: builds and runs ``reference_c/bench/bench.c`` (``make -C reference_c bench``)
  per profile: the port's operations beside liburcu-qsbr and the hardware limit, and readers
  beside one reclaiming writer; adds the ratios.
- :mod:`.suite`: the suite's own speed (checked steps/s of each exploration mode, time to the
  verdict of a default run, time to kill each mutant from ``qsbr-conformance mutants --json``).
- :mod:`.plot`: the PNG (matplotlib, the ``[bench]`` extra).
- :mod:`.cli`: the subcommand, its table and its JSON.
"""
