"""The paper's claims, each tested on this build's runs.

- :mod:`.interval`: a claim's statistic over per-image confusion matrices, its interval with image
  and seed noise, and the learned gate.
- :mod:`.engine`: a claim as data and the decision rule that gives its verdict (margin, power,
  bins).
- :mod:`.catalogue`: every claim of Sections 3 and 5, quoting the paper.
- :mod:`.evidence`: this build's runs as evidence, and the verdicts the claims chapter and the front
  page show; the reference build's verdicts and the margins measured against it.
- :mod:`.render`: the claims as a page shows them. :mod:`.budgets`: the whole-mIoU claims across
  the budget summaries, by the same rule.
"""
