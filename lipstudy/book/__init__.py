"""Building the book: the chapters executed with papermill (cached), their pages, and the Sphinx
extension that lets ``jupyter-book build book/`` execute them itself.

- :mod:`.contents`: the chapters, in the order they execute, and the parameters each receives.
- :mod:`.keys`: when an executed chapter is still valid (its cache key and the data it reads).
- :mod:`.runner`: executing chapters, training the book's runs first, building the HTML; ``lipstudy book``.
- :mod:`.sphinx_ext`: the Sphinx hook of ``_config.yml``.
- :mod:`.pages`: what a page shows of an executed notebook, and the checks pages must pass.
- :mod:`.chapter`: the one setup call every chapter makes.
"""
