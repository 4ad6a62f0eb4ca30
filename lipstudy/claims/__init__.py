"""The paper's claims, each tested on this build's runs.

- :mod:`.engine`: a claim as a statistic over per-image confusion matrices, its bootstrap interval
  and its verdict.
- :mod:`.catalogue`: every claim of Sections 3 and 5, quoting the paper.
- :mod:`.evidence`: this build's runs as evidence, and the verdicts the claims chapter and the front
  page show.
"""
